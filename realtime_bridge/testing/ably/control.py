"""The emulator's own control API, under ``/_emulator/`` (not Ably's; JSON, no auth).

For an emulator served in another process (``realtime-bridge emulate ably``):
``GET /_emulator`` describes it; ``POST faults`` takes ``fail_next`` (with
``status``, ``retry_after``, ``code``, ``message``, ``path``, ``applied``)
and ``latency``; ``DELETE faults`` clears them; ``POST presence`` enters or
(``"action": "leave"``) removes a member; ``POST occupancy`` sets
``subscribers`` (and ``publishers``); ``GET messages?channel=`` lists what a
channel holds; ``GET requests`` counts API requests by route; ``POST reset``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .errors import AblyError
from .wire import error_response, render

if TYPE_CHECKING:
    from . import AblyEmulator

__all__ = ["PREFIX", "control"]

PREFIX = "/_emulator"


async def control(emulator: AblyEmulator, request: Request, path: str) -> Response:
    """The emulator's own control API under ``/_emulator/`` (JSON, no auth)."""
    action = f"{request.method} {path.removeprefix(PREFIX).strip('/')}".strip()
    operation = _CONTROL.get(action)
    try:
        if operation is None:
            raise AblyError(40400, f"no emulator control route {request.method} {path}")
        options = await _control_body(request)
        options.update({f"query_{k}": v for k, v in request.query_params.items()})
        return render(operation(emulator, options), 200, binary=False)
    except AblyError as exc:
        return error_response(exc, binary=False)
    except (KeyError, TypeError, ValueError) as exc:
        return error_response(AblyError(40001, f"invalid control request: {exc!r}"), binary=False)


async def _control_body(request: Request) -> dict[str, Any]:
    if request.method not in ("POST", "PUT"):
        return {}
    raw = await request.body()
    body = json.loads(raw) if raw else {}
    if not isinstance(body, dict):
        raise AblyError(40001, "invalid control request: the body is a JSON object")
    return body


def _control_faults(emulator: AblyEmulator, options: dict[str, Any]) -> Any:
    if "latency" in options:
        emulator.latency = float(options.pop("latency"))
    times = int(options.pop("fail_next", 0))
    if times:
        fields = ("status", "retry_after", "code", "message", "path", "applied")
        emulator.fail_next(times, **{name: options[name] for name in fields if name in options})
    return {"pending": len(emulator.faults.pending), "latency": emulator.latency}


def _control_clear(emulator: AblyEmulator, options: dict[str, Any]) -> Any:
    emulator.clear_faults()
    return {"pending": 0, "latency": 0.0}


def _control_presence(emulator: AblyEmulator, options: dict[str, Any]) -> Any:
    channel, client_id = str(options["channel"]), str(options["client_id"])
    if options.get("action", "enter") == "leave":
        left = emulator.leave_presence(channel, client_id, options.get("connection_id"))
        return {"left": left}
    connection = emulator.enter_presence(
        channel, client_id, options.get("data"), connection_id=options.get("connection_id")
    )
    return {"connection_id": connection}


def _control_occupancy(emulator: AblyEmulator, options: dict[str, Any]) -> Any:
    channel = str(options["channel"])
    publishers = options.get("publishers")
    emulator.set_subscribers(
        channel,
        int(options["subscribers"]),
        publishers=None if publishers is None else int(publishers),
    )
    return emulator.store.metrics(channel)


def _control_reset(emulator: AblyEmulator, options: dict[str, Any]) -> Any:
    emulator.reset()
    return {}


_CONTROL: dict[str, Callable[[AblyEmulator, dict[str, Any]], Any]] = {
    "GET": lambda emulator, _: emulator.describe(),
    "POST faults": _control_faults,
    "DELETE faults": _control_clear,
    "POST presence": _control_presence,
    "POST occupancy": _control_occupancy,
    "GET messages": lambda emulator, options: [
        message.wire() for message in emulator.messages(str(options["query_channel"]))
    ],
    "GET requests": lambda emulator, _: dict(emulator.requests),
    "POST reset": _control_reset,
}
