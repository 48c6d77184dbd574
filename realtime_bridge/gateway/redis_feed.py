"""``RedisFeed``: the gateway's channels read from the Redis adapter's streams and pub/sub.

Connections are made lazily, on first use, and never retry by themselves: a
silent retry on the pub/sub link could hide events published meanwhile (see
``hub.py``).
"""

from __future__ import annotations

import contextlib
import re

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..adapters.redis import RedisAdapter, _mapped_errors, pooled_client
from .hub import Hub
from .settings import RedisLocation
from .streams import StreamReader

__all__ = ["RedisFeed"]


def _client(location: RedisLocation) -> aioredis.Redis:
    """The pooled client for reads and presence: a reconnection storm queues for a connection.

    2,000 browsers resuming at once each read their channels' streams: with
    redis-py's default pool, the reads past its cap would fail on a healthy
    Redis (``tests/test_gateway_storm.py``).
    """
    return pooled_client(
        location.base_url,
        timeout=location.timeout,
        max_connections=location.max_connections,
        health_check_interval=30,
    )


def _pubsub_client(location: RedisLocation) -> aioredis.Redis:
    """The hub's connection, which never retries by itself (a retry could hide a gap).

    It is named ``rb-gateway:<prefix>`` (``CLIENT LIST`` shows which connections
    are gateways'); its reads wait as long as the hub says.
    """
    name = re.sub(r"[^A-Za-z0-9_.:-]", "_", location.prefix)
    return aioredis.Redis.from_url(
        location.base_url,
        socket_connect_timeout=location.timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=f"rb-gateway:{name}",
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
            lambda: _pubsub_client(location),
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
