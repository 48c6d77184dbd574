"""The per-process hub: one Redis subscription per channel, shared by every local connection.

A gateway process opens one pub/sub connection to Redis and SUBSCRIBEs to a
channel's topic when its first local client joins that channel. It
UNSUBSCRIBEs when the last one leaves. Ten thousand browsers on one channel
cost Redis one subscriber per gateway process, not ten thousand.

``subscribe`` returns only after Redis has confirmed a SUBSCRIBE sent *after*
the call began. From then on every event published on the channel reaches
the inbox, and anything published before is already in the stream (the
adapter's Lua script XADDs and PUBLISHes atomically). This is what lets a
session subscribe first and read history second without missing what falls
between. Commands go out in the order they were decided, through one writer
task, so a quick leave-and-rejoin cannot reorder SUBSCRIBE and UNSUBSCRIBE.

If the pub/sub connection fails, or stops answering PING for three
heartbeats, events may have been missed. The hub then closes every inbox
(``redis_lost``), and its clients resume from their last stream ids on
reconnecting, from history. It does not reconnect and resubscribe silently,
because that would lose events without anyone knowing. The next ``subscribe``
opens a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.client import PubSub

from ..adapters.redis import RedisKeys, _mapped_errors
from ..errors import VendorUnavailable
from .entries import Entry
from .inbox import Inbox

__all__ = ["Hub"]

log = logging.getLogger("realtime_bridge.gateway")

#: Heartbeats without a word from Redis (not even a PING's answer) before the link counts as dead.
SILENT_LIMIT = 3

_LINK_ERRORS = (VendorUnavailable, redis_errors.RedisError, OSError)


class Hub:
    """This process's live fan-out from Redis pub/sub to local inboxes."""

    def __init__(
        self,
        connect: Callable[[], aioredis.Redis],
        *,
        prefix: str,
        label: str,
        heartbeat: float,
        timeout: float,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._label = label
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._link: _Link | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._local: dict[str, set[Inbox[Any]]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        #: Times the pub/sub connection was lost (clients were closed each time).
        self.lost = 0

    @property
    def channels(self) -> int:
        """Channels this process is subscribed to."""
        return len(self._local)

    async def subscribe(self, channel: str, inbox: Inbox[Any]) -> None:
        """Deliver ``channel``'s live events to ``inbox``, once Redis confirms it is listening."""
        local = self._local.get(channel)
        if local is None:
            local = self._local[channel] = set()
            self._ready[channel] = self._link_now().subscribe(self._topic(channel))
        local.add(inbox)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(self._ready[channel])
        except TimeoutError:
            self.unsubscribe(channel, inbox)
            raise VendorUnavailable(
                "Redis did not confirm SUBSCRIBE in time", adapter=self._label
            ) from None
        except BaseException:
            self.unsubscribe(channel, inbox)
            raise

    def unsubscribe(self, channel: str, inbox: Inbox[Any]) -> None:
        """Stop delivering to ``inbox``; the last one out unsubscribes this process."""
        local = self._local.get(channel)
        if local is None or inbox not in local:
            return
        local.discard(inbox)
        if local:
            return
        del self._local[channel]
        del self._ready[channel]
        if self._link is not None:
            self._link.unsubscribe(self._topic(channel))

    def deliver(self, topic: bytes, data: bytes) -> None:
        """Hand one published event to every local inbox of its channel, without waiting."""
        # "<prefix>:{<channel>}": channel names cannot contain braces.
        channel = topic.decode()[len(self._prefix) + 2 : -1]
        local = self._local.get(channel)
        if local:
            entry_id, _, payload = data.partition(b"\n")
            entry = Entry(channel, entry_id.decode(), payload)
            for inbox in tuple(local):
                inbox.offer(entry)

    def fail(self, link: _Link, exc: BaseException) -> None:
        """``link`` broke: close every local connection; the next subscribe opens a new link."""
        if link is not self._link:
            return
        self.lost += 1
        log.warning("gateway: the Redis pub/sub connection failed (%s); closing its clients", exc)
        self._drop("redis_lost", VendorUnavailable(f"pub/sub failed: {exc}", adapter=self._label))

    async def aclose(self) -> None:
        """Close every inbox (``shutdown``) and the pub/sub connection."""
        self._drop("shutdown", None)
        await asyncio.gather(*self._closing)

    def _drop(self, reason: str, error: BaseException | None) -> None:
        link, self._link = self._link, None
        for local in self._local.values():
            for inbox in local:
                inbox.close(reason)
        self._local.clear()
        self._ready.clear()
        if link is not None:
            closing = link.abandon(error)
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def _link_now(self) -> _Link:
        if self._link is None:
            self._link = _Link(self, self._connect(), self._label, self._heartbeat)
        return self._link

    def _topic(self, channel: str) -> bytes:
        return RedisKeys(self._prefix, channel).topic.encode()


class _Link:
    """One pub/sub connection: a writer sending (UN)SUBSCRIBE in order, a reader dispatching."""

    def __init__(self, hub: Hub, client: aioredis.Redis, label: str, heartbeat: float) -> None:
        self._hub = hub
        self._client = client
        self._label = label
        self._heartbeat = heartbeat
        self._pubsub: PubSub = client.pubsub()
        self._commands: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        # One future per SUBSCRIBE sent, per topic, resolved in order by Redis's confirmations.
        self._confirming: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._writer = asyncio.create_task(self._write())

    def subscribe(self, topic: bytes) -> asyncio.Future[None]:
        """Queue a SUBSCRIBE; the future resolves when Redis confirms this one."""
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        confirmed.add_done_callback(_retrieve)
        self._confirming.setdefault(topic, deque()).append(confirmed)
        self._commands.put_nowait(("SUBSCRIBE", topic))
        return confirmed

    def unsubscribe(self, topic: bytes) -> None:
        self._commands.put_nowait(("UNSUBSCRIBE", topic))

    async def _write(self) -> None:
        try:
            with _mapped_errors(self._label):
                await self._pubsub.connect()  # type: ignore[no-untyped-call]
            self._reader = asyncio.create_task(self._read())
            while True:
                verb, topic = await self._commands.get()
                with _mapped_errors(self._label):
                    if verb == "SUBSCRIBE":
                        await self._pubsub.subscribe(topic)
                    else:
                        await self._pubsub.unsubscribe(topic)
        except _LINK_ERRORS as exc:
            self._hub.fail(self, exc)

    async def _read(self) -> None:
        silent = 0
        try:
            while True:
                message = await self._pubsub.get_message(timeout=self._heartbeat)
                if message is None:
                    silent += 1
                    if silent >= SILENT_LIMIT:
                        raise redis_errors.ConnectionError("Redis stopped answering PING")
                    await self._pubsub.ping()
                    continue
                silent = 0
                if message["type"] == "message":
                    self._hub.deliver(message["channel"], message["data"])
                elif message["type"] == "subscribe":
                    self._confirm(message["channel"])
        except _LINK_ERRORS as exc:
            self._hub.fail(self, exc)

    def _confirm(self, topic: bytes) -> None:
        waiting = self._confirming.get(topic)
        if not waiting:
            return
        confirmed = waiting.popleft()
        if not waiting:
            del self._confirming[topic]
        if not confirmed.done():
            confirmed.set_result(None)

    def abandon(self, error: BaseException | None) -> asyncio.Task[None]:
        """Fail whoever waits for a confirmation; close the connection in the returned task."""
        for waiting in self._confirming.values():
            for confirmed in waiting:
                if error is None:
                    confirmed.cancel()
                elif not confirmed.done():
                    confirmed.set_exception(error)
        self._confirming.clear()
        return asyncio.create_task(self._close())

    async def _close(self) -> None:
        current = asyncio.current_task()
        for task in (self._writer, self._reader):
            if task is not None and task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._client.aclose()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a confirmation's failure as seen: it is raised to whoever awaits it, if anyone."""
    if not future.cancelled():
        future.exception()
