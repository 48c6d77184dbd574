"""``/ws``: a WebSocket carrying subscriptions, presence and heartbeats as JSON messages.

Connect with ``?token=`` (or an ``Authorization: Bearer`` header). A bad token
is refused after the handshake with an ``error`` message and close code 4401,
because browsers do not show the handshake's HTTP status to JavaScript. The
gateway then sends ``{"type": "connected", "heartbeat", "expires_at", "user"}``.

Client to gateway:

- ``{"type": "subscribe", "channel", "last_id"?, "presence"?}``: join a channel
  after ``last_id`` (the last stream entry id received on it). The gateway
  enters presence when the token allows it, unless ``presence`` is false;
  ``presence: true`` with a token that does not allow it is refused (4403);
- ``{"type": "unsubscribe", "channel"}`` (leaves presence too);
- ``{"type": "auth", "token"}``: a fresh token, before the current one expires.
  It must grant every joined channel, for the same user;
- ``{"type": "ping"}``, answered with ``{"type": "pong"}``.

Gateway to client: ``event`` (``channel``, ``id``: the stream entry id to resume
after, ``event``: the envelope), ``subscribed`` (``channel``, ``id``,
``presence``), ``unsubscribed``, ``reset`` (``channel``, ``reason``, ``id``: re-fetch,
then go on from ``id``), ``heartbeat`` (after ``heartbeat`` seconds of silence;
uvicorn also sends protocol pings, so dead clients are noticed),
``authorized``, ``pong``, and ``error`` (``error``, ``message``) before a close
code (``gateway.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from ..errors import InvalidEvent, VendorUnavailable
from ..events import validate_channel
from .auth import authenticate
from .cursor import parse_stream_id
from .entries import Entry
from .errors import CLOSE_RESTART, CLOSE_SLOW, CLOSE_UNAVAILABLE, Problem, problem_of
from .inbox import Closed, Overflowed
from .service import Gateway
from .session import Reset, Session
from .tokens import TokenRejected

__all__ = ["WebSocketEndpoint"]

log = logging.getLogger("realtime_bridge.gateway")

#: Client messages waiting to be handled, at most; a client that floods is cut off.
MAX_PENDING = 64
_CLOSE_FOR = {"shutdown": CLOSE_RESTART, "redis_lost": CLOSE_UNAVAILABLE}


@dataclass(frozen=True, slots=True)
class _Message:
    """A client message, parsed; ``problem`` set when it could not be."""

    body: dict[str, Any]
    problem: Problem | None = None


class _Gone(Exception):
    """The client went away, or stopped reading: stop writing to it."""


class _Refused(Exception):
    """Close the connection with this problem (an ``error`` message, then its close code)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class WebSocketEndpoint:
    """The ASGI app behind ``/ws``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws: WebSocket = WebSocket(scope, receive, send)
        await ws.accept()
        connection = _Connection(self.gateway, ws)
        try:
            grant = authenticate(self.gateway, ws)
        except TokenRejected as exc:
            with contextlib.suppress(_Gone):
                await connection.refuse(problem_of(exc))
            return
        session = self.gateway.open_session(grant, transport="ws")
        try:
            await connection.serve(session)
        finally:
            await self.gateway.close_session(session)


class _Connection:
    """One open WebSocket: a reader task queues client messages, this task writes."""

    def __init__(self, gateway: Gateway, ws: WebSocket) -> None:
        self._gateway = gateway
        self._ws = ws
        self._settings = gateway.settings
        self._last_write = time.monotonic()

    async def serve(self, session: Session[Any]) -> None:
        reader = asyncio.create_task(self._read(session))
        try:
            await self._hello(session)
            await self._follow(session)
        except _Refused as refused:
            with contextlib.suppress(_Gone):
                await self.refuse(refused.problem)
        except _Gone:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _hello(self, session: Session[Any]) -> None:
        user = session.grant.user
        await self._send_json(
            {
                "type": "connected",
                "heartbeat": self._settings.heartbeat,
                "expires_at": session.grant.expires_at,
                "user": None if user is None else user.id,
            }
        )

    async def _follow(self, session: Session[Any]) -> None:
        heartbeat = self._settings.heartbeat
        while True:
            idle = time.monotonic() - self._last_write
            item = await session.next(max(0.0, min(heartbeat - idle, session.expires_in())))
            if isinstance(item, Entry):
                await self._send(item.ws_text)
            elif isinstance(item, _Message):
                await self._handle(session, item)
            elif isinstance(item, Overflowed):
                await self._emit(session.resets_for(item))
                await self._close(CLOSE_SLOW, "slow_consumer")
                return
            elif isinstance(item, Closed):
                if item.reason in _CLOSE_FOR:
                    await self._close(_CLOSE_FOR[item.reason], item.reason)
                return
            elif session.expires_in() <= 0:
                raise _Refused(Problem(401, "token_expired", "the token expired"))
            elif time.monotonic() - self._last_write >= heartbeat:
                await self._send('{"type":"heartbeat"}')

    async def _handle(self, session: Session[Any], message: _Message) -> None:
        """Act on one client message; a problem closes the connection (``_Refused``)."""
        if message.problem is not None:
            raise _Refused(message.problem)
        body = message.body
        try:
            kind = body.get("type")
            if kind == "subscribe":
                await self._subscribe(session, body)
            elif kind == "unsubscribe":
                channel = validate_channel(body.get("channel"))
                await session.leave(channel)
                await self._send_json({"type": "unsubscribed", "channel": channel})
            elif kind == "auth":
                await self._renew(session, body.get("token"))
            elif kind == "ping":
                await self._send('{"type":"pong"}')
            else:
                raise ValueError(f"unknown message type {str(kind)[:40]!r}")
        except VendorUnavailable as exc:
            log.warning("gateway: a WebSocket closed, the channels could not be read: %s", exc)
            raise _Refused(problem_of(exc)) from None
        except (TokenRejected, InvalidEvent, ValueError) as exc:
            raise _Refused(problem_of(exc)) from None

    async def _subscribe(self, session: Session[Any], body: dict[str, Any]) -> None:
        channel = validate_channel(body.get("channel"))
        last_id = body.get("last_id")
        if last_id is not None:
            parse_stream_id(str(last_id))
        grant = session.grant
        presence = body.get("presence")
        if presence is None:
            presence = grant.presence and grant.user is not None
        grant.check(channel, presence=bool(presence))
        if channel not in session.positions:
            if len(session.positions) >= self._settings.max_channels:
                raise ValueError(f"at most {self._settings.max_channels} channels per connection")
            await session.join(channel, None if last_id is None else str(last_id), self._emit)
        if presence:
            await session.enter(channel)
        await self._send_json(
            {
                "type": "subscribed",
                "channel": channel,
                "id": session.positions[channel],
                "presence": channel in session.present,
            }
        )

    async def _renew(self, session: Session[Any], token: object) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("auth needs a token")
        grant = self._gateway.verify(token)
        for channel in session.channels:
            grant.check(channel, presence=channel in session.present)
        old, new = session.grant.user, grant.user
        if session.present and (old is None or new is None or old.id != new.id):
            raise TokenRejected(
                "user_changed", "a renewed token must name the same user", status=403
            )
        session.grant = grant
        await self._send_json({"type": "authorized", "expires_at": grant.expires_at})

    async def _emit(self, items: Sequence[Entry | Reset]) -> None:
        for item in items:
            if isinstance(item, Entry):
                await self._send(item.ws_text)
            else:
                await self._send_json(
                    {
                        "type": "reset",
                        "channel": item.channel,
                        "reason": item.reason,
                        "id": item.position,
                    }
                )

    async def _read(self, session: Session[Any]) -> None:
        """Queue each client message for the writer; a disconnect ends the session."""
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if session.inbox.pending_requests >= MAX_PENDING:
                    problem = Problem(400, "too_many_requests", "too many messages at once")
                    session.inbox.request(_Message({}, problem))
                    break
                session.inbox.request(_parse(message))
        except (WebSocketDisconnect, WebSocketDisconnected, OSError):
            pass
        session.inbox.close("disconnected")

    async def refuse(self, problem: Problem) -> None:
        """Send ``error`` and close with the problem's code."""
        await self._send_json({"type": "error", **problem.json()})
        await self._close(problem.close_code, problem.reason)

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self._send(json.dumps(message, separators=(",", ":")))

    async def _send(self, text: str) -> None:
        await self._raw({"type": "websocket.send", "text": text})
        self._last_write = time.monotonic()

    async def _close(self, code: int, reason: str) -> None:
        await self._raw({"type": "websocket.close", "code": code, "reason": reason})

    async def _raw(self, message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._settings.send_timeout):
                await self._ws.send(message)
        except TimeoutError:
            self._gateway.count("stalled")
            raise _Gone from None
        except (WebSocketDisconnect, WebSocketDisconnected, OSError):
            raise _Gone from None


def _parse(message: Mapping[str, Any]) -> _Message:
    text = message.get("text")
    if text is None:
        return _Message({}, Problem(400, "bad_request", "messages are JSON text frames"))
    try:
        body = json.loads(text)
    except ValueError:
        return _Message({}, Problem(400, "bad_request", "a message is not JSON"))
    if not isinstance(body, dict):
        return _Message({}, Problem(400, "bad_request", "a message is not a JSON object"))
    return _Message(body)
