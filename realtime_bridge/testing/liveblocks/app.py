"""The emulator's HTTP face: Liveblocks' REST routes as an ASGI app, on Starlette.

Routes are matched on the raw (still percent-encoded) path, so a room id
holding ``/`` (sent as ``%2F``, as the SDKs quote it) stays one path segment.
Both spellings the official SDKs use are served: ``broadcast_event`` and
``active_users`` (the REST reference, ``@liveblocks/node``) and
``broadcast-event`` and ``active-users`` (the Python SDK). Every error,
including the emulator's own bugs, is answered in Liveblocks' shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._routes import Route, find_route
from .control import PREFIX, control
from .errors import LiveblocksApiError, invalid
from .faults import LoggedRequest
from .tokens import authenticate

if TYPE_CHECKING:
    from . import LiveblocksEmulator

__all__ = ["EmulatorApp", "raw_path"]

log = logging.getLogger("realtime_bridge.testing.liveblocks")

MAX_ROOMS_PAGE = 100


ROUTES = (
    Route("GET", "/v2/rooms", "get_rooms"),
    Route("POST", "/v2/rooms", "create_room"),
    Route("GET", "/v2/rooms/{roomId}", "get_room"),
    Route("POST", "/v2/rooms/{roomId}", "update_room"),
    Route("DELETE", "/v2/rooms/{roomId}", "delete_room"),
    Route("GET", "/v2/rooms/{roomId}/active_users", "active_users"),
    Route("GET", "/v2/rooms/{roomId}/active-users", "active_users"),
    Route("POST", "/v2/rooms/{roomId}/broadcast_event", "broadcast"),
    Route("POST", "/v2/rooms/{roomId}/broadcast-event", "broadcast"),
    Route("POST", "/v2/authorize-user", "authorize_user"),
    Route("POST", "/v2/identify-user", "identify_user"),
)


@dataclass
class Reply:
    body: Any  # JSON-able; None: an empty body
    status: int = 200


def raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


def render(reply: Reply, headers: dict[str, str] | None = None) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status, headers=headers)
    content = json.dumps(reply.body, separators=(",", ":"))
    return Response(content, reply.status, headers=headers, media_type="application/json")


def error_response(error: LiveblocksApiError) -> Response:
    return render(Reply(error.body(), error.status), error.headers)


class EmulatorApp:
    """The ASGI application serving one ``LiveblocksEmulator``."""

    def __init__(self, emulator: LiveblocksEmulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # Liveblocks' WebSocket protocol (browsers) is not emulated
        request = Request(scope, receive)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        path = raw_path(request.scope)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return await control(self.emulator, request, path)
        faults = self.emulator.faults
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        fault = faults.take(path)
        route, params = find_route(ROUTES, request.method, path)
        try:
            if fault is not None and not fault.applied:
                raise fault.error()
            if route is None or params is None:
                raise _no_route(request.method, path, route)
            authenticate(self.emulator.secrets, request.headers.get("authorization"))
            handler: Callable[[Request, dict[str, str]], Awaitable[Reply]]
            handler = getattr(self, f"_{route.handler}")
            reply = await handler(request, params)
            if fault is not None:
                raise fault.error()
            response = render(reply)
        except LiveblocksApiError as exc:
            response = error_response(exc)
        except Exception as exc:  # a bug here must still answer in Liveblocks' shape
            log.exception("Liveblocks emulator: %s %s failed", request.method, path)
            message = f"Internal error in the Liveblocks emulator: {type(exc).__name__}"
            response = error_response(LiveblocksApiError(500, "INTERNAL_SERVER_ERROR", message))
        template = route.template if route is not None and params is not None else ""
        self.emulator.record_request(
            LoggedRequest(request.method, path, template, response.status_code, bool(fault))
        )
        return response

    # -- rooms ----------------------------------------------------------------------------------

    async def _get_rooms(self, request: Request, params: dict[str, str]) -> Reply:
        query = request.query_params
        unsupported = sorted({"query", "userId", "groupIds"} & set(query))
        if unsupported:
            raise invalid(f"the emulator does not filter rooms by {unsupported}")
        limit = _limit(query.get("limit"))
        rooms, cursor = self.emulator.store.page(
            limit=limit,
            starting_after=query.get("startingAfter"),
            organization_id=query.get("organizationId"),
        )
        return Reply({"nextCursor": cursor, "data": [room.wire() for room in rooms]})

    async def _create_room(self, request: Request, params: dict[str, str]) -> Reply:
        flag = request.query_params.get("idempotent", "false").lower()
        idempotent = flag not in ("false", "0")  # ?idempotent alone, or =true: get or create
        room = self.emulator.store.create(await _object(request), idempotent=idempotent)
        return Reply(room.wire())

    async def _get_room(self, request: Request, params: dict[str, str]) -> Reply:
        return Reply(self.emulator.store.room(params["roomId"]).wire())

    async def _update_room(self, request: Request, params: dict[str, str]) -> Reply:
        room = self.emulator.store.update(params["roomId"], await _object(request))
        return Reply(room.wire())

    async def _delete_room(self, request: Request, params: dict[str, str]) -> Reply:
        self.emulator.store.delete(params["roomId"])
        return Reply(None, 204)

    async def _active_users(self, request: Request, params: dict[str, str]) -> Reply:
        room = self.emulator.store.room(params["roomId"])
        return Reply({"data": [connection.wire() for connection in room.connections.values()]})

    async def _broadcast(self, request: Request, params: dict[str, str]) -> Reply:
        raw = await request.body()
        limit = self.emulator.max_message_size
        if len(raw) > limit:
            raise LiveblocksApiError(
                413,
                "PAYLOAD_TOO_LARGE",
                f"The broadcast event is {len(raw)} bytes; at most {limit} are accepted.",
            )
        try:
            event = json.loads(raw)
        except ValueError:
            raise invalid("The request body must be valid JSON.") from None
        spelling = request.url.path.rsplit("/", 1)[-1]
        self.emulator.store.broadcast(params["roomId"], event, spelling)
        return Reply(None, 204)

    # -- tokens ----------------------------------------------------------------------------------

    async def _authorize_user(self, request: Request, params: dict[str, str]) -> Reply:
        return Reply({"token": self.emulator.sign_access_token(await _json(request))})

    async def _identify_user(self, request: Request, params: dict[str, str]) -> Reply:
        return Reply({"token": self.emulator.sign_id_token(await _json(request))})


# -- routing and bodies ----------------------------------------------------------------------------


def _no_route(method: str, path: str, route: Route | None) -> LiveblocksApiError:
    if route is not None:
        return LiveblocksApiError(
            405, "METHOD_NOT_ALLOWED", f"Method {method} not allowed on {path}"
        )
    return LiveblocksApiError(404, "NOT_FOUND", f"No Liveblocks REST route {method} {path}")


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise invalid("The request body must be valid JSON.") from None


async def _object(request: Request) -> dict[str, Any]:
    body = await _json(request)
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_ROOMS_PAGE:
        raise invalid(f"Value at key 'limit': a number from 1 to {MAX_ROOMS_PAGE}, got {raw!r}")
    return limit


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
