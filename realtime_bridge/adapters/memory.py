"""The in-process adapter: for tests, the embedded demo, and one-process apps.

It does everything the Redis adapter does, in memory, within one event loop:
per-channel history capped at ``history`` events, duplicate ids dropped within
a window of ``dedupe`` ids, presence members that expire unless refreshed,
and live subscribers with bounded queues (a subscriber that falls behind is
cut off, never allowed to grow memory).

Like a Redis stream, every stored event gets a time-ordered position
(``1718000000000-0``), so the gateway can serve a memory adapter's channels to
browsers exactly as it serves Redis's: ``read_after`` resumes a client from
its position (or says it is older than what is kept), and ``listen`` hands
each new event to the gateway's hub with its position. With
``?gateway_secret=`` the adapter also mints the gateway's client tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..errors import CursorNotFound
from ..events import Event
from ..gateway import tokens
from ._gateway_auth import GatewayClientAuth
from ._query import QueryOptions
from .base import (
    SELF_HOSTED_CAPABILITIES,
    Adapter,
    Capability,
    HistoryPage,
    Limits,
    Member,
    Occupancy,
    PublishResult,
)

__all__ = ["MemoryAdapter", "Positioned", "Subscription"]

#: A stored event's position in its channel, as numbers: (milliseconds, sequence).
Position = tuple[int, int]
#: Called with each new event of a channel and its position (``"1718000000000-0"``).
Listener = Callable[[str, Event], None]
_OPTIONS = {"history", "dedupe", "buffer", "gateway_secret", "gateway_token_ttl"}


class Positioned(tuple[str, Event]):
    """An event and its position in the channel's stream (``"<ms>-<n>"``)."""

    __slots__ = ()

    @property
    def position(self) -> str:
        return self[0]

    @property
    def event(self) -> Event:
        return self[1]


DEFAULT_LIMITS = Limits(max_payload_bytes=1024 * 1024, max_events_per_batch=1000)


class Subscription:
    """Live events of one channel; iteration ends if the subscriber falls behind."""

    def __init__(self, channel: str, buffer: int) -> None:
        self.channel = channel
        self.overflowed = False
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=buffer)

    def offer(self, event: Event) -> bool:
        """Queue ``event``; on overflow, end the subscription and return False."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self._queue = asyncio.Queue(maxsize=1)
            self._queue.put_nowait(None)
            return False
        return True

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event


class MemoryAdapter(GatewayClientAuth, Adapter):
    """Everything in this process's memory; nothing survives a restart."""

    scheme = "memory"
    #: Client auth only with a ``gateway_secret`` (see the Redis adapter).
    capabilities: ClassVar[frozenset[Capability]] = SELF_HOSTED_CAPABILITIES | {
        Capability.CLIENT_AUTH
    }

    def __init__(
        self,
        *,
        history: int = 1000,
        dedupe: int = 100_000,
        buffer: int = 1000,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
        gateway_secret: str | None = None,
        gateway_token_ttl: int = tokens.DEFAULT_TTL,
    ) -> None:
        self._init_client_auth(
            gateway_secret, gateway_token_ttl, time.time, without=SELF_HOSTED_CAPABILITIES
        )
        self.limits = limits
        self._history_size = history
        self._dedupe_size = dedupe
        self._buffer = buffer
        self._clock = clock
        self._streams: defaultdict[str, deque[Positioned]] = defaultdict(self._new_stream)
        #: Per channel, the position of the newest event trimmed from its stream.
        self._trimmed: dict[str, Position] = {}
        self._last: Position = (time.time_ns() // 1_000_000, 0)
        #: Positions before this one belong to an earlier process: never trusted as cursors.
        self._born: Position = self._last
        self._listeners: defaultdict[str, set[Listener]] = defaultdict(set)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._members: defaultdict[str, dict[str, tuple[float, Member]]] = defaultdict(dict)
        self._subscriptions: defaultdict[str, set[Subscription]] = defaultdict(set)

    def _new_stream(self) -> deque[Positioned]:
        return deque(maxlen=self._history_size)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryAdapter:
        query = QueryOptions(urlsplit(url).query, adapter="memory", known=_OPTIONS)
        options.setdefault("history", query.integer("history", 1000))
        options.setdefault("dedupe", query.integer("dedupe", 100_000))
        options.setdefault("buffer", query.integer("buffer", 1000))
        options.setdefault("gateway_secret", query.text("gateway_secret", "") or None)
        options.setdefault(
            "gateway_token_ttl", query.integer("gateway_token_ttl", tokens.DEFAULT_TTL)
        )
        return cls(**options)

    @property
    def name(self) -> str:
        return "memory://"

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        duplicates = []
        for event in events:
            if event.id in self._seen:
                duplicates.append(event.id)
                continue
            self._remember(event.id)
            self._store(event)
            for subscription in list(self._subscriptions[event.channel]):
                if not subscription.offer(event):
                    self._subscriptions[event.channel].discard(subscription)
        return PublishResult(published=len(events) - len(duplicates), duplicates=tuple(duplicates))

    def _store(self, event: Event) -> None:
        """Append ``event`` at the next position, and hand it to the channel's listeners."""
        now_ms = time.time_ns() // 1_000_000
        last_ms, last_n = self._last
        self._last = (now_ms, 0) if now_ms > last_ms else (last_ms, last_n + 1)
        position = f"{self._last[0]}-{self._last[1]}"
        stream = self._streams[event.channel]
        if len(stream) == stream.maxlen:
            self._trimmed[event.channel] = _position(stream[0].position)
        stream.append(Positioned((position, event)))
        for listener in tuple(self._listeners.get(event.channel, ())):
            listener(position, event)

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self._dedupe_size:
            self._seen.popitem(last=False)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Receive events published to ``channel`` while the context is open."""
        subscription = Subscription(channel, self._buffer)
        self._subscriptions[channel].add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions[channel].discard(subscription)

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        events = [stored.event for stored in self._streams.get(channel, ())]
        if after is not None:
            start = self._index(events, after, channel) + 1
            page = events[start : start + limit]
            return HistoryPage(tuple(page), has_more=start + limit < len(events))
        end = self._index(events, before, channel) if before is not None else len(events)
        start = max(0, end - limit)
        return HistoryPage(tuple(events[start:end]), has_more=start > 0)

    @staticmethod
    def _index(events: list[Event], event_id: str, channel: str) -> int:
        for index, event in enumerate(events):
            if event.id == event_id:
                return index
        raise CursorNotFound(f"event {event_id} is not in the kept history of {channel}")

    # -- stream positions, for the gateway ----------------------------------

    def listen(self, channel: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(position, event)`` for each new event of ``channel``; returns ``stop``.

        Listeners run inside ``publish``, so they must not block. Each counts
        as one subscriber in ``occupancy`` (the gateway's hub is one per channel).
        """
        self._listeners[channel].add(listener)

        def stop() -> None:
            listeners = self._listeners.get(channel)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[channel]

        return stop

    def read_after(
        self, channel: str, cursor: str | None, limit: int
    ) -> tuple[list[Positioned], str, bool]:
        """Events after position ``cursor``: ``(events, position, gap)``, oldest first.

        ``position`` is the last event's, else ``cursor``, else the newest now.
        ``gap`` is True when an event after ``cursor`` may be gone: it was
        trimmed, it belongs to an earlier process, or the cursor is from the
        future. ``position`` is then the newest, and no events are returned.
        With ``limit`` 0 and no cursor, only the newest position is returned.
        """
        stream = self._streams.get(channel, ())
        newest = stream[-1].position if stream else f"{self._last[0]}-{self._last[1]}"
        if cursor is None:
            return [], newest, False
        key = _position(cursor)
        trimmed = self._trimmed.get(channel, (0, 0))
        if key < trimmed or key < self._born or key > self._last:
            return [], newest, True
        after = [stored for stored in stream if _position(stored.position) > key]
        page = after[:limit]
        return page, page[-1].position if page else cursor, False

    def read_latest(self, channel: str, limit: int) -> tuple[list[Positioned], str]:
        """The newest ``limit`` events (oldest first) and the newest position."""
        stream = list(self._streams.get(channel, ()))
        newest = stream[-1].position if stream else f"{self._last[0]}-{self._last[1]}"
        return stream[-limit:] if limit else [], newest

    async def enter_presence(self, channel: str, member: Member, *, ttl: float = 60.0) -> None:
        """Add or refresh ``member``; it leaves by itself ``ttl`` seconds after the last refresh."""
        self._members[channel][member.id] = (self._clock() + ttl, member)

    async def leave_presence(self, channel: str, member_id: str) -> None:
        self._members[channel].pop(member_id, None)

    async def presence(self, channel: str) -> list[Member]:
        now = self._clock()
        members = self._members.get(channel, {})
        for member_id in [mid for mid, (expiry, _) in members.items() if expiry <= now]:
            del members[member_id]
        return [member for _, member in sorted(members.values(), key=lambda em: em[1].id)]

    async def occupancy(self, channel: str) -> Occupancy:
        members = len(await self.presence(channel))
        subscribers = len(self._subscriptions.get(channel, ())) + len(
            self._listeners.get(channel, ())
        )
        return Occupancy(channel, subscribers=subscribers, members=members)


def _position(text: str) -> Position:
    """``"1718000000000-3"`` as ``(1718000000000, 3)``."""
    ms, _, n = text.partition("-")
    return int(ms), int(n)
