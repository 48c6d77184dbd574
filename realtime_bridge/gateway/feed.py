"""Where a gateway gets its channels from: a ``Feed`` of history, live events and presence.

The gateway's sessions need four things from whatever stores the channels:

- a **reader** that pages a channel's history after a position, or says the
  position is older than what is kept (``Page.gap``);
- a **hub** that hands each live event to the inboxes of one process, and is
  listening by the time ``subscribe`` returns (so nothing falls between the
  live events and the history read after them);
- an **adapter** whose presence keys ``bridge.presence()`` reads;
- ``ping`` for the health check, and the token secret if the URL carries one.

``RedisFeed`` (``redis_feed.py``) is the production feed: several gateway
processes share one Redis. ``MemoryFeed`` (``memory_feed.py``) serves a
``MemoryAdapter`` to browsers from the same process, for the embedded demo
and one-process apps.
"""

from __future__ import annotations

from typing import Any, Protocol

from .entries import Page
from .inbox import Inbox
from .presence import PresenceStore

__all__ = ["ChannelHub", "ChannelReader", "Feed"]


class ChannelReader(Protocol):
    async def after(self, channel: str, cursor: str | None, limit: int) -> Page:
        """Up to ``limit`` entries after ``cursor`` (with none: no entries, the newest position)."""
        ...

    async def latest(self, channel: str, limit: int) -> Page:
        """The newest ``limit`` entries, oldest first."""
        ...


class ChannelHub(Protocol):
    @property
    def channels(self) -> int:
        """Channels this process listens to."""
        ...

    #: Times the live link was lost (each time, every inbox was closed).
    lost: int

    async def subscribe(self, channel: str, inbox: Inbox[Any]) -> None: ...

    def unsubscribe(self, channel: str, inbox: Inbox[Any]) -> None: ...

    async def aclose(self) -> None:
        """Close every inbox (``shutdown``) and stop listening."""
        ...


class Feed(Protocol):
    """What one gateway process reads its channels through."""

    @property
    def label(self) -> str:
        """For messages and logs: never holds a password."""
        ...

    @property
    def secret(self) -> str | None:
        """The token secret named by the feed's URL (``?gateway_secret=``), if any."""
        ...

    @property
    def reader(self) -> ChannelReader: ...

    @property
    def hub(self) -> ChannelHub: ...

    @property
    def adapter(self) -> PresenceStore:
        """Presence is entered and left through the adapter's own keys."""
        ...

    async def ping(self) -> None:
        """Reach the store once (``VendorUnavailable`` if it cannot be reached)."""
        ...

    async def aclose(self) -> None:
        """Close what the feed opened (the hub's inboxes are closed by ``hub.aclose``)."""
        ...
