"""The in-process adapter: for tests, the embedded demo, and one-process apps.

It does everything the Redis adapter does, in memory, within one event loop:
per-channel history capped at ``history`` events, duplicate ids dropped within
a window of ``dedupe`` ids, presence members that expire unless refreshed,
and live subscribers with bounded queues (a subscriber that falls behind is
cut off, never allowed to grow memory).
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

__all__ = ["MemoryAdapter", "Subscription"]

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


class MemoryAdapter(Adapter):
    """Everything in this process's memory; nothing survives a restart."""

    scheme = "memory"
    capabilities: ClassVar[frozenset[Capability]] = SELF_HOSTED_CAPABILITIES

    def __init__(
        self,
        *,
        history: int = 1000,
        dedupe: int = 100_000,
        buffer: int = 1000,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._history_size = history
        self._dedupe_size = dedupe
        self._buffer = buffer
        self._clock = clock
        self._streams: defaultdict[str, deque[Event]] = defaultdict(self._new_stream)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._members: defaultdict[str, dict[str, tuple[float, Member]]] = defaultdict(dict)
        self._subscriptions: defaultdict[str, set[Subscription]] = defaultdict(set)

    def _new_stream(self) -> deque[Event]:
        return deque(maxlen=self._history_size)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryAdapter:
        query = QueryOptions(
            urlsplit(url).query, adapter="memory", known={"history", "dedupe", "buffer"}
        )
        options.setdefault("history", query.integer("history", 1000))
        options.setdefault("dedupe", query.integer("dedupe", 100_000))
        options.setdefault("buffer", query.integer("buffer", 1000))
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
            self._streams[event.channel].append(event)
            for subscription in list(self._subscriptions[event.channel]):
                if not subscription.offer(event):
                    self._subscriptions[event.channel].discard(subscription)
        return PublishResult(published=len(events) - len(duplicates), duplicates=tuple(duplicates))

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
        events = list(self._streams.get(channel, ()))
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
        return Occupancy(
            channel, subscribers=len(self._subscriptions.get(channel, ())), members=members
        )
