"""The self-hosted adapter: Redis streams for history, pub/sub for live fan-out.

Each batch runs as one Lua script per Redis hash slot, so every event in it is
deduplicated (its id kept for ``dedupe_ttl`` seconds), appended to its
channel's capped stream and PUBLISHed, atomically: a crash never leaves an
event in history but unannounced, or announced twice. Every key of one channel
shares the hash tag ``{channel}``, so the adapter runs unchanged on Redis
Cluster (``?cluster=true``), where a batch is split by slot.

URL: ``redis://[:PASSWORD@]HOST[:PORT][/DB][?option=value...]``, ``rediss://``
for TLS. Options: ``history`` (events kept per channel, default 1000),
``exact`` (trim exactly instead of approximately), ``dedupe_ttl`` (seconds,
default 3600; also how long an event id works as a history cursor),
``history_ttl`` (seconds a quiet channel's history lives, default 86400),
``prefix`` (default ``rb``), ``cluster`` (Redis Cluster: database 0 only),
``timeout`` (seconds, default 5),
``max_payload`` (bytes of data, default 1 MiB),
``gateway_secret`` (the secret that signs tokens for the self-hosted gateway,
at least 32 bytes; without it the adapter does not offer client auth),
``gateway_token_ttl`` (seconds such a token works, default 3600).

Browsers do not talk to Redis: they connect to the gateway
(``realtime-bridge gateway``, ``realtime_bridge.gateway``), which reads these
same keys. ``authorize`` gives the token the gateway asks them for.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult, urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from ..errors import (
    AuthenticationFailed,
    ConfigurationError,
    CursorNotFound,
    PublishRejected,
    VendorUnavailable,
)
from ..events import Event
from ..gateway import tokens
from ..settings import redact_url
from ._gateway_auth import GatewayClientAuth
from ._query import QueryOptions
from ._redis_options import REDIS_OPTIONS
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

__all__ = ["RedisAdapter", "RedisKeys"]

_OPTIONS = REDIS_OPTIONS


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Where one channel lives in Redis; every key shares the hash tag ``{channel}``."""

    prefix: str
    channel: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{{self.channel}}}"

    @property
    def stream(self) -> str:
        return f"{self.tag}:stream"

    @property
    def topic(self) -> str:
        """The pub/sub channel live events are published on."""
        return self.tag

    @property
    def presence(self) -> str:
        return f"{self.tag}:presence"

    @property
    def members(self) -> str:
        return f"{self.tag}:members"

    def dedupe(self, event_id: str) -> str:
        return f"{self.tag}:id:{event_id}"


@contextlib.contextmanager
def _mapped_errors(adapter: str) -> Iterator[None]:
    """Translate redis-py's errors into the library's, once, here."""
    try:
        yield
    except (
        redis_errors.AuthenticationError,
        redis_errors.AuthenticationWrongNumberOfArgsError,
    ) as exc:
        raise AuthenticationFailed(f"Redis refused the password: {exc}", adapter=adapter) from exc
    except redis_errors.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise AuthenticationFailed(f"Redis refused access: {exc}", adapter=adapter) from exc
        if str(exc).startswith(("OOM", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")):
            raise VendorUnavailable(
                f"Redis is not accepting writes: {exc}", adapter=adapter
            ) from exc
        raise PublishRejected(f"Redis refused the command: {exc}", adapter=adapter) from exc
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise VendorUnavailable(f"cannot reach Redis: {exc}", adapter=adapter) from exc
    except redis_errors.RedisError as exc:
        raise VendorUnavailable(f"Redis error: {exc}", adapter=adapter) from exc


DEFAULT_MAX_CONNECTIONS = 50


def pooled_client(
    base_url: str, *, timeout: float, max_connections: int, **options: Any
) -> aioredis.Redis:
    """A lazily connecting client whose pool makes callers *wait* for a free connection.

    redis-py's default pool refuses a command ("Too many connections") once its
    connections are all busy, and recent releases cap it at 100: a burst of
    2,000 browsers catching up at once, or of concurrent publishes, would fail
    on a healthy Redis. Here a burst queues instead, with at most
    ``max_connections`` to Redis; each command still gives up after ``timeout``,
    so the queue keeps moving. Retries are the Bridge's job: redis-py makes none.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        base_url,
        max_connections=max_connections,
        timeout=None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **options,
    )
    return aioredis.Redis.from_pool(pool)


def _client(
    base_url: str, *, cluster: bool, timeout: float, max_connections: int
) -> aioredis.Redis | aioredis.RedisCluster:
    """A lazily connecting client; retries are the Bridge's job, so redis-py makes none."""
    if cluster:  # a pool per node, unbounded: it never refuses a command
        return aioredis.RedisCluster.from_url(
            base_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
    return pooled_client(
        base_url, timeout=timeout, max_connections=max_connections, health_check_interval=30
    )


class RedisAdapter(GatewayClientAuth, Adapter):
    """Publish, history, presence and occupancy on one Redis (or a Redis Cluster)."""

    scheme = "redis"
    #: Client auth only with a ``gateway_secret``: an instance without one narrows its own
    #: ``capabilities``, so the Bridge refuses ``authorize`` before any work.
    capabilities: ClassVar[frozenset[Capability]] = SELF_HOSTED_CAPABILITIES | {
        Capability.CLIENT_AUTH
    }

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        label: str = "redis://",
        history: int = 1000,
        exact: bool = False,
        dedupe_ttl: int = 3600,
        history_ttl: int = 86400,
        prefix: str = "rb",
        max_payload: int = 1024 * 1024,
        max_batch: int = 500,
        gateway_secret: str | None = None,
        gateway_token_ttl: int = tokens.DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = Limits(max_payload_bytes=max_payload, max_events_per_batch=max_batch)
        self._init_client_auth(
            gateway_secret, gateway_token_ttl, clock, without=SELF_HOSTED_CAPABILITIES
        )
        self._clock = clock
        self._client = client
        self._label = label
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._prefix = prefix
        self._publish_args: list[Any] = [history, "=" if exact else "~", dedupe_ttl, history_ttl]
        self._publish = client.register_script(_script("publish"))
        self._history = client.register_script(_script("history"))
        self._enter = client.register_script(_script("presence_enter"))
        self._list = client.register_script(_script("presence_list"))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``redis://`` / ``rediss://``; connects lazily, on first use."""
        parts = urlsplit(url)
        query = QueryOptions(parts.query, adapter="redis", known=_OPTIONS)
        base = SplitResult(parts.scheme, parts.netloc, parts.path, "", "").geturl()
        cluster = query.flag("cluster", False)
        if not re.fullmatch(r"/?|/\d+", parts.path):
            raise ConfigurationError(
                f"bad Redis URL {redact_url(url)!r}: the path must be a database number "
                f"such as /0, not {parts.path!r}"
            )
        if cluster and parts.path not in ("", "/", "/0"):
            raise ConfigurationError(
                f"bad Redis URL {redact_url(url)!r}: Redis Cluster has only database 0, "
                f"so the path must be empty or /0, not {parts.path!r}"
            )
        try:
            client = _client(
                base,
                cluster=cluster,
                timeout=query.number("timeout", 5.0),
                max_connections=query.integer("max_connections", DEFAULT_MAX_CONNECTIONS),
            )
        except (ValueError, redis_errors.RedisClusterException) as exc:
            raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: {exc}") from exc
        options.setdefault("label", redact_url(base))
        options.setdefault("history", query.integer("history", 1000))
        options.setdefault("exact", query.flag("exact", False))
        options.setdefault("dedupe_ttl", query.integer("dedupe_ttl", 3600))
        options.setdefault("history_ttl", query.integer("history_ttl", 86400))
        options.setdefault("prefix", query.text("prefix", "rb"))
        options.setdefault("max_payload", query.integer("max_payload", 1024 * 1024))
        options.setdefault("gateway_secret", query.text("gateway_secret", "") or None)
        options.setdefault(
            "gateway_token_ttl", query.integer("gateway_token_ttl", tokens.DEFAULT_TTL)
        )
        return cls(client, **options)

    @property
    def name(self) -> str:
        return self._label

    def keys(self, channel: str) -> RedisKeys:
        """The Redis keys of ``channel``, for tools and tests that look inside."""
        return RedisKeys(self._prefix, channel)

    # -- publish ----------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        duplicates: list[str] = []
        for group in self._by_slot(events):
            keys: list[str] = []
            payloads: list[bytes] = []
            for event in group:
                tag = f"{self._prefix}:{{{event.channel}}}"  # RedisKeys, inlined: the hot path
                keys += (f"{tag}:stream", f"{tag}:id:{event.id}")
                payloads.append(event.encode())
            with _mapped_errors(self.name):
                dropped = await self._publish(keys=keys, args=self._publish_args + payloads)
            duplicates += [group[position - 1].id for position in dropped]
        return PublishResult(published=len(events) - len(duplicates), duplicates=tuple(duplicates))

    def _by_slot(self, events: Sequence[Event]) -> list[Sequence[Event]]:
        """One group on a single Redis; per hash slot on a cluster, order kept within each."""
        if not self._cluster:
            return [events]
        groups: defaultdict[int, list[Event]] = defaultdict(list)
        for event in events:
            groups[key_slot(self.keys(event.channel).tag.encode())].append(event)
        return list(groups.values())

    # -- history ----------------------------------------------------------

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        where = self.keys(channel)
        cursor = after if after is not None else before
        mode = "after" if after is not None else "before" if before is not None else "latest"
        keys = [where.stream, where.dedupe(cursor or "")]
        with _mapped_errors(self.name):
            entries = await self._history(keys=keys, args=[mode, limit + 1])
        if entries is None:
            raise CursorNotFound(
                f"event {cursor} is not in the kept history of {channel} (older than the "
                "dedupe window or trimmed); re-fetch the state instead",
                adapter=self.name,
            )
        has_more = len(entries) > limit
        events = [Event.decode(fields[1]) for _, fields in entries[:limit]]
        if mode != "after":
            events.reverse()
        return HistoryPage(tuple(events), has_more=has_more)

    # -- presence and occupancy ---------------------------------------------

    async def enter_presence(self, channel: str, member: Member, *, ttl: float = 60.0) -> None:
        """Add or refresh ``member``; it leaves by itself ``ttl`` seconds after the last refresh."""
        where = self.keys(channel)
        info = json.dumps(member.info, separators=(",", ":"))
        with _mapped_errors(self.name):
            await self._enter(
                keys=[where.presence, where.members], args=[member.id, info, int(ttl * 1000)]
            )

    async def leave_presence(self, channel: str, member_id: str) -> None:
        where = self.keys(channel)
        with _mapped_errors(self.name):
            async with self._client.pipeline(transaction=not self._cluster) as pipe:
                pipe.zrem(where.presence, member_id)
                pipe.hdel(where.members, member_id)
                await pipe.execute()

    async def presence(self, channel: str) -> list[Member]:
        where = self.keys(channel)
        with _mapped_errors(self.name):
            flat = await self._list(keys=[where.presence, where.members])
        members = [
            Member(id=flat[i].decode(), info=json.loads(flat[i + 1]))
            for i in range(0, len(flat), 2)
        ]
        return sorted(members, key=lambda member: member.id)

    async def occupancy(self, channel: str) -> Occupancy:
        members = await self.presence(channel)
        topic = self.keys(channel).topic
        # On a cluster each node counts only its own subscribers: ask every node (summed).
        nodes = {"target_nodes": aioredis.RedisCluster.ALL_NODES} if self._cluster else {}
        with _mapped_errors(self.name):
            counts = await self._client.pubsub_numsub(topic, **nodes)
        subscribers = sum(int(count) for _, count in counts) if counts else 0
        return Occupancy(channel, subscribers=subscribers, members=len(members))

    # -- lifecycle ----------------------------------------------------------

    async def ping(self) -> None:
        with _mapped_errors(self.name):
            await self._client.ping()

    async def aclose(self) -> None:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await self._client.aclose()
