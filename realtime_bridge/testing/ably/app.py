"""The emulator's HTTP face: Ably's REST routes as an ASGI app, on Starlette.

Routes are matched on the raw (still percent-encoded) path, so a channel
name holding ``/`` (sent as ``%2F``) stays one path segment; the channel
segment is decoded as the SDKs encode it (``quote_plus``: ``+`` is a space).
Every error, including the emulator's own bugs, is answered in Ably's shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._routes import Route as BaseRoute
from .._routes import find_route
from .auth import Credentials
from .control import PREFIX, control
from .errors import AblyError
from .faults import LoggedRequest
from .store import StoredMessage, check_channel
from .wire import (
    Window,
    decode,
    error_response,
    int_param,
    limit_param,
    links,
    raw_path,
    read_body,
    render,
    unenveloped,
    wants_msgpack,
)

if TYPE_CHECKING:
    from . import AblyEmulator

__all__ = ["EmulatorApp"]

log = logging.getLogger("realtime_bridge.testing.ably")

MAX_BATCH_BODY = 2 * 1024 * 1024  # a batch request body must be under 2 MiB
MAX_BATCH_CHANNELS = 100  # distinct channels in one batch request
MAX_BATCH_MESSAGES = 1000  # messages in one BatchSpec


@dataclass
class Reply:
    body: Any
    status: int = 200
    links: list[tuple[str, str]] = field(default_factory=list)  # (relative url, rel)


@dataclass
class Call:
    """One API request, routed: its path parameters, credentials and response format."""

    request: Request
    params: dict[str, str]
    credentials: Credentials | None
    binary: bool

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query_params


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Route(BaseRoute):
    auth: bool = True

    def decode(self, name: str, segment: str) -> str:
        # Ably's SDKs encode a channel's spaces as "+" in paths.
        return unquote_plus(segment) if name == "channel" else unquote(segment)


ROUTES = (
    Route("GET", "/time", "time", auth=False),
    Route("POST", "/keys/{keyName}/requestToken", "request_token", auth=False),
    Route("POST", "/messages", "batch_publish"),
    Route("GET", "/presence", "batch_presence"),
    Route("POST", "/channels/{channel}/messages", "publish"),
    Route("GET", "/channels/{channel}/messages", "history"),
    Route("GET", "/channels/{channel}/messages/{serial}", "get_message"),
    Route("GET", "/channels/{channel}/messages/{serial}/versions", "message_versions"),
    Route("GET", "/channels/{channel}/presence", "presence"),
    Route("GET", "/channels/{channel}/presence/history", "presence_history"),
    Route("GET", "/channels/{channel}", "channel_status"),
)


class EmulatorApp:
    """The ASGI application serving one ``AblyEmulator``."""

    def __init__(self, emulator: AblyEmulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # Ably's realtime protocol (WebSocket) is not emulated
        request = Request(scope, receive)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        path = raw_path(request.scope)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return await control(self.emulator, request, path)
        binary = wants_msgpack(request)
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
            reply = await self._call(route, request, params, binary)
            if fault is not None:
                raise fault.error()
            response = render(reply.body, reply.status, binary, links=reply.links)
        except AblyError as exc:
            response = error_response(exc, binary)
        except Exception as exc:  # a bug here must still answer in Ably's shape
            log.exception("Ably emulator: %s %s failed", request.method, path)
            error = AblyError(50000, f"Internal error in the Ably emulator: {type(exc).__name__}")
            response = error_response(error, binary)
        template = route.template if route is not None and params is not None else ""
        entry = LoggedRequest(request.method, path, template, response.status_code, bool(fault))
        self.emulator.record_request(entry)
        return response

    async def _call(
        self, route: Route, request: Request, params: dict[str, str], binary: bool
    ) -> Reply:
        credentials = None
        if route.auth:
            credentials = self.emulator.auth.authenticate(
                request.headers.get("authorization"),
                request.headers.get("x-ably-clientid"),
                request.url.scheme == "https",
            )
        handler: Handler = getattr(self, f"_{route.handler}")
        return await handler(Call(request, params, credentials, binary))

    # -- routes --------------------------------------------------------------------------

    async def _time(self, call: Call) -> Reply:
        return Reply([self.emulator.store.now_ms()])

    async def _request_token(self, call: Call) -> Reply:
        body = await read_body(call.request)
        token = self.emulator.auth.request_token(
            call.params["keyName"],
            body,
            call.request.headers.get("authorization"),
            call.request.url.scheme == "https",
        )
        return Reply(token.details())

    async def _publish(self, call: Call) -> Reply:
        channel = _channel(call, "publish")
        if call.query.get("enveloped") == "false":
            messages: list[object] = [await unenveloped(call.request)]
        else:
            body = await read_body(call.request)
            messages = body if isinstance(body, list) else [body]
        outcome = self.emulator.store.publish(channel, messages, call.credentials)
        reply = {"channel": channel, "messageId": outcome.message_id, "serials": outcome.serials}
        return Reply(reply, 201)

    async def _history(self, call: Call) -> Reply:
        channel = _channel(call, "history")
        window = Window.parse(call.query, self.emulator.store.now_ms())
        items, more = self.emulator.store.history(
            channel,
            start=window.start,
            end=window.end,
            limit=window.limit,
            forwards=window.forwards,
            after=window.after,
        )
        pages = links("messages", window.params(call.query), window.after, items, more)
        return Reply([item.wire(call.binary) for item in items], links=pages)

    async def _get_message(self, call: Call) -> Reply:
        """The latest version of one message, by serial (messages here are never updated)."""
        return Reply(self._by_serial(call).wire(call.binary))

    async def _message_versions(self, call: Call) -> Reply:
        message = self._by_serial(call)
        pages = links("versions", {"limit": str(limit_param(call.query))}, None, [message], False)
        return Reply([message.wire(call.binary)], links=pages)

    def _by_serial(self, call: Call) -> StoredMessage:
        channel = _channel(call, "history")
        serial = call.params["serial"]
        for message in self.emulator.store.channel(channel).messages:
            if message.serial == serial:
                return message
        raise AblyError(40400, f"Message not found: no message with serial {serial!r}")

    async def _presence_history(self, call: Call) -> Reply:
        channel = _channel(call, "history")
        window = Window.parse(call.query, self.emulator.store.now_ms())
        items, more = self.emulator.store.presence_history(
            channel,
            start=window.start,
            end=window.end,
            limit=window.limit,
            forwards=window.forwards,
            after=window.after,
        )
        pages = links("history", window.params(call.query), window.after, items, more)
        return Reply([item.wire(call.binary) for item in items], links=pages)

    async def _presence(self, call: Call) -> Reply:
        channel = _channel(call, "subscribe")
        client_id = call.query.get("clientId") or None
        connection_id = call.query.get("connectionId") or None
        limit = limit_param(call.query)
        after = int_param(call.query, "cursor", None)
        members = self.emulator.store.members(
            channel, client_id=client_id, connection_id=connection_id
        )
        if after is not None:
            members = [member for member in members if member.order > after]
        page, more = members[:limit], len(members) > limit
        params = {"limit": str(limit), "clientId": client_id, "connectionId": connection_id}
        params["format"] = call.query.get("format")
        pages = links("presence", params, after, page, more)
        return Reply([member.wire(call.binary) for member in page], links=pages)

    async def _channel_status(self, call: Call) -> Reply:
        channel = _channel(call, "channel-metadata")
        metrics = self.emulator.store.metrics(channel)
        status = {"isActive": True, "occupancy": {"metrics": metrics}}
        return Reply({"channelId": channel, "status": status})

    async def _batch_publish(self, call: Call) -> Reply:
        raw = await call.request.body()
        if len(raw) >= MAX_BATCH_BODY:
            raise AblyError(
                40009, f"Batch request body too large ({len(raw)} bytes; it must be under 2 MiB)"
            )
        body = decode(raw, call.request.headers.get("content-type", ""))
        specs = [_batch_spec(spec) for spec in (body if isinstance(body, list) else [body])]
        if not specs:
            raise AblyError(40001, "invalid request body: no BatchSpec")
        _check_channel_count([channel for channels, _ in specs for channel in channels], "publish")
        results: list[dict[str, Any]] = []
        for channels, messages in specs:
            for channel in channels:
                try:
                    check_channel(channel)
                    _require(call, channel, "publish")
                    outcome = self.emulator.store.publish(channel, messages, call.credentials)
                    results.append({"channel": channel, "messageId": outcome.message_id})
                except AblyError as exc:
                    results.append({"channel": channel, "error": exc.info()})
        return _batch_reply(results)

    async def _batch_presence(self, call: Call) -> Reply:
        separator = call.query.get("separator") or ","
        names = [c for c in (call.query.get("channels") or "").split(separator) if c]
        if not names:
            raise AblyError(40003, "Invalid channels param: name at least one channel")
        _check_channel_count(names, "presence")
        results: list[dict[str, Any]] = []
        for channel in names:
            try:
                check_channel(channel)
                _require(call, channel, "subscribe")
                members = self.emulator.store.members(channel)
                presence = [member.wire(call.binary) for member in members]
                results.append({"channel": channel, "presence": presence})
            except AblyError as exc:
                results.append({"channel": channel, "error": exc.info()})
        return _batch_reply(results)


# -- routing, parameters, bodies ------------------------------------------------------------


def _no_route(method: str, path: str, route: Route | None) -> AblyError:
    if route is not None:
        return AblyError(40500, f"Method {method} not allowed on {path}")
    return AblyError(40400, f"Not found: no Ably REST route {method} {path}")


def _channel(call: Call, operation: str) -> str:
    channel = call.params["channel"]
    check_channel(channel)
    _require(call, channel, operation)
    return channel


def _require(call: Call, channel: str, operation: str) -> None:
    if call.credentials is not None:
        call.credentials.require(channel, operation)


def _batch_spec(spec: object) -> tuple[list[str], list[object]]:
    if not isinstance(spec, Mapping) or "channels" not in spec or "messages" not in spec:
        raise AblyError(40001, "invalid request body: a BatchSpec is {channels, messages}")
    channels, messages = spec["channels"], spec["messages"]
    channels = [channels] if isinstance(channels, str) else channels
    messages = [messages] if isinstance(messages, Mapping) else messages
    if not isinstance(channels, list) or not channels:
        raise AblyError(40001, "invalid request body: channels is a name or a list of names")
    if not all(isinstance(channel, str) for channel in channels):
        raise AblyError(40001, "invalid request body: every channel name is a string")
    if not isinstance(messages, list) or not messages:
        raise AblyError(40001, "invalid request body: messages is a message or a list of them")
    if len(messages) > MAX_BATCH_MESSAGES:
        raise AblyError(
            40034, f"Too many messages in one BatchSpec ({len(messages)}; at most 1000)"
        )
    return channels, messages


def _check_channel_count(channels: Sequence[str], what: str) -> None:
    distinct = len(set(channels))
    if distinct > MAX_BATCH_CHANNELS:
        raise AblyError(
            90010,
            f"Max number of channels permitted in a single batch {what} request "
            f"({MAX_BATCH_CHANNELS}) exceeded ({distinct})",
        )


def _batch_reply(results: list[dict[str, Any]]) -> Reply:
    if any("error" in result for result in results):
        raise AblyError(
            40020, "Batched response includes errors", 400, extra={"batchResponse": results}
        )
    return Reply(results)


# -- responses -------------------------------------------------------------------------------


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
