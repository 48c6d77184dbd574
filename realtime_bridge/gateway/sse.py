"""``GET /sse``: Server-Sent Events for one or more channels, resumable with ``Last-Event-ID``.

Query: ``token`` (or an ``Authorization: Bearer`` header), ``channel``
(repeatable; by default every channel the token grants), and
``last_event_id`` (the same as the header; for a client that reopens the
stream itself, with a fresh token, as ``EventSource`` cannot change its URL).

What the stream carries, in order:

- ``retry: <ms>``: how long a browser waits before reconnecting. It is jittered
  per connection, so a restarted gateway is not hit by every client at once;
- the events the client missed, then live events, each as ``id: <cursor>`` and
  ``data: <event envelope>`` (unnamed, so ``onmessage`` receives them). The
  cursor holds one stream entry id per channel (see ``cursor``);
- ``event: ready`` once every channel is caught up and live;
- ``event: reset`` (data ``{"channel", "reason", "id"}``): events were missed.
  Re-fetch that channel's state from the API. The ``id:`` moves past them;
- ``event: heartbeat`` after ``heartbeat`` seconds without anything else. It
  is a named event rather than a comment, so browser JavaScript can see it too
  and tell a silent connection from a dead one;
- ``event: expired`` when the token expires; the stream then ends, and the
  client reopens it with a new token and ``last_event_id``.

A client that falls ``buffer`` events behind gets ``reset`` (reason
``slow_consumer``) and the stream ends. A write that waits ``send_timeout``
seconds on a client that does not read ends the stream without ceremony.

The write path is built for one broadcast reaching ten thousand streams of
one process (see ``bench/gateway_sse.py``). A stream that finds several
events queued writes them in one go (up to ``BATCH``), so a process that
falls behind catches up with fewer, larger writes. A write arms no timer of
its own: one watchdog per stream, armed by the first write and re-armed only
when it fires, cuts a write that has waited ``send_timeout``. Arming and
cancelling a timer per write would cost each delivery a timer, a heap entry
and garbage that outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ..errors import InvalidEvent, VendorUnavailable
from ..events import validate_channel
from .auth import authenticate, problem_response
from .cursor import format_cursor, parse_cursor
from .entries import Entry
from .errors import problem_of
from .inbox import Closed, Overflowed
from .service import Gateway
from .session import Reset, Session
from .tokens import Grant, TokenRejected

__all__ = ["SseEndpoint"]

log = logging.getLogger("realtime_bridge.gateway")

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]
#: Browsers wait this long (ms, jittered up to twice as long) before reconnecting.
RETRY_MS = 1000
#: Live events written in one go at most, when a stream finds that many queued.
BATCH = 64
#: A timer may fire this much before its time (the event loop's clock resolution, and more).
_EARLY = 0.001
#: The context the watchdogs run in: they read no context variable, and sharing one
#: spares each the copy of the current context the event loop would make.
_WATCHDOGS = contextvars.Context()


class _Gone(Exception):
    """The client went away, or stopped reading: stop writing to it."""


class SseEndpoint:
    """The ASGI app behind ``GET /sse``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":  # the headers a stream would have, and no stream
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            grant, channels, cursor = self._read(Request(scope, receive))
        except (TokenRejected, InvalidEvent, ValueError) as exc:
            await problem_response(problem_of(exc))(scope, receive, send)
            return
        session = self.gateway.open_session(grant, transport="sse")
        try:
            try:
                for channel in channels:
                    await session.listen(channel)
            except VendorUnavailable as exc:
                await problem_response(problem_of(exc))(scope, receive, send)
                return
            await _Stream(session, receive, send).run(channels, cursor)
        finally:
            await self.gateway.close_session(session)

    def _read(self, request: Request) -> tuple[Grant, list[str], dict[str, str]]:
        """The request's grant, channels and positions (the request is not kept after)."""
        grant = authenticate(self.gateway, request)
        channels = self._channels(request, grant)
        cursor = parse_cursor(
            request.headers.get("last-event-id") or request.query_params.get("last_event_id", "")
        )
        return grant, channels, cursor

    def _channels(self, request: Request, grant: Grant) -> list[str]:
        asked = request.query_params.getlist("channel") or sorted(grant.channels)
        channels = list(dict.fromkeys(validate_channel(channel) for channel in asked))
        if len(channels) > self.gateway.settings.max_channels:
            raise ValueError(
                f"{len(channels)} channels on one stream; at most "
                f"{self.gateway.settings.max_channels}"
            )
        for channel in channels:
            grant.check(channel)
        return channels


class _Stream:
    """One open event stream: writes what the session yields until it ends."""

    # Ten thousand of these live at once: no per-instance dict for the collector to walk.
    __slots__ = (
        "_channels",
        "_last_write",
        "_loop",
        "_receive",
        "_send",
        "_session",
        "_settings",
        "_single",
        "_stalled",
        "_task",
        "_watchdog",
        "_write_deadline",
    )

    def __init__(self, session: Session[Any], receive: Receive, send: Send) -> None:
        self._session = session
        self._receive = receive
        self._send = send
        self._settings = session.gateway.settings
        self._channels: list[str] = []
        #: The stream's one channel, when it has one: its cursor is then quick to write.
        self._single: str | None = None
        self._last_write = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        #: When the write in progress, if any, counts as stalled.
        self._write_deadline: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._stalled = False

    async def run(self, channels: list[str], cursor: dict[str, str]) -> None:
        self._channels = channels
        self._single = channels[0] if len(channels) == 1 else None
        self._task = asyncio.current_task()
        watcher = asyncio.create_task(self._watch_disconnect())
        try:
            await self._start()
            # Every id: sent must name every channel, or a drop mid-catch-up would make the
            # channels not caught up yet look fresh on reconnect (and lose their gap):
            # the client's positions first, then fresh channels (one read each), then the rest.
            for channel in channels:
                if channel in cursor:
                    self._session.resume_from(channel, cursor[channel])
            for channel in sorted(channels, key=lambda channel: channel in cursor):
                await self._session.catch_up(channel, cursor.get(channel), self._emit)
            await self._write(self._named("ready", self._ready()))
            await self._follow()
            await self._finish()
        except _Gone:
            pass
        except VendorUnavailable as exc:
            # Say why before ending: the client reconnects (after ``retry``) either way,
            # but a page, and whoever reads its logs, can tell an outage from a restart.
            log.warning("gateway: an SSE stream ended, the channels could not be read: %s", exc)
            with contextlib.suppress(_Gone):
                await self._write(self._named("unavailable", problem_of(exc).json()))
                await self._finish()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _follow(self) -> None:
        """Send live events, heartbeats and signals until the stream has to end."""
        heartbeat = self._settings.heartbeat
        session, inbox = self._session, self._session.inbox
        while True:
            if not inbox.ready:  # wait on a bare future: see ``Inbox.until_ready``
                idle = time.monotonic() - self._last_write
                await inbox.until_ready(max(0.0, min(heartbeat - idle, session.expires_in())))
            item = await session.next(0) if inbox.ready else None
            if isinstance(item, Entry):
                item = await self._write_live(item)
                if item is None:
                    continue
            if isinstance(item, Overflowed):
                await self._emit(self._session.resets_for(item))
                return
            elif isinstance(item, Closed):
                return
            elif self._session.expires_in() <= 0:
                await self._write(self._named("expired", {"error": "token_expired"}))
                return
            elif time.monotonic() - self._last_write >= heartbeat:
                await self._write(b"event: heartbeat\ndata: {}\n\n")

    async def _write_live(self, first: Entry) -> object:
        """Write ``first`` and the events queued behind it in one go.

        Returns what ended the batch when it was not an event (a signal for
        ``_follow`` to handle), else None.
        """
        frames = [self._event(first, self._cursor())]
        inbox, ended = self._session.inbox, None
        while len(frames) < BATCH and inbox.ready:
            item = await self._session.next(0)
            if not isinstance(item, Entry):
                ended = item
                break
            frames.append(self._event(item, self._cursor()))
        await self._write(frames[0] if len(frames) == 1 else b"".join(frames))
        return ended

    async def _emit(self, items: Sequence[Entry | Reset]) -> None:
        """Write a page of caught-up events (or resets) in one go."""
        chunks = []
        others_of: dict[str, str] = {}
        for item in items:
            if item.channel not in others_of:
                others_of[item.channel] = self._cursor(without=item.channel)
            others = others_of[item.channel]
            if isinstance(item, Entry):
                chunks.append(self._event(item, _join(others, item.channel, item.id)))
            else:
                data = {"channel": item.channel, "reason": item.reason, "id": item.position}
                cursor = _join(others, item.channel, item.position)
                chunks.append(self._named("reset", data, cursor))
        await self._write(b"".join(chunks))

    def _cursor(self, without: str | None = None) -> str:
        if self._single is not None:
            if without is not None:
                return ""
            position = self._session.positions.get(self._single)
            return "" if position is None else f"{self._single}:{position}"
        channels = (channel for channel in self._channels if channel != without)
        return format_cursor(self._session.positions, channels)

    def _ready(self) -> dict[str, Any]:
        return {
            "channels": self._channels,
            "heartbeat": self._settings.heartbeat,
            "expires_at": self._session.grant.expires_at,
        }

    @staticmethod
    def _event(entry: Entry, cursor: str) -> bytes:
        return b"id: " + cursor.encode() + b"\n" + entry.sse_data + b"\n"

    def _named(self, name: str, data: object, cursor: str | None = None) -> bytes:
        cursor = self._cursor() if cursor is None else cursor
        body = json.dumps(data, separators=(",", ":"))
        return f"event: {name}\nid: {cursor}\ndata: {body}\n\n".encode()

    async def _start(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        retry = random.randint(RETRY_MS, 2 * RETRY_MS)
        await self._write(f"retry: {retry}\n\n".encode())

    async def _write(self, data: bytes) -> None:
        """Send ``data``; ``_Gone`` if the client left or did not read for ``send_timeout``."""
        self._write_deadline = self._loop.time() + self._settings.send_timeout
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(
                self._write_deadline, self._check_write, context=_WATCHDOGS
            )
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except asyncio.CancelledError:
            if not self._stalled or self._task is None:
                raise
            self._task.uncancel()  # the watchdog's cancel, taken back: the stream ends calmly
            self._session.gateway.count("stalled")
            raise _Gone from None
        except OSError:
            raise _Gone from None
        finally:
            self._write_deadline = None
        self._last_write = time.monotonic()

    def _check_write(self) -> None:
        """The watchdog: cut the write in progress if it is due; else watch the next one."""
        self._watchdog = None
        deadline = self._write_deadline
        if deadline is None:
            return  # no write in progress: stay disarmed until the next one
        if self._loop.time() >= deadline - _EARLY:
            self._stalled = True
            if self._task is not None:
                self._task.cancel()
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_write, context=_WATCHDOGS)

    async def _finish(self) -> None:
        try:
            async with asyncio.timeout(self._settings.send_timeout):
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            raise _Gone from None

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._session.inbox.close("disconnected")
                return


def _join(others: str, channel: str, position: str) -> str:
    mine = f"{channel}:{position}"
    return f"{others}|{mine}" if others else mine
