"""The emulator's network face: the REST endpoints and the WebSocket, as one ASGI app.

Paths are those a Supabase project exposes through its API gateway
(``/realtime/v1/api/broadcast...``, ``/realtime/v1/websocket``) and those
of a bare Realtime server (``/api/broadcast...``, ``/socket/websocket``).
Routes are matched on the raw, still percent-encoded path, so a topic
holding ``/`` (sent as ``%2F``) stays one segment, as in Phoenix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from .channel import ProtocolError, Session
from .control import PREFIX, control
from .faults import LoggedRequest
from .rest import (
    Answer,
    RestError,
    authenticate,
    batch,
    check_content_type,
    parse_body,
    rate_headers,
    single,
)
from .tokens import JwtError

if TYPE_CHECKING:
    from . import SupabaseEmulator

__all__ = ["EmulatorApp"]

log = logging.getLogger("realtime_bridge.testing.supabase")

GATEWAY = "/realtime/v1"
WEBSOCKET_PATHS = (GATEWAY + "/websocket", "/socket/websocket")
BATCH = "/api/broadcast"
SINGLE = "/api/broadcast/{topic}/events/{event}"
# What the WebSocket handshake answers when connect/3 refuses, by JwtError.reason
_HANDSHAKE_ERRORS = {
    "expired_token": "Token has expired",
    "missing_claims": "Fields `role` and `exp` are required in JWT",
    "signature_error": "Failed to validate JWT signature",
    "error_generating_signer": (
        "Failed to generate JWT signer, check your JWT secret or JWKS configuration"
    ),
}


def raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).decode("latin-1").split("?", 1)[0]
    return str(scope["path"])


def route_of(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """``(route template, params)`` for an API request, or None (a 404, as the gateway says)."""
    api = path.removeprefix(GATEWAY) if path.startswith(GATEWAY + "/") else path
    if method != "POST":
        return None
    if api == BATCH:
        return BATCH, {}
    segments = api.split("/")
    if (
        len(segments) == 6
        and segments[:3] == ["", "api", "broadcast"]
        and segments[4] == "events"
        and segments[3]
        and segments[5]
    ):
        return SINGLE, {"topic": unquote(segments[3]), "event": unquote(segments[5])}
    return None


class EmulatorApp:
    """The ASGI application serving one ``SupabaseEmulator``."""

    def __init__(self, emulator: SupabaseEmulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(WebSocket(scope, receive, send))
        elif scope["type"] == "http":
            request = Request(scope, receive)
            response = await self.respond(request)
            await response(scope, receive, send)

    # -- REST ----------------------------------------------------------------------------

    async def respond(self, request: Request) -> Response:
        path = raw_path(request.scope)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return await control(self.emulator, request, path)
        found = route_of(request.method, path)
        if found is None:
            answer = Answer(404, {"message": "no Route matched with those values"})
            self.emulator.record_request(LoggedRequest(request.method, path, "", 404, False))
            return _render(answer)
        route, params = found
        faults = self.emulator.faults
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        fault = faults.take(path)
        try:
            if fault is not None and not fault.applied:
                raise RestError(fault.status, fault.body(), self._fault_headers(fault.status))
            answer = await self._call(route, params, request)
            if fault is not None:
                raise RestError(fault.status, fault.body(), self._fault_headers(fault.status))
        except RestError as error:
            answer = error.answer
        except Exception as exc:  # a bug here must still answer, and say where it came from
            log.exception("Supabase emulator: %s %s failed", request.method, path)
            message = f"Internal error in the Supabase emulator: {type(exc).__name__}"
            answer = Answer(500, {"message": message})
        if fault is not None:
            answer.headers.update(fault.headers())
        entry = LoggedRequest(request.method, path, route, answer.status, fault is not None)
        self.emulator.record_request(entry)
        return _render(answer)

    def _fault_headers(self, status: int) -> dict[str, str]:
        return rate_headers(self.emulator) if status == 429 else {}

    async def _call(self, route: str, params: dict[str, str], request: Request) -> Answer:
        emulator = self.emulator
        content_type = request.headers.get("content-type")
        body = parse_body(content_type, await request.body())  # Plug.Parsers: before routing
        if route == SINGLE:
            check_content_type(content_type)
        headers = rate_headers(emulator)
        try:
            if emulator.rate.count >= emulator.messages_per_second:
                raise RestError(429, {"message": "Too many requests"})
            claims = authenticate(emulator, request.headers)
            if route == BATCH:
                answer = batch(emulator, claims, body)
            else:
                private = request.query_params.get("private") == "true"
                answer = single(emulator, claims, params["topic"], params["event"], private, body)
        except RestError as error:
            error.answer.headers.update(headers)
            raise
        answer.headers.update(headers)
        return answer

    # -- WebSocket ------------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        emulator = self.emulator
        path = raw_path(ws.scope)
        refusal = self._refuse(ws, path)
        route = "/websocket" if path in WEBSOCKET_PATHS else ""
        emulator.record_request(
            LoggedRequest("GET", path, route, refusal.status if refusal else 101, False)
        )
        if refusal is not None:
            await _deny(ws, refusal)
            return
        await ws.accept()
        connection = Connection(ws)
        token = _handshake_token(ws) or ""
        session = Session(emulator, connection, token)
        emulator.sessions.add(session)
        writer = asyncio.create_task(connection.write())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                try:
                    session.receive(text)
                except ProtocolError as error:
                    log.warning("Supabase emulator: closing a socket that sent %s", error)
                    connection.close(1011)
                except Exception:  # an emulator bug: close this socket, keep serving
                    log.exception("Supabase emulator: a WebSocket frame failed")
                    connection.close(1011)
        finally:
            emulator.sessions.discard(session)
            session.close()
            connection.finish()
            await writer

    def _refuse(self, ws: WebSocket, path: str) -> Answer | None:
        """Why the handshake is refused (as the server's connect/3 and its error handler)."""
        if path not in WEBSOCKET_PATHS:
            return Answer(404, {"message": "no Route matched with those values"})
        vsn = ws.query_params.get("vsn", "1.0.0")
        if not vsn.startswith("1.0."):
            # Supabase also speaks 2.0.0 (array frames); realtime-py sends 1.0.0
            return Answer(403, {"error": f"vsn {vsn} is not emulated, only 1.0.0"})
        if self.emulator.suspended:
            return Answer(403, {"error": "Realtime was disabled for this tenant"})
        token = _handshake_token(ws)
        if token is None:
            return Answer(401, {"error": "API key is missing"})
        try:
            self.emulator.verify(token)
        except JwtError as error:
            text = _HANDSHAKE_ERRORS.get(error.reason, "The token provided is not a valid JWT")
            return Answer(401, {"error": text})
        return None


def _handshake_token(ws: WebSocket) -> str | None:
    return ws.headers.get("x-api-key") or ws.query_params.get("apikey")


class Connection:
    """One accepted WebSocket: frames are queued by the state and written here, in order."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.id = uuid.uuid4().hex
        self.queue: asyncio.Queue[str | int | None] = asyncio.Queue()
        self.closing = False

    def push(self, message: dict[str, Any]) -> None:
        if not self.closing:
            self.queue.put_nowait(json.dumps(message, separators=(",", ":")))

    def close(self, code: int = 1000) -> None:
        """Close the socket after the frames already queued (the client sees ``code``)."""
        if not self.closing:
            self.closing = True
            self.queue.put_nowait(code)

    def finish(self) -> None:
        self.closing = True
        self.queue.put_nowait(None)

    async def write(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            try:
                if isinstance(item, int):
                    await self.ws.close(code=item)
                else:
                    await self.ws.send_text(item)
            except Exception:  # the client has gone; the reader sees the disconnect
                log.debug("Supabase emulator: could not write to a closed socket")
                self.closing = True
                with contextlib.suppress(asyncio.QueueEmpty):
                    while self.queue.get_nowait() is not None:
                        pass
                return


async def _deny(ws: WebSocket, answer: Answer) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(_render(answer))
    else:
        await ws.close(code=1008)


def _render(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    content = json.dumps(answer.body, separators=(",", ":"))
    return Response(content, answer.status, headers=answer.headers, media_type="application/json")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
