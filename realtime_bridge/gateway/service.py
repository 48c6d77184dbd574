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
import re
import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..adapters.redis import RedisAdapter, _mapped_errors
from .hub import Hub
from .presence import PresenceKeeper
from .session import Session
from .settings import GatewaySettings, RedisLocation
from .streams import StreamReader
from .tokens import Grant, verify_token

__all__ = ["Gateway"]


def _client(location: RedisLocation, *, pubsub: bool = False) -> aioredis.Redis:
    """A lazily connecting client that never retries by itself (a retry could hide a gap).

    The pub/sub connection is named ``rb-gateway:<prefix>`` (``CLIENT LIST`` shows
    which connections are gateways'); its reads wait as long as the hub says.
    """
    options: dict[str, Any] = {"health_check_interval": 30, "socket_timeout": location.timeout}
    if pubsub:
        name = re.sub(r"[^A-Za-z0-9_.:-]", "_", location.prefix)
        options = {"health_check_interval": 0, "client_name": f"rb-gateway:{name}"}
    return aioredis.Redis.from_url(
        location.base_url,
        socket_connect_timeout=location.timeout,
        retry=Retry(NoBackoff(), 0),
        **options,
    )


class Gateway:
    """One gateway process: Redis clients, the hub, presence, and its open sessions."""

    def __init__(self, settings: GatewaySettings) -> None:
        location = settings.location()
        self.settings = settings
        self.location = location
        self._secret = settings.token_secret(location)
        self._client = _client(location)
        self.reader = StreamReader(
            self._client,
            prefix=location.prefix,
            history_ttl=location.history_ttl,
            label=location.label,
        )
        self.hub = Hub(
            lambda: _client(location, pubsub=True),
            prefix=location.prefix,
            label=location.label,
            heartbeat=settings.heartbeat,
            timeout=location.timeout,
        )
        adapter = RedisAdapter(self._client, label=location.label, prefix=location.prefix)
        self.presence = PresenceKeeper(adapter, ttl=settings.presence_ttl)
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
        """Reach Redis once (``VendorUnavailable`` if it cannot be reached)."""
        with _mapped_errors(self.location.label):
            await self._client.ping()

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
        """End every session, leave every member, and close the Redis connections."""
        self.close_sessions()
        await self.hub.aclose()
        await self.presence.aclose()
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await self._client.aclose()
