"""``/_emulator/``: the Python API over HTTP, unauthenticated, for a served emulator.

Not part of Supabase: it lets tests in any language (or curl) declare RLS
policies, mint user tokens, suspend the tenant, inject failures and read
what was broadcast, against ``realtime-bridge emulate supabase``.

- ``POST faults`` ``{"fail_next": 1, "status": 503, "message", "retry_after", "path",
  "applied", "latency"}``; ``DELETE faults``
- ``POST policies`` ``{"topic", "role", "sub", "insert", "select", "extension"}``;
  ``DELETE policies``
- ``POST tokens`` ``{"sub", "role", "ttl"}`` -> ``{"token"}``
- ``POST tenant`` ``{"suspended", "private_only"}``
- ``GET broadcasts?topic=&private=``, ``GET dropped``, ``GET presence?topic=&private=``,
  ``GET requests``, ``POST reset``
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from . import SupabaseEmulator

__all__ = ["PREFIX", "control"]

PREFIX = "/_emulator"


class ControlError(Exception):
    pass


def _json(body: Any, status: int = 200) -> Response:
    text = json.dumps(body, separators=(",", ":"), default=_jsonable)
    return Response(text, status, media_type="application/json")


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return {"_binary_hex": value.hex()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _private(request: Request) -> bool | None:
    value = request.query_params.get("private")
    return None if value is None else value == "true"


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ControlError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


async def control(emulator: SupabaseEmulator, request: Request, path: str) -> Response:
    action = f"{request.method} {path.removeprefix(PREFIX).strip('/')}"
    try:
        return await _act(emulator, request, action)
    except (ControlError, ValueError, TypeError) as exc:
        return _json({"message": str(exc)}, 400)


async def _act(emulator: SupabaseEmulator, request: Request, action: str) -> Response:
    if action == "POST faults":
        body = await _body(request)
        if "latency" in body:
            emulator.latency = float(body["latency"])
        if body.get("fail_next"):
            emulator.fail_next(
                int(body["fail_next"]),
                int(body.get("status", 503)),
                message=body.get("message"),
                retry_after=body.get("retry_after"),
                path=body.get("path"),
                applied=bool(body.get("applied", False)),
            )
        return _json({"pending": len(emulator.faults.pending), "latency": emulator.latency})
    if action == "DELETE faults":
        emulator.clear_faults()
        return _json({"pending": 0, "latency": 0.0})
    if action == "POST policies":
        body = await _body(request)
        if not isinstance(body.get("topic"), str):
            raise ControlError('a policy needs "topic", a glob such as "room-*"')
        fields = ("role", "sub", "insert", "select", "extension")
        policy = emulator.allow(body["topic"], **{k: body[k] for k in fields if k in body})
        return _json(asdict(policy), 201)
    if action == "DELETE policies":
        emulator.policies.clear()
        return _json({"policies": []})
    if action == "POST tokens":
        body = await _body(request)
        ttl = float(body.get("ttl", 3600))
        token = emulator.user_token(
            str(body.get("sub", "user")),
            str(body.get("role", "authenticated")),
            exp=emulator.clock() + ttl,
        )
        return _json({"token": token}, 201)
    if action == "POST tenant":
        body = await _body(request)
        emulator.suspended = bool(body.get("suspended", emulator.suspended))
        emulator.private_only = bool(body.get("private_only", emulator.private_only))
        return _json({"suspended": emulator.suspended, "private_only": emulator.private_only})
    return _read(emulator, request, action)


def _read(emulator: SupabaseEmulator, request: Request, action: str) -> Response:
    topic = request.query_params.get("topic")
    if action == "GET broadcasts":
        found = emulator.broadcasts(topic, private=_private(request))
        return _json([asdict(item) for item in found])
    if action == "GET dropped":
        return _json([asdict(item) for item in emulator.dropped])
    if action == "GET presence":
        if topic is None:
            raise ControlError("presence needs ?topic=")
        return _json(emulator.presence(topic, private=_private(request) or False))
    if action == "GET requests":
        return _json(dict(emulator.requests))
    if action == "POST reset":
        emulator.reset()
        return _json({"reset": True})
    return _json({"message": f"no control route {action!r}"}, 404)
