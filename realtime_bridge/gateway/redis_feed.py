"""``RedisFeed``: the gateway's channels read from the Redis adapter's streams and pub/sub.

Connections are made lazily, on first use, and never retry by themselves: a
silent retry on the pub/sub link could hide events published meanwhile (see
``hub.py``).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..adapters.redis import RedisAdapter, _mapped_errors
from .hub import Hub
from .settings import RedisLocation
from .streams import StreamReader

__all__ = ["RedisFeed"]


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


class RedisFeed:
    """One pooled client for reads and presence, and the hub's pub/sub link."""

    def __init__(self, location: RedisLocation, *, heartbeat: float) -> None:
        self.label = location.label
        self.secret = location.secret
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
            heartbeat=heartbeat,
            timeout=location.timeout,
        )
        self.adapter = RedisAdapter(self._client, label=location.label, prefix=location.prefix)

    async def ping(self) -> None:
        with _mapped_errors(self.label):
            await self._client.ping()

    async def aclose(self) -> None:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await self._client.aclose()
