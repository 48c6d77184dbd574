"""``Gateway``: what one gateway process shares among its connections.

It holds one pooled Redis client for reads and presence, one pub/sub link (the
hub), the presence keeper, and the open sessions, so that a shutdown can end
them all. It is built from ``GatewaySettings`` without any I/O, so a bad
configuration fails before the server starts, and a good one connects on
first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from ..errors import RealtimeBridgeError
from .feed import Feed
from .presence import PresenceKeeper
from .session import Session
from .settings import GatewaySettings
from .tokens import Grant, verify_token

__all__ = ["Gateway"]


def _redis_feed(settings: GatewaySettings) -> Feed:
    from .redis_feed import RedisFeed  # only the Redis feed needs the redis package

    return RedisFeed(settings.location(), heartbeat=settings.heartbeat)


class Gateway:
    """One gateway process: its feed (reader, hub, presence), and its open sessions.

    Without ``feed`` it reads the Redis adapter named by ``settings.redis_url``
    (the ``gateway`` extra). ``feed=MemoryFeed(adapter)`` serves a memory
    adapter of this process instead; the feed then belongs to the caller.
    """

    def __init__(self, settings: GatewaySettings, *, feed: Feed | None = None) -> None:
        self.settings = settings
        self._owns_feed = feed is None
        self.feed: Feed = feed if feed is not None else _redis_feed(settings)
        self._secret = settings.token_secret(self.feed.secret)
        self.reader = self.feed.reader
        self.hub = self.feed.hub
        self.presence = PresenceKeeper(self.feed.adapter, ttl=settings.presence_ttl)
        self.sessions: set[Session[Any]] = set()
        self._counters: Counter[str] = Counter()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def verify(self, token: str) -> Grant:
        """The grant of a client's token; ``TokenRejected`` if it is no good."""
        return verify_token(token, self._secret, now=time.time())

    def open_session(self, grant: Grant, *, transport: str) -> Session[Any]:
        session: Session[Any] = Session(self, grant, transport=transport)
        if self._closed:
            session.inbox.close("shutdown")
        self.sessions.add(session)
        self._idle.clear()
        self.count(f"{transport}_connections")
        return session

    async def close_session(self, session: Session[Any]) -> None:
        try:
            await session.close()
        finally:
            self.sessions.discard(session)
            if not self.sessions:
                self._idle.set()

    def count(self, name: str) -> None:
        """Add one to a counter shown by ``/healthz``."""
        self._counters[name] += 1

    def close_sessions(self, reason: str = "shutdown") -> None:
        """Ask every open connection to end now (SSE streams end, WebSockets close 1012).

        Called when the server begins shutting down, before it waits for
        connections to finish: without it, a long-lived stream would hold the
        shutdown until the server's grace period ran out.
        """
        self._closed = True
        for session in list(self.sessions):
            session.inbox.close(reason)

    async def wait_closed(self, within: float) -> bool:
        """Wait up to ``within`` seconds for every session to end; False if some did not."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def ping(self) -> None:
        """Reach the feed's store once (``VendorUnavailable`` if it cannot be reached)."""
        await self.feed.ping()

    def stats(self) -> dict[str, Any]:
        """What ``/healthz`` shows: open connections, channels, members, and counters."""
        open_now = Counter(session.transport for session in self.sessions)
        return {
            "connections": {"sse": open_now["sse"], "ws": open_now["ws"]},
            "channels": self.hub.channels,
            "members": self.presence.members,
            "redis_lost": self.hub.lost,
            "totals": dict(sorted(self._counters.items())),
        }

    async def aclose(self) -> None:
        """End every session, leave every member, and close the feed if this gateway made it."""
        self.close_sessions()
        await self.hub.aclose()
        await self.presence.aclose()
        if self._owns_feed:
            with contextlib.suppress(RealtimeBridgeError):
                await self.feed.aclose()
