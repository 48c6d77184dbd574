"""``MemoryFeed``: the gateway serves a ``MemoryAdapter``'s channels from the same process.

The embedded demo, and apps that run in one process, publish to ``memory://``
and still want browsers to receive. The memory adapter keeps Redis-style
positions for every stored event (``1718000000000-0``), so the gateway's
sessions resume, merge and reset exactly as they do on Redis. The hub
listens to the adapter directly: a listener runs inside ``publish``, so an
event reaches every inbox before ``publish`` returns, and ``subscribe`` is
live at once.

Nothing here survives the process. A client that comes back with a position
from an earlier process gets ``reset`` (re-fetch), never a silent gap. A
gateway *server* can stop and start again on the same feed, though: the
adapter keeps the history, so its clients resume without loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..adapters.base import Adapter
from ..adapters.memory import MemoryAdapter, Positioned
from ..errors import ConfigurationError
from ..events import Event
from .cursor import parse_stream_id
from .entries import Entry, Page
from .inbox import Inbox

__all__ = ["MemoryFeed"]


def _entry(channel: str, stored: Positioned) -> Entry:
    return Entry(channel, stored.position, stored.event.encode())


class MemoryReader:
    """Pages of a memory adapter's channel after a position."""

    def __init__(self, adapter: MemoryAdapter) -> None:
        self._adapter = adapter

    async def after(self, channel: str, cursor: str | None, limit: int) -> Page:
        if cursor is not None:
            parse_stream_id(cursor)
        stored, position, gap = self._adapter.read_after(channel, cursor, limit + 1)
        if gap:
            return Page((), position, gap=True)
        entries = tuple(_entry(channel, item) for item in stored[:limit])
        last = entries[-1].id if entries else position
        return Page(entries, last, has_more=len(stored) > limit)

    async def latest(self, channel: str, limit: int) -> Page:
        stored, newest = self._adapter.read_latest(channel, limit + 1)
        entries = tuple(_entry(channel, item) for item in stored[-limit:] if limit)
        return Page(entries, newest, has_more=len(stored) > limit)


class MemoryHub:
    """One listener per channel on the adapter, shared by this process's inboxes."""

    def __init__(self, adapter: MemoryAdapter) -> None:
        self._adapter = adapter
        self._local: dict[str, set[Inbox[Any]]] = {}
        self._stops: dict[str, Callable[[], None]] = {}
        self.lost = 0  # a memory feed has no link to lose

    @property
    def channels(self) -> int:
        return len(self._local)

    async def subscribe(self, channel: str, inbox: Inbox[Any]) -> None:
        local = self._local.get(channel)
        if local is None:
            local = self._local[channel] = set()
            self._stops[channel] = self._adapter.listen(channel, self._deliverer(channel))
        local.add(inbox)

    def unsubscribe(self, channel: str, inbox: Inbox[Any]) -> None:
        local = self._local.get(channel)
        if local is None or inbox not in local:
            return
        local.discard(inbox)
        if not local:
            del self._local[channel]
            self._stops.pop(channel)()

    def _deliverer(self, channel: str) -> Callable[[str, Event], None]:
        def deliver(position: str, event: Event) -> None:
            entry = Entry(channel, position, event.encode())
            for inbox in tuple(self._local.get(channel, ())):
                inbox.offer(entry)

        return deliver

    async def aclose(self) -> None:
        for channel, local in list(self._local.items()):
            for inbox in local:
                inbox.close("shutdown")
            self._stops.pop(channel)()
        self._local.clear()


class MemoryFeed:
    """A ``MemoryAdapter`` as a gateway feed: ``create_app(settings, feed=MemoryFeed(adapter))``."""

    def __init__(self, adapter: Adapter) -> None:
        if not isinstance(adapter, MemoryAdapter):
            raise ConfigurationError(
                f"a MemoryFeed serves a memory:// adapter of this process, not {adapter.name}; "
                "for Redis, give the gateway the Redis URL instead"
            )
        self.label = adapter.name
        self.secret = adapter.gateway_secret
        self.adapter = adapter
        self.reader = MemoryReader(adapter)
        self.hub = MemoryHub(adapter)

    async def ping(self) -> None:
        """Always reachable: it is this process."""

    async def aclose(self) -> None:
        """Nothing to close: the adapter belongs to whoever made it."""
