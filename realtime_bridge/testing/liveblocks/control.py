"""``/_emulator/``: the Python API over HTTP, unauthenticated, for a served emulator.

Not part of Liveblocks: it lets tests in any language (or curl) do what browsers
would do in a room, inject failures and read what Liveblocks received, against
``realtime-bridge emulate liveblocks``.

- ``GET`` describes the emulator
- ``POST faults`` ``{"fail_next", "status", "code", "message", "retry_after", "path",
  "applied", "latency"}``; ``DELETE faults``
- ``POST connections`` ``{"room", "user_id", "info", "connection_id"}`` -> ``{"connection_id"}``:
  a browser enters (or, given its connection, changes its user info);
  ``DELETE connections`` ``{"room", "connection_id"}`` or ``{"room", "user_id"}`` -> ``{"left"}``
- ``GET received?room=&connection=``: what that connection got, as ``useEventListener`` gets it
- ``GET broadcasts?room=``: every broadcast accepted (in a room, or all)
- ``GET requests``: API requests by route; ``GET log``: the latest ones, each with its path,
  status and whether a fault answered it; ``POST reset``
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from . import LiveblocksEmulator

__all__ = ["PREFIX", "control"]

PREFIX = "/_emulator"


class ControlError(Exception):
    pass


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ControlError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def _room(source: dict[str, Any]) -> str:
    room = source.get("room")
    if not isinstance(room, str) or not room:
        raise ControlError('name the room: "room"')
    return room


async def control(emulator: LiveblocksEmulator, request: Request, path: str) -> Response:
    action = f"{request.method} {path.removeprefix(PREFIX).strip('/')}".strip()
    try:
        if request.method in ("POST", "DELETE"):
            return _json(_act(emulator, action, await _body(request)))
        return _json(_read(emulator, action, dict(request.query_params)))
    except (ControlError, KeyError, ValueError, TypeError) as exc:
        return _json({"message": str(exc)}, 400)


def _act(emulator: LiveblocksEmulator, action: str, body: dict[str, Any]) -> Any:
    if action == "POST faults":
        if "latency" in body:
            emulator.latency = float(body["latency"])
        if body.get("fail_next"):
            fields = ("code", "message", "retry_after", "path", "applied")
            emulator.fail_next(
                int(body["fail_next"]),
                int(body.get("status", 503)),
                **{name: body[name] for name in fields if name in body},
            )
        return {"pending": len(emulator.faults.pending), "latency": emulator.latency}
    if action == "DELETE faults":
        emulator.clear_faults()
        return {"pending": 0, "latency": 0.0}
    if action == "POST connections":
        number = emulator.connect(
            _room(body),
            body.get("user_id"),
            body.get("info"),
            connection_id=body.get("connection_id"),
        )
        return {"connection_id": number}
    if action == "DELETE connections":
        left = emulator.disconnect(
            _room(body), connection_id=body.get("connection_id"), user_id=body.get("user_id")
        )
        return {"left": left}
    if action == "POST reset":
        emulator.reset()
        return {"reset": True}
    raise ControlError(f"no control route {action!r}")


def _read(emulator: LiveblocksEmulator, action: str, query: dict[str, str]) -> Any:
    if action == "GET":
        return emulator.describe()
    if action == "GET received":
        received = emulator.received(_room(query), int(query["connection"]))
        return [item.wire() for item in received]
    if action == "GET broadcasts":
        return [asdict(item) for item in emulator.broadcasts(query.get("room"))]
    if action == "GET requests":
        return dict(emulator.requests)
    if action == "GET log":
        return [asdict(entry) for entry in emulator.request_log]
    raise ControlError(f"no control route {action!r}")
