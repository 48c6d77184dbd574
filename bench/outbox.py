"""The transactional outbox beside procrastinate and pgqueuer: drain, latency, enqueue cost.

Why: issue 3 sets three bars for the outbox, each against what a Python team
would otherwise build, one job per event on a PostgreSQL job queue whose
worker PUBLISHes the event to Redis with redis-py:

- drain a 200,000-event backlog, PostgreSQL to the Redis adapter, one relay
  process: >= 20,000 events/s and >= 10x the peer;
- commit-to-publish latency at a steady 1,000 events/s: p50 <= 5 ms, p99 <= 50 ms;
- a transaction that writes one domain row and enqueues one event costs
  <= 1.5x the same transaction without the event.

How, so the figures compare like with like:

- every contender gets its own fresh database on the same PostgreSQL, the same
  events (the same ``data``, spread over the same 100 channels) and the same
  Redis; the peers' workers PUBLISH each event's envelope to the topic our
  adapter uses. Our relay does more per event (per-channel ``seq``, dedupe by
  id, a capped history stream, marking the row sent and keeping it for
  history); the peers only PUBLISH;
- a backlog is VACUUM ANALYZEd and CHECKPOINTed before its drain is timed;
  our backlog is built once and cloned for each batch size, so every relay
  run starts from the same table;
- drains run interleaved, ours and the peers' alternating; enqueue variants
  run in rounds, order rotated each round; latency runs one contender at a
  time (a worker process each, the producer and the subscriber in this one),
  and a peer whose drain ran slower than the offered rate is not asked to
  keep up with it;
- every run checks that every event arrived, so no figure is for less work.

Run ``bench/run outbox`` (writes ``bench/sections/outbox.md``, then
BENCHMARKS.md), or ``python -m bench.outbox --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import logging
import signal
import statistics
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import procrastinate
import psycopg
import redis.asyncio as aioredis

from bench import compose
from bench.harness import DATA
from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.redis import RedisKeys
from realtime_bridge.outbox import Outbox

__all__ = [
    "FULL",
    "QUICK",
    "Drain",
    "Enqueue",
    "Latency",
    "Report",
    "Settings",
    "main",
    "measure",
    "render",
]

NAME = "outbox"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
CHANNELS = 100
EVENT_TYPE = "order.updated"
#: Events per enqueue call (ours) or per bulk defer (peers) while a backlog is built.
FILL_CHUNK = 5000
QUEUE = "rbbench"
TASK = "rbbench_publish"
#: The peer must drain this much faster than the offered rate to be asked to keep up with it.
HEADROOM = 1.2
OURS, PROCRASTINATE, PGQUEUER = "ours", "procrastinate", "pgqueuer"
ORDER_SQL = "INSERT INTO rbbench_orders (customer_id, status, total_cents) VALUES ($1, $2, $3)"
ORDERS_TABLE = """
CREATE TABLE rbbench_orders (
    id          bigserial   PRIMARY KEY,
    customer_id bigint      NOT NULL,
    status      text        NOT NULL,
    total_cents integer     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Settings:
    """How much work each part does: ``FULL`` for BENCHMARKS.md, ``QUICK`` for the smoke test."""

    drain_events: int
    batch_sizes: tuple[int, ...]
    procrastinate_jobs: int
    procrastinate_concurrency: int
    pgqueuer_jobs: int
    pgqueuer_batch: int
    rate: float
    latency_seconds: float
    warmup_seconds: float
    producers: int
    relay_batch: int
    transactions: int
    rounds: int


FULL = Settings(
    drain_events=200_000,
    batch_sizes=(500, 1000, 2000),
    procrastinate_jobs=2_000,
    procrastinate_concurrency=10,
    pgqueuer_jobs=50_000,
    pgqueuer_batch=100,
    rate=1000.0,
    latency_seconds=20.0,
    warmup_seconds=2.0,
    producers=4,
    relay_batch=500,
    transactions=200,
    rounds=10,
)
QUICK = Settings(
    drain_events=600,
    batch_sizes=(100, 300),
    procrastinate_jobs=30,
    procrastinate_concurrency=10,
    pgqueuer_jobs=200,
    pgqueuer_batch=100,
    rate=200.0,
    latency_seconds=1.0,
    warmup_seconds=0.3,
    producers=2,
    relay_batch=100,
    transactions=10,
    rounds=1,
)


def pgqueuer_installed() -> bool:
    """pgqueuer is an optional peer: the benchmark says so and goes on when it is missing."""
    return importlib.util.find_spec("pgqueuer") is not None


# -- services -----------------------------------------------------------------------------


class Workspace:
    """One run's databases (beside the admin DSN's) and Redis prefixes, all named after the run.

    Every database is dropped at the end, every prefix's keys deleted after its part,
    and the names let a test check that nothing was left behind.
    """

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.run = uuid.uuid4().hex[:8]
        self._made: list[str] = []

    def prefix(self) -> str:
        """A new Redis key prefix of this run: its keys can be found and deleted."""
        return f"rbbench-{self.run}-{uuid.uuid4().hex[:8]}"

    def dsn(self, name: str) -> str:
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{name}"))

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self, tag: str, *, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); returns its name."""
        name = f"rbbench_{self.run}_{tag}"
        clause = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        await self.admin(f"CREATE DATABASE {name}{clause}")
        self._made.append(name)
        return name

    async def drop(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._made.remove(name)

    async def drop_all(self, *, patience: float = 60.0) -> None:
        """Drop what is left, waiting out a PostgreSQL restart (other tests may cause one)."""
        deadline = time.monotonic() + patience
        while self._made:
            try:
                await self.drop(self._made[0])
            except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def database(self, tag: str, *, template: str | None = None) -> AsyncIterator[str]:
        """The DSN of a database that lives for the ``async with`` block."""
        name = await self.create(tag, template=template)
        try:
            yield self.dsn(name)
        finally:
            await self.drop(name)

    async def settle(self, dsn: str) -> None:
        """VACUUM ANALYZE and CHECKPOINT, so every timed drain starts from the same state."""
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("VACUUM ANALYZE")
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CHECKPOINT")
        finally:
            await conn.close()


def bridge_url(redis_url: str, prefix: str) -> str:
    """Our Redis adapter under ``prefix``; short TTLs, so a crashed run's keys still expire."""
    join = "&" if "?" in redis_url else "?"
    return f"{redis_url}{join}prefix={prefix}&dedupe_ttl=900&history_ttl=900"


async def delete_keys(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


# -- events and the peers' jobs -------------------------------------------------------------


def peer_redis(redis_url: str) -> aioredis.Redis:
    """The peers' redis-py client: jobs run concurrently, so they wait for a free connection
    (redis-py's default pool raises past 100 connections, failing pgqueuer's jobs)."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=100)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def make_event(index: int) -> Event:
    """Event ``index`` of a run: the publish benchmark's payload, spread over ``CHANNELS``."""
    return Event(channel=f"orders.{index % CHANNELS}", type=EVENT_TYPE, data=DATA)


def topic_of(prefix: str, channel: str) -> str:
    """The pub/sub topic our adapter publishes ``channel`` on; the peers publish there too."""
    return RedisKeys(prefix, channel).topic


def peer_message(event: Event) -> str:
    """What a peer's job carries: the envelope our adapter would publish."""
    return event.encode().decode()


def pgqueuer_payload(prefix: str, event: Event) -> bytes:
    """pgqueuer's job payload is bytes: the topic, a newline, the envelope."""
    return f"{topic_of(prefix, event.channel)}\n{peer_message(event)}".encode()


def chunks(items: Sequence[Any], size: int = FILL_CHUNK) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass(slots=True)
class Counter:
    """Events a peer's worker published: checked against the jobs it was given."""

    published: int = 0


def expect(done: int, wanted: int, who: str) -> None:
    """Fail loudly if a contender did less than the work: its figure would be wrong."""
    if done != wanted:
        raise RuntimeError(f"{who} handled {done} of {wanted} events")


async def clock(work: Callable[[], Awaitable[Any]]) -> float:
    """Seconds ``work()`` takes; collects first so earlier garbage is not billed to it."""
    gc.collect()
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


# -- the peers' wiring ------------------------------------------------------------------------


def procrastinate_app(dsn: str, redis: aioredis.Redis, counter: Counter) -> tuple[Any, Any]:
    """A procrastinate app whose one task PUBLISHes a message with redis-py."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    async def publish(topic: str, message: str) -> None:
        await redis.publish(topic, message)
        counter.published += 1

    task = app.task(name=TASK, queue=QUEUE)(publish)
    return app, task


def pgqueuer_manager(conn: asyncpg.Connection[Any], redis: aioredis.Redis, counter: Counter) -> Any:
    """A pgqueuer queue manager whose one entrypoint PUBLISHes the job's payload."""
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    async def publish(job: Job) -> None:
        topic, _, message = (job.payload or b"").partition(b"\n")
        await redis.publish(topic, message)
        counter.published += 1

    manager.entrypoint(TASK, accepts_context=False)(publish)
    return manager


def pgqueuer_queries(conn: asyncpg.Connection[Any]) -> Any:
    """pgqueuer's enqueue side on ``conn``; imported late, since pgqueuer is optional."""
    from pgqueuer import AsyncpgDriver, Queries

    return Queries(AsyncpgDriver(conn))


# -- 1. drain ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drain:
    """One timed drain of a backlog, and (ours) where its time went."""

    key: str
    name: str
    setting: str
    events: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class PhaseClock:
    """Wall time spent inside chosen coroutine methods: where one relay drain's time goes."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap(self, owner: object, method: str, phase: str) -> None:
        """Replace ``owner.method`` (on the instance only) by a timed call of the original."""
        original = getattr(owner, method)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        setattr(owner, method, timed)


PHASES = (
    ("claim", "claim: `realtime_outbox_claim_v2` (select and number; writes nothing)"),
    ("build", "rows to `Event`s (`Event.from_stored`) and the relay loop"),
    ("bridge", "Bridge around the adapter: validate, meter, retry and breaker"),
    ("redis", "Redis adapter: EVALSHA round trips (dedupe, XADD, PUBLISH)"),
    ("mark", "mark sent: one `UPDATE ... FROM unnest(pks, seqs)`, then each channel's last seq"),
)


def phase_split(clock_seconds: dict[str, float], total: float) -> dict[str, float]:
    """Nested timers into disjoint phases that add up to the drain's wall time."""
    claim, mark = clock_seconds["claim"], clock_seconds["mark"]
    publish, redis = clock_seconds["publish"], clock_seconds["redis"]
    return {
        "claim": claim,
        "build": total - claim - mark - publish,
        "bridge": publish - redis,
        "redis": redis,
        "mark": mark,
    }


async def build_backlog(work: Workspace, redis_url: str, count: int) -> str:
    """Our backlog, built once through ``Outbox.enqueue``; each relay run drains a copy."""
    name = await work.create("ours_backlog")
    dsn = work.dsn(name)
    async with Outbox(dsn, bridge=Bridge.from_url(bridge_url(redis_url, work.prefix()))) as outbox:
        await outbox.migrate()
        conn = await asyncpg.connect(dsn)
        try:
            for start in range(0, count, FILL_CHUNK):
                events = [make_event(i) for i in range(start, min(count, start + FILL_CHUNK))]
                async with conn.transaction():
                    await outbox.enqueue(conn, *events)
        finally:
            await conn.close()
    await work.settle(dsn)
    return name


async def drain_ours(
    work: Workspace, redis_url: str, backlog: str, count: int, batch_size: int
) -> Drain:
    """One relay drains a copy of the backlog, PostgreSQL to the Redis adapter."""
    prefix = work.prefix()
    phases = PhaseClock()
    async with work.database(f"ours_{batch_size}", template=backlog) as dsn:
        await work.settle(dsn)
        bridge = Bridge.from_url(bridge_url(redis_url, prefix))
        try:
            async with Outbox(dsn, bridge=bridge) as outbox:
                relay = outbox.relay(batch_size=batch_size)
                phases.wrap(relay.database, "claim", "claim")
                phases.wrap(relay.database, "mark_sent", "mark")
                phases.wrap(bridge, "publish_many", "publish")
                phases.wrap(bridge.primary, "publish", "redis")
                done = 0

                async def drain() -> None:
                    nonlocal done
                    done = await relay.drain()

                seconds = await clock(drain)
                await relay.aclose()
        finally:
            await delete_keys(redis_url, prefix)
    expect(done, count, f"our relay (batch_size={batch_size})")
    return Drain(
        OURS,
        "**our relay**, `Relay.drain()`",
        f"batch_size={batch_size}",
        count,
        seconds,
        phase_split(phases.seconds, seconds),
    )


async def drain_procrastinate(
    work: Workspace, redis_url: str, count: int, concurrency: int
) -> Drain:
    """A procrastinate worker runs one job per event until the queue is empty."""
    prefix, counter = work.prefix(), Counter()
    redis = peer_redis(redis_url)
    try:
        async with work.database(PROCRASTINATE) as dsn:
            app, task = procrastinate_app(dsn, redis, counter)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                jobs = [
                    {"topic": topic_of(prefix, e.channel), "message": peer_message(e)}
                    for e in map(make_event, range(count))
                ]
                for chunk in chunks(jobs):
                    await task.batch_defer_async(*chunk)
                await work.settle(dsn)
                seconds = await clock(
                    lambda: app.run_worker_async(
                        queues=[QUEUE],
                        wait=False,
                        concurrency=concurrency,
                        install_signal_handlers=False,
                        listen_notify=False,
                    )
                )
    finally:
        await redis.aclose()
    expect(counter.published, count, "procrastinate")
    name = "procrastinate worker, one job per event"
    return Drain(PROCRASTINATE, name, f"concurrency={concurrency}", count, seconds)


async def drain_pgqueuer(work: Workspace, redis_url: str, count: int, batch: int) -> Drain:
    """A pgqueuer queue manager in drain mode runs one job per event until the queue is empty."""
    from pgqueuer.types import QueueExecutionMode

    prefix, counter = work.prefix(), Counter()
    redis = peer_redis(redis_url)
    try:
        async with work.database(PGQUEUER) as dsn:
            await fill_pgqueuer(dsn, prefix, count)
            await work.settle(dsn)
            conn = await asyncpg.connect(dsn)
            try:
                manager = pgqueuer_manager(conn, redis, counter)
                seconds = await clock(
                    lambda: manager.run(mode=QueueExecutionMode.drain, batch_size=batch)
                )
            finally:
                await conn.close()
    finally:
        await redis.aclose()
    expect(counter.published, count, "pgqueuer")
    name = "pgqueuer `QueueManager`, one job per event"
    return Drain(PGQUEUER, name, f"batch_size={batch}", count, seconds)


async def fill_pgqueuer(dsn: str, prefix: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = pgqueuer_queries(conn)
        await queries.install()
        payloads = [pgqueuer_payload(prefix, make_event(i)) for i in range(count)]
        for chunk in chunks(payloads):
            await queries.enqueue([TASK] * len(chunk), list(chunk), [0] * len(chunk))
    finally:
        await conn.close()


async def measure_drains(work: Workspace, redis_url: str, settings: Settings) -> list[Drain]:
    """Our relay at each batch size, the peers in between, so load hits everyone alike."""
    backlog = await build_backlog(work, redis_url, settings.drain_events)
    peers: list[Callable[[], Awaitable[Drain]]] = [
        lambda: drain_procrastinate(
            work, redis_url, settings.procrastinate_jobs, settings.procrastinate_concurrency
        )
    ]
    if pgqueuer_installed():
        peers.append(
            lambda: drain_pgqueuer(work, redis_url, settings.pgqueuer_jobs, settings.pgqueuer_batch)
        )
    drains = []
    try:
        for index, size in enumerate(settings.batch_sizes):
            drains.append(await drain_ours(work, redis_url, backlog, settings.drain_events, size))
            if index < len(peers):
                drains.append(await peers[index]())
        for peer in peers[len(settings.batch_sizes) :]:
            drains.append(await peer())
    finally:
        await work.drop(backlog)
    return drains


# -- 2. commit-to-publish latency ---------------------------------------------------------------


class Writer(ABC):
    """An application connection committing one event per transaction."""

    @abstractmethod
    async def write(self, event: Event) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class OursWriter(Writer):
    def __init__(self, conn: asyncpg.Connection[Any], outbox: Outbox) -> None:
        self.conn, self.outbox = conn, outbox

    async def write(self, event: Event) -> None:
        async with self.conn.transaction():
            await self.outbox.enqueue(self.conn, event)

    async def close(self) -> None:
        await self.conn.close()
        await self.outbox.aclose()


class ProcrastinateWriter(Writer):
    def __init__(self, conn: psycopg.AsyncConnection[Any], task: Any, prefix: str) -> None:
        self.conn, self.task, self.prefix = conn, task, prefix

    async def write(self, event: Event) -> None:
        async with self.conn.transaction():
            await self.task.configure(connection=self.conn).defer_async(
                topic=topic_of(self.prefix, event.channel), message=peer_message(event)
            )

    async def close(self) -> None:
        await self.conn.close()


class PgqueuerWriter(Writer):
    def __init__(self, conn: asyncpg.Connection[Any], queries: Any, prefix: str) -> None:
        self.conn, self.queries, self.prefix = conn, queries, prefix

    async def write(self, event: Event) -> None:
        async with self.conn.transaction():
            await self.queries.enqueue(TASK, pgqueuer_payload(self.prefix, event))

    async def close(self) -> None:
        await self.conn.close()


@dataclass(frozen=True, slots=True)
class Wiring:
    """Where a worker process finds its database and Redis, and how it is tuned."""

    dsn: str
    redis_url: str
    prefix: str
    batch: int
    concurrency: int


def ready() -> None:
    """Tell the benchmark process this worker listens: it starts producing then."""
    print("ready", flush=True)


def stop_on_sigterm(stop: Callable[[], None]) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)


class Contender(ABC):
    """One way of getting committed events to Redis, as the latency test drives it."""

    key: str
    name: str

    @abstractmethod
    async def install(self, dsn: str) -> None:
        """Create its tables in an empty database."""

    @abstractmethod
    async def writer(self, wiring: Wiring) -> Writer:
        """An application connection that commits one event per transaction."""

    @abstractmethod
    async def serve(self, wiring: Wiring) -> None:
        """The worker process: publish committed events until SIGTERM; call ``ready()``."""


class OursContender(Contender):
    key, name = OURS, "**our relay**, `Relay.run()` (LISTEN/NOTIFY)"

    async def install(self, dsn: str) -> None:
        async with Outbox(dsn) as outbox:
            await outbox.migrate()

    async def writer(self, wiring: Wiring) -> Writer:
        # The application's Bridge only validates here (limits); it never connects.
        bridge = Bridge.from_url(bridge_url(wiring.redis_url, wiring.prefix))
        outbox = Outbox(wiring.dsn, bridge=bridge)
        return OursWriter(await asyncpg.connect(wiring.dsn), outbox)

    async def serve(self, wiring: Wiring) -> None:
        bridge = Bridge.from_url(bridge_url(wiring.redis_url, wiring.prefix))
        async with Outbox(wiring.dsn, bridge=bridge) as outbox:
            relay = outbox.relay(batch_size=wiring.batch)
            await relay.database.rebalance()  # connected, listening, partitions held
            stop_on_sigterm(relay.stop)
            ready()
            try:
                await relay.run()
            finally:
                await relay.aclose()


class ProcrastinateContender(Contender):
    key, name = PROCRASTINATE, "procrastinate worker (LISTEN/NOTIFY)"

    async def install(self, dsn: str) -> None:
        app, _ = procrastinate_app(dsn, aioredis.Redis(), Counter())
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def writer(self, wiring: Wiring) -> Writer:
        _, task = procrastinate_app(wiring.dsn, aioredis.Redis(), Counter())
        conn = await psycopg.AsyncConnection.connect(wiring.dsn, autocommit=True)
        return ProcrastinateWriter(conn, task, wiring.prefix)

    async def serve(self, wiring: Wiring) -> None:
        redis = peer_redis(wiring.redis_url)
        app, _ = procrastinate_app(wiring.dsn, redis, Counter())
        try:
            async with app.open_async():
                ready()
                await app.run_worker_async(
                    queues=[QUEUE], concurrency=wiring.concurrency, listen_notify=True
                )
        finally:
            await redis.aclose()


class PgqueuerContender(Contender):
    key, name = PGQUEUER, "pgqueuer `QueueManager` (LISTEN/NOTIFY)"

    async def install(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await pgqueuer_queries(conn).install()
        finally:
            await conn.close()

    async def writer(self, wiring: Wiring) -> Writer:
        conn = await asyncpg.connect(wiring.dsn)
        return PgqueuerWriter(conn, pgqueuer_queries(conn), wiring.prefix)

    async def serve(self, wiring: Wiring) -> None:
        redis = peer_redis(wiring.redis_url)
        conn = await asyncpg.connect(wiring.dsn)
        try:
            manager = pgqueuer_manager(conn, redis, Counter())
            stop_on_sigterm(manager.shutdown.set)
            ready()
            await manager.run(batch_size=wiring.batch)
        finally:
            await conn.close()
            await redis.aclose()


CONTENDERS: dict[str, Contender] = {
    c.key: c for c in (OursContender(), ProcrastinateContender(), PgqueuerContender())
}


@dataclass(slots=True)
class Stamps:
    """Commit and receive times of each event id, on this process's clock."""

    committed: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    #: Stamped commits not received yet; ``arrived`` is set when none is left after ``finish``.
    waiting: int = 0
    finished: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def commit(self, event_id: str, now: float) -> None:
        self.committed[event_id] = now
        if event_id not in self.received:  # it may arrive before the commit call returns
            self.waiting += 1

    def receive(self, message: bytes, now: float) -> None:
        """Note the first arrival of the event in ``message`` (ours: "entry\\nenvelope")."""
        start = message.find(b'"id":"') + 6
        event_id = message[start : message.index(b'"', start)].decode()
        if event_id in self.received:
            self.duplicates += 1
            return
        self.received[event_id] = now
        if event_id in self.committed:
            self.waiting -= 1
            self._check()

    def finish(self) -> None:
        """No more commits: ``arrived`` is set once every stamped one has been received."""
        self.finished = True
        self._check()

    def _check(self) -> None:
        if self.finished and self.waiting == 0:
            self.arrived.set()

    def latencies(self) -> list[float]:
        return [
            self.received[event_id] - committed
            for event_id, committed in self.committed.items()
            if event_id in self.received
        ]

    def missing(self) -> int:
        return sum(1 for event_id in self.committed if event_id not in self.received)


@dataclass(frozen=True, slots=True)
class Latency:
    """Commit-to-receive times of one contender at the offered rate, or why it was skipped."""

    key: str
    name: str
    rate: float
    sent: int = 0
    missing: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    samples: tuple[float, ...] = ()
    skipped: str | None = None

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile in milliseconds (nearest rank)."""
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


async def subscribe(redis_url: str, prefix: str, stamps: Stamps, ready: asyncio.Event) -> None:
    """Receive every message on the run's topics, noting when each event first arrived."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    try:
        await pubsub.psubscribe(f"{prefix}:*")
        ready.set()
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                stamps.receive(message["data"], time.perf_counter())
    finally:
        await pubsub.aclose()
        await client.aclose()


@dataclass(frozen=True, slots=True)
class Pace:
    """When one producer commits: every ``period`` seconds from ``start + offset``."""

    start: float
    offset: float
    period: float
    measure_from: float
    stop_at: float


async def produce(writer: Writer, stamps: Stamps, pace: Pace) -> None:
    """Commit one event per transaction on schedule; stamp the ones in the measured window."""
    index = 0
    while (due := pace.start + pace.offset + index * pace.period) < pace.stop_at:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = make_event(index)
        await writer.write(event)
        if due >= pace.measure_from:
            stamps.commit(event.id, time.perf_counter())
        index += 1


async def start_worker(kind: str, wiring: Wiring) -> asyncio.subprocess.Process:
    """The contender's worker in its own process, returned once it says it is ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.outbox",
        "--worker",
        kind,
        "--database",
        wiring.dsn,
        "--redis",
        wiring.redis_url,
        "--prefix",
        wiring.prefix,
        "--batch",
        str(wiring.batch),
        "--concurrency",
        str(wiring.concurrency),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
    except TimeoutError:
        line = b""
    if line.strip() != b"ready":
        await stop_worker(process)
        raise RuntimeError(f"the {kind} worker did not start")
    return process


async def stop_worker(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (each worker finishes what it holds), then SIGKILL if it lingers."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def await_arrivals(stamps: Stamps, within: float) -> None:
    """Give the last committed events up to ``within`` seconds to arrive."""
    stamps.finish()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stamps.arrived.wait(), within)


async def run_producers(writers: Sequence[Writer], stamps: Stamps, settings: Settings) -> float:
    """All producers at ``settings.rate`` together; returns how long the measured window took."""
    period = len(writers) / settings.rate
    start = time.perf_counter() + 0.05
    measure_from = start + settings.warmup_seconds
    stop_at = measure_from + settings.latency_seconds
    await asyncio.gather(
        *(
            produce(w, stamps, Pace(start, i / settings.rate, period, measure_from, stop_at))
            for i, w in enumerate(writers)
        )
    )
    return time.perf_counter() - measure_from


async def latency_of(
    work: Workspace, redis_url: str, contender: Contender, settings: Settings
) -> Latency:
    """The contender's worker running, producers committing at the rate, a subscriber timing."""
    prefix, stamps, listening = work.prefix(), Stamps(), asyncio.Event()
    batch = settings.pgqueuer_batch if contender.key == PGQUEUER else settings.relay_batch
    async with work.database(f"latency_{contender.key}") as dsn:
        await contender.install(dsn)
        wiring = Wiring(dsn, redis_url, prefix, batch, settings.procrastinate_concurrency)
        subscriber = asyncio.create_task(subscribe(redis_url, prefix, stamps, listening))
        writers: list[Writer] = []
        worker = None
        try:
            await asyncio.wait_for(listening.wait(), 10)
            worker = await start_worker(contender.key, wiring)
            for _ in range(settings.producers):
                writers.append(await contender.writer(wiring))
            seconds = await run_producers(writers, stamps, settings)
            await await_arrivals(stamps, within=10.0)
        finally:
            await asyncio.gather(*(w.close() for w in writers), return_exceptions=True)
            if worker is not None:
                await stop_worker(worker)
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
            await delete_keys(redis_url, prefix)
    return Latency(
        contender.key,
        contender.name,
        settings.rate,
        sent=len(stamps.committed),
        missing=stamps.missing(),
        duplicates=stamps.duplicates,
        seconds=seconds,
        samples=tuple(stamps.latencies()),
    )


def why_not_keep_up(drains: Sequence[Drain], key: str, rate: float) -> str | None:
    """A reason to skip a peer's latency run: it drains slower than it would be fed."""
    runs = [drain for drain in drains if drain.key == key]
    if not runs:
        return "not installed" if key == PGQUEUER else "not measured"
    best = max(drain.rate for drain in runs)
    if best < rate * HEADROOM:
        return (
            f"not run: its drain above ran at {best:,.0f} events/s, below the "
            f"{rate:,.0f} events/s offered, so its backlog, and the latency with it, "
            "would grow for as long as the test ran"
        )
    return None


async def measure_latencies(
    work: Workspace, redis_url: str, settings: Settings, drains: Sequence[Drain]
) -> list[Latency]:
    results = [await latency_of(work, redis_url, CONTENDERS[OURS], settings)]
    for key in (PROCRASTINATE, PGQUEUER):
        contender = CONTENDERS[key]
        reason = why_not_keep_up(drains, key, settings.rate)
        if reason:
            results.append(Latency(key, contender.name, settings.rate, skipped=reason))
        else:
            results.append(await latency_of(work, redis_url, contender, settings))
    return results


# -- 3. enqueue cost ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    """One kind of application transaction; ``baseline`` names the same one without the event."""

    key: str
    name: str
    baseline: str | None


VARIANTS = (
    Variant("asyncpg", "asyncpg: insert one order (no event)", None),
    Variant("asyncpg+ours", "**asyncpg + `outbox.enqueue(conn, Event(...))`**", baseline="asyncpg"),
    Variant("asyncpg+pgqueuer", "asyncpg + pgqueuer `Queries.enqueue(...)`", baseline="asyncpg"),
    Variant(
        "asyncpg+second",
        "asyncpg + a second order row (the floor: any second statement)",
        baseline="asyncpg",
    ),
    Variant("psycopg", "psycopg 3: insert one order (no event)", None),
    Variant("psycopg+ours", "psycopg 3 + `outbox.enqueue(conn, Event(...))`", baseline="psycopg"),
    Variant(
        "psycopg+procrastinate",
        "psycopg 3 + procrastinate `defer_async(...)` on the same connection",
        baseline="psycopg",
    ),
)
Step = Callable[[int], Awaitable[None]]


def order_of(index: int) -> tuple[int, str, int]:
    return (index % 5000, "shipped", 129900)


def peer_json(index: int) -> str:
    """The message a team would serialise for a job queue: the event's fields as JSON."""
    channel = f"orders.{index % CHANNELS}"
    return json.dumps({"channel": channel, "type": EVENT_TYPE, "data": DATA})


def asyncpg_steps(conn: asyncpg.Connection[Any], outbox: Outbox, queries: Any) -> dict[str, Step]:
    """The asyncpg transactions: the order alone, with our event, with a pgqueuer job."""

    async def plain(i: int) -> None:
        async with conn.transaction():
            await conn.execute(ORDER_SQL, *order_of(i))

    async def ours(i: int) -> None:
        async with conn.transaction():
            await conn.execute(ORDER_SQL, *order_of(i))
            await outbox.enqueue(conn, make_event(i))

    async def pgqueuer(i: int) -> None:
        async with conn.transaction():
            await conn.execute(ORDER_SQL, *order_of(i))
            await queries.enqueue(TASK, peer_json(i).encode())

    async def second(i: int) -> None:
        async with conn.transaction():
            await conn.execute(ORDER_SQL, *order_of(i))
            await conn.execute(ORDER_SQL, *order_of(i))

    steps: dict[str, Step] = {"asyncpg": plain, "asyncpg+ours": ours, "asyncpg+second": second}
    if queries is not None:
        steps["asyncpg+pgqueuer"] = pgqueuer
    return steps


def psycopg_steps(conn: psycopg.AsyncConnection[Any], outbox: Outbox, task: Any) -> dict[str, Step]:
    """The psycopg transactions: the order alone, with our event, with a procrastinate job."""
    sql = ORDER_SQL.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s")

    async def plain(i: int) -> None:
        async with conn.transaction():
            await conn.execute(sql, order_of(i))

    async def ours(i: int) -> None:
        async with conn.transaction():
            await conn.execute(sql, order_of(i))
            await outbox.enqueue(conn, make_event(i))

    async def procrastinate(i: int) -> None:
        async with conn.transaction():
            await conn.execute(sql, order_of(i))
            await task.configure(connection=conn).defer_async(topic=QUEUE, message=peer_json(i))

    return {"psycopg": plain, "psycopg+ours": ours, "psycopg+procrastinate": procrastinate}


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Per-transaction seconds of one variant, over every round, and each round's median."""

    variant: Variant
    times: tuple[float, ...]
    round_medians: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)


async def time_steps(step: Step, first: int, count: int) -> list[float]:
    gc.collect()
    times = []
    for index in range(first, first + count):
        start = time.perf_counter()
        await step(index)
        times.append(time.perf_counter() - start)
    return times


async def run_rounds(steps: dict[str, Step], settings: Settings) -> dict[str, list[list[float]]]:
    """Each variant ``transactions`` times per round, order rotated each round, after a warm-up."""
    keys = list(steps)
    for key in keys:
        await time_steps(steps[key], 0, max(5, settings.transactions // 10))
    per_round: dict[str, list[list[float]]] = {key: [] for key in keys}
    for shift in range(settings.rounds):
        for step in range(len(keys)):
            key = keys[(shift + step) % len(keys)]
            first = (shift + 1) * settings.transactions
            per_round[key].append(await time_steps(steps[key], first, settings.transactions))
    return per_round


async def enqueue_steps(
    dsn: str, redis_url: str, prefix: str, stack: contextlib.AsyncExitStack
) -> dict[str, Step]:
    """Open every connection the variants use (closed by ``stack``) and build their steps."""
    outbox = Outbox(dsn, bridge=Bridge.from_url(bridge_url(redis_url, prefix)))
    stack.push_async_callback(outbox.aclose)
    await outbox.migrate()
    apg = await asyncpg.connect(dsn)
    stack.push_async_callback(apg.close)
    await apg.execute(ORDERS_TABLE)
    queries = None
    if pgqueuer_installed():
        queries = pgqueuer_queries(apg)
        await queries.install()
    pg3 = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    stack.push_async_callback(pg3.close)
    app, task = procrastinate_app(dsn, aioredis.Redis(), Counter())
    await stack.enter_async_context(app.open_async())
    await app.schema_manager.apply_schema_async()
    return {**asyncpg_steps(apg, outbox, queries), **psycopg_steps(pg3, outbox, task)}


async def measure_enqueue(work: Workspace, redis_url: str, settings: Settings) -> list[Enqueue]:
    async with work.database("enqueue") as dsn, contextlib.AsyncExitStack() as stack:
        steps = await enqueue_steps(dsn, redis_url, work.prefix(), stack)
        per_round = await run_rounds(steps, settings)
    return [
        Enqueue(
            variant,
            tuple(t for block in per_round[variant.key] for t in block),
            tuple(statistics.median(block) for block in per_round[variant.key]),
        )
        for variant in VARIANTS
        if variant.key in per_round
    ]


# -- the whole run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the section shows: the three measurements and what they ran on."""

    drains: tuple[Drain, ...]
    latencies: tuple[Latency, ...]
    enqueues: tuple[Enqueue, ...]
    machine: dict[str, str]
    settings: Settings
    #: Names this run's databases (``rbbench_<run>_*``) and Redis keys (``rbbench-<run>-*``).
    run: str

    def best(self, key: str) -> Drain | None:
        runs = [drain for drain in self.drains if drain.key == key]
        return max(runs, key=lambda drain: drain.rate) if runs else None

    def drain_ratio(self, peer: str) -> float | None:
        """Our best events/s over the peer's best: the issue's yardstick."""
        ours, theirs = self.best(OURS), self.best(peer)
        return ours.rate / theirs.rate if ours and theirs else None

    def enqueue(self, key: str) -> Enqueue | None:
        return next((e for e in self.enqueues if e.variant.key == key), None)

    def enqueue_ratio(self, key: str) -> tuple[float, float, list[float]] | None:
        """Median and mean over the baseline's, and the ratio of medians round by round."""
        entry = self.enqueue(key)
        if entry is None or entry.variant.baseline is None:
            return None
        base = self.enqueue(entry.variant.baseline)
        assert base is not None
        rounds = [a / b for a, b in zip(entry.round_medians, base.round_medians, strict=True)]
        return entry.median / base.median, entry.mean / base.mean, rounds


async def describe_machine(admin_dsn: str, redis_url: str) -> dict[str, str]:
    """The servers and versions, and the PostgreSQL settings that move these figures most."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        knobs = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("shared_buffers", "synchronous_commit", "fsync", "max_wal_size")
        }
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        redis_version = (await client.info("server")).get("redis_version", "unknown")
    finally:
        await client.aclose()
    return {
        **compose.machine(),
        "PostgreSQL": f"{version} ({', '.join(f'{k}={v}' for k, v in knobs.items())})",
        "redis server": str(redis_version),
        **{name: _version(name) for name in ("asyncpg", "psycopg", "redis", PROCRASTINATE)},
        PGQUEUER: _version(PGQUEUER),
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


async def measure(
    admin_dsn: str = DEFAULT_POSTGRES,
    redis_url: str = DEFAULT_REDIS,
    settings: Settings = FULL,
    *,
    parts: Sequence[str] = ("drain", "latency", "enqueue"),
) -> Report:
    """Run the chosen parts; every database and Redis key made is removed afterwards."""
    work = Workspace(admin_dsn)
    try:
        drains = await measure_drains(work, redis_url, settings) if "drain" in parts else []
        latencies = (
            await measure_latencies(work, redis_url, settings, drains) if "latency" in parts else []
        )
        enqueues = await measure_enqueue(work, redis_url, settings) if "enqueue" in parts else []
        machine = await describe_machine(admin_dsn, redis_url)
    finally:
        await work.drop_all()
    return Report(tuple(drains), tuple(latencies), tuple(enqueues), machine, settings, work.run)


# -- the section of BENCHMARKS.md ---------------------------------------------------------------

_INTRO = """\
The code is `bench/outbox.py`; `bench/run outbox` re-measures this section
alone (about three minutes). Every contender gets a fresh database on the same
PostgreSQL and publishes to the same Redis, from the same events: 100 channels,
the publish benchmark's `data` (209 bytes). Our side is the whole outbox:
`Outbox.enqueue` in the application's transaction, then a relay that claims
rows in commit order, numbers them per channel (`seq`), publishes through the
Bridge to the Redis adapter (dedupe by id, capped history stream, PUBLISH, one
Lua script per 500 events) and marks them sent, keeping them for history. The
peers are what a team would otherwise write: one job per event on
[procrastinate](https://procrastinate.readthedocs.io/) or
[pgqueuer](https://github.com/janbjorge/pgqueuer), whose task PUBLISHes the
same envelope to the same topic with redis-py; no seq, no dedupe, no history.
"""

_DRAIN = """\
A backlog of events is committed first, then VACUUM ANALYZEd and CHECKPOINTed;
the clock runs from the first claim until the queue is empty, in this one
process. Ours drains a copy of the same backlog at each batch size; the
peers run in between. A peer too slow for the full backlog drains fewer
jobs (the size is in the table); both peers' rates fell, not rose, with
backlog size in trial runs, so a smaller backlog flatters them.
"""

_LATENCY = """\
The worker (our relay with LISTEN/NOTIFY, or the peer's worker) runs in its
own process. In the benchmark process, {producers} connections together commit
one event per transaction at {rate:,.0f} events/s, and a Redis subscriber
(PSUBSCRIBE on the run's topics) notes when each event arrives; latency is
receive time minus the time the commit returned, both on this process's
clock. The first {warmup:g} s are not counted; the next {seconds:g} s are.
"""

_ENQUEUE = """\
The application's transaction: BEGIN, INSERT one order row, (enqueue one
event), COMMIT, one connection, one transaction after another; building the
message (our `Event`, the peers' JSON) is inside the timed transaction, as it
is in an application. Variants run in {rounds} rounds of {transactions}
transactions each, order rotated every round, after an untimed warm-up; no
worker runs meanwhile. The ratio divides by the same driver's transaction
without the event; "per round" is the ratio of medians round by round.
"""


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _drain_verdict(report: Report) -> list[str]:
    ours = report.best(OURS)
    if ours is None:
        return []
    lines = [
        f"- **Drain: {ours.rate:,.0f} events/s** at {ours.setting}: target >= 20,000 "
        f"events/s {_verdict(ours.rate >= 20_000)}."
    ]
    for peer in (PROCRASTINATE, PGQUEUER):
        ratio = report.drain_ratio(peer)
        if ratio is not None:
            target = "no target"
            if peer == PROCRASTINATE:
                target = f"target >= 10x {_verdict(ratio >= 10)}"
            lines.append(f"  - {ratio:,.1f}x {peer}'s best ({target}).")
    if report.best(PGQUEUER) is None:
        lines.append("  - pgqueuer: not installed, so not measured (`pip install pgqueuer`).")
    return lines


def _latency_verdict(report: Report) -> list[str]:
    ours = next((lat for lat in report.latencies if lat.key == OURS), None)
    if ours is None or not ours.samples:
        return []
    p50, p99 = ours.percentile(50), ours.percentile(99)
    return [
        f"- **Latency at {ours.rate:,.0f} events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms**: "
        f"target p50 <= 5 ms {_verdict(p50 <= 5)}, p99 <= 50 ms {_verdict(p99 <= 50)}."
    ]


def _enqueue_verdict(report: Report) -> list[str]:
    ratios = report.enqueue_ratio("asyncpg+ours")
    if ratios is None:
        return []
    median, mean, rounds = ratios
    lines = [
        f"- **Enqueue: {median:.2f}x** the same asyncpg transaction without the event "
        f"(ratio of medians; of means {mean:.2f}x; per round {min(rounds):.2f}x to "
        f"{max(rounds):.2f}x): target <= 1.5x {_verdict(median <= 1.5)}."
    ]
    floor = report.enqueue_ratio("asyncpg+second")
    if floor is not None:
        lines.append(
            f"  - A second statement of any kind (one more order row) costs {floor[0]:.2f}x "
            "by itself: the round trip and the write, before anything outbox-specific."
        )
    return lines


def _drain_table(report: Report) -> str:
    reference = report.best(PROCRASTINATE)
    lines = [
        "| contender | setting | events | seconds | events/s | vs procrastinate |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for drain in report.drains:
        ratio = f"{drain.rate / reference.rate:,.1f}x" if reference else "-"
        lines.append(
            f"| {drain.name} | {drain.setting} | {drain.events:,} | {drain.seconds:.2f} "
            f"| {drain.rate:,.0f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def _phase_table(drain: Drain) -> str:
    lines = [
        f"Where our best run ({drain.setting}) spent its time, timed around the relay's "
        "calls (the timers cost well under 1%):\n",
        "| phase | seconds | share | per event |",
        "|---|--:|--:|--:|",
    ]
    for key, label in PHASES:
        seconds = drain.phases.get(key, 0.0)
        lines.append(
            f"| {label} | {seconds:.2f} | {seconds / drain.seconds:.0%} "
            f"| {seconds / drain.events * 1e6:.1f} us |"
        )
    return "\n".join(lines) + "\n"


def _latency_table(report: Report) -> str:
    lines = [
        "| contender | commits/s | measured | lost | duplicates | p50 ms | p90 ms | p99 ms "
        "| max ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for lat in report.latencies:
        if lat.skipped or not lat.samples:
            lines.append(f"| {lat.name} | {lat.skipped or 'no samples'} |" + " |" * 7)
            continue
        p50, p90, p99 = (lat.percentile(q) for q in (50, 90, 99))
        lines.append(
            f"| {lat.name} | {lat.sent / lat.seconds:,.0f} | {lat.sent:,} | {lat.missing} "
            f"| {lat.duplicates} | {p50:.1f} | {p90:.1f} | {p99:.1f} "
            f"| {max(lat.samples) * 1000:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _enqueue_table(report: Report) -> str:
    lines = [
        "| transaction | median ms | mean ms | vs without the event (median) | (mean) "
        "| per round |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for entry in report.enqueues:
        ratios = report.enqueue_ratio(entry.variant.key)
        if ratios is None:
            tail = "1.00x | 1.00x | - |"
        else:
            median, mean, rounds = ratios
            tail = f"{median:.2f}x | {mean:.2f}x | {min(rounds):.2f}x to {max(rounds):.2f}x |"
        lines.append(
            f"| {entry.variant.name} | {entry.median * 1000:.3f} | {entry.mean * 1000:.3f} | {tail}"
        )
    if report.enqueue("asyncpg+pgqueuer") is None:
        lines.append("\npgqueuer is not installed, so its row is missing (`pip install pgqueuer`).")
    return "\n".join(lines) + "\n"


def _settings_list(settings: Settings) -> dict[str, str]:
    return {
        "drain": f"{settings.drain_events:,} events for ours at batch sizes "
        f"{', '.join(map(str, settings.batch_sizes))}; procrastinate "
        f"{settings.procrastinate_jobs:,} jobs, concurrency {settings.procrastinate_concurrency}, "
        f"`wait=False`; pgqueuer {settings.pgqueuer_jobs:,} jobs, batch_size "
        f"{settings.pgqueuer_batch}, drain mode",
        "latency": f"{settings.rate:,.0f} events/s from {settings.producers} connections, "
        f"{settings.warmup_seconds:g} s warm-up, {settings.latency_seconds:g} s measured; "
        f"our relay batch_size {settings.relay_batch}, poll 1 s (NOTIFY wakes it)",
        "enqueue": f"{settings.rounds} rounds x {settings.transactions} transactions per variant",
    }


def render(report: Report) -> str:
    """This benchmark's section of BENCHMARKS.md: verdicts first, then how, then the tables."""
    s = report.settings
    verdicts = _drain_verdict(report) + _latency_verdict(report) + _enqueue_verdict(report)
    parts = [
        "## Transactional outbox: relay vs procrastinate and pgqueuer\n",
        _INTRO,
        "Targets (issue 3):\n\n" + "\n".join(verdicts) + "\n",
        compose.bullets("Measured on", report.machine),
        compose.bullets("Settings", _settings_list(s)),
    ]
    if report.drains:
        parts += ["### Drain of a backlog, one process\n", _DRAIN, _drain_table(report)]
        best = report.best(OURS)
        if best is not None and best.phases:
            parts.append(_phase_table(best))
    if report.latencies:
        text = _LATENCY.format(
            producers=s.producers, rate=s.rate, warmup=s.warmup_seconds, seconds=s.latency_seconds
        )
        parts += ["### Commit-to-publish latency\n", text, _latency_table(report)]
    if report.enqueues:
        text = _ENQUEUE.format(rounds=s.rounds, transactions=s.transactions)
        parts += ["### Enqueue cost in the application's transaction\n", text]
        parts.append(_enqueue_table(report))
    return "\n".join(parts)


def summary(report: Report) -> str:
    """The verdict lines, for the terminal."""
    lines = _drain_verdict(report) + _latency_verdict(report) + _enqueue_verdict(report)
    return "\n".join(line.replace("**", "") for line in lines)


# -- command line -------------------------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> int:
    """The hidden ``--worker`` mode: one contender's worker, run by the latency test."""
    wiring = Wiring(args.database, args.redis, args.prefix, args.batch, args.concurrency)
    asyncio.run(CONTENDERS[args.worker].serve(wiring))
    return 0


def quiet_peers() -> None:
    """The peers log every job at INFO; only their errors matter here."""
    for name in (PROCRASTINATE, PGQUEUER):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print the verdicts: what ``bench/run`` calls."""
    parser = compose.parser(NAME, __doc__)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin DSN (any database)")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis to publish to")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the harness")
    parser.add_argument("--only", nargs="+", choices=("drain", "latency", "enqueue"))
    compose.add_output(parser, "write the section here")
    for hidden in ("--worker", "--database", "--prefix"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=500, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_peers()
    if args.worker:
        return worker_main(args)
    settings = QUICK if args.quick else FULL
    parts = args.only or ("drain", "latency", "enqueue")
    measuring = measure(args.postgres, args.redis, settings, parts=parts)
    return compose.run(NAME, measuring, render, summary, args.output)


if __name__ == "__main__":
    sys.exit(main())
