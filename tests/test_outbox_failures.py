"""The outbox's failure modes (issue 3, section 6), each done for real.

Real PostgreSQL, real Redis, real relay processes killed with SIGKILL, a real
PostgreSQL restart. What is asserted is what was recorded: which events a
subscriber received and in what order, what the outbox table says, when the
adapter was called compared with the schedule the relay wrote on the row.
Nothing asserts how fast anything is; every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import shutil
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from outbox_processes import (
    PG_CONNECTION_ERRORS,
    Recorder,
    RelayProcess,
    connect,
    eventually,
    fresh_database,
    missing,
)
from redis_servers import HOST, running_redis

from realtime_bridge import Bridge, Event, RetryPolicy
from realtime_bridge.adapters.base import PublishResult
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.errors import (
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from realtime_bridge.outbox import Outbox, Relay
from realtime_bridge.testing import FakeAdapter

pytestmark = [pytest.mark.postgres]

EVENT_TYPE = "order.updated"


# -- shared pieces ----------------------------------------------------------------------


def event_stream(
    channels: Sequence[str], rng: random.Random, *, until: asyncio.Event | None = None
) -> Iterator[Event]:
    """Events over ``channels``, ``data["n"]`` numbering each channel's events 1, 2, ...

    One producer commits them in this order, so ``n`` is each channel's commit
    order: the relay's ``seq`` must equal it. Endless, or until ``until`` is set.
    """
    counters: Counter[str] = Counter()
    while until is None or not until.is_set():
        channel = rng.choice(channels)
        counters[channel] += 1
        yield Event(channel=channel, type=EVENT_TYPE, data={"n": counters[channel]})


def make_events(total: int, channels: Sequence[str], rng: random.Random) -> list[Event]:
    return list(itertools.islice(event_stream(channels, rng), total))


class Producer:
    """One connection enqueuing events in many small transactions, in order.

    A transaction cut off by a server restart is retried with the same events
    (same ids: enqueuing an id twice stores it once), so the commit order is the
    list's order whatever happens to the connection.
    """

    def __init__(
        self,
        outbox: Outbox,
        dsn: str,
        rng: random.Random,
        *,
        batch: tuple[int, int] = (50, 250),
        pause: float = 0.05,
    ) -> None:
        self.outbox = outbox
        self.dsn = dsn
        self.rng = rng
        self.batch = batch
        self.pause = pause
        self.committed: list[Event] = []
        self.reconnects = 0

    async def run(self, events: Iterable[Event]) -> None:
        """Commit ``events`` in transactions of a random size, in order, until they run out."""
        source = iter(events)
        conn = await connect(self.dsn)
        try:
            while chunk := list(itertools.islice(source, self.rng.randint(*self.batch))):
                conn = await self._commit(conn, chunk)
                self.committed += chunk
                if self.pause:
                    await asyncio.sleep(self.pause)
        finally:
            await conn.close()

    async def _commit(
        self, conn: asyncpg.Connection[Any], chunk: Sequence[Event]
    ) -> asyncpg.Connection[Any]:
        for _ in range(100):
            try:
                async with conn.transaction():
                    await self.outbox.enqueue(conn, *chunk)
                return conn
            except PG_CONNECTION_ERRORS:
                conn.terminate()
                self.reconnects += 1
                conn = await connect(self.dsn)
        raise AssertionError("the producer could not commit after 100 reconnections")


def first_occurrences(observed: Iterable[Event]) -> tuple[list[Event], int]:
    """``observed`` with duplicates dropped (the first occurrence of each id kept).

    Every duplicate must be the same event: same id, channel, seq and data.
    Returns the deduplicated list and how many duplicates were dropped.
    """
    first: dict[str, Event] = {}
    kept: list[Event] = []
    duplicates = 0
    for event in observed:
        seen = first.get(event.id)
        if seen is None:
            first[event.id] = event
            kept.append(event)
            continue
        duplicates += 1
        assert (event.channel, event.seq, event.data) == (seen.channel, seen.seq, seen.data), (
            f"a duplicate of {event.id} differs from its first copy: {event!r} vs {seen!r}"
        )
    return kept, duplicates


def assert_complete_and_in_order(observed: Iterable[Event], expected: Sequence[Event]) -> int:
    """Every expected event arrived at least once, and nothing else; per channel,
    once duplicates are dropped, ``seq`` runs 1..n in commit order. Returns the
    number of duplicates.
    """
    kept, duplicates = first_occurrences(observed)
    expected_ids = {event.id for event in expected}
    kept_ids = {event.id for event in kept}
    missing_ids = expected_ids - kept_ids
    assert not missing_ids, (
        f"{len(missing_ids)} event(s) never published: {sorted(missing_ids)[:5]}"
    )
    assert kept_ids <= expected_ids, f"unexpected events: {sorted(kept_ids - expected_ids)[:5]}"
    per_channel: defaultdict[str, list[Event]] = defaultdict(list)
    for event in kept:
        per_channel[event.channel].append(event)
    for channel, events in per_channel.items():
        seqs = [event.seq for event in events]
        assert seqs == list(range(1, len(events) + 1)), (
            f"{channel}: seq out of order once duplicates are dropped: "
            f"{_first_break(seqs)} (of {len(seqs)})"
        )
        commit_order = [event.data["n"] for event in events]
        assert commit_order == seqs, f"{channel}: seq does not follow commit order"
    return duplicates


def _first_break(seqs: Sequence[int | None]) -> str:
    for position, seq in enumerate(seqs, start=1):
        if seq != position:
            around = seqs[max(0, position - 4) : position + 3]
            return f"position {position} has seq {seq}, around {around}"
    return "no break"


async def outbox_states(dsn: str) -> dict[str, int]:
    """How many rows are in each state, read on a fresh connection."""
    conn = await connect(dsn)
    try:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM realtime_outbox GROUP BY state")
    finally:
        await conn.close()
    return {row["state"]: row["n"] for row in rows}


async def all_sent(dsn: str, total: int) -> bool:
    try:
        return await outbox_states(dsn) == {"sent": total}
    except PG_CONNECTION_ERRORS:
        return False


@dataclass
class RelayTask:
    """An in-process relay run as a task (``relay.run()``), stopped and closed at the end."""

    relay: Relay
    task: asyncio.Task[None]

    @classmethod
    def start(cls, relay: Relay) -> RelayTask:
        return cls(relay, asyncio.create_task(relay.run(), name="relay under test"))

    def check(self) -> bool:
        """Raise the relay's own error if its loop died; True while it runs."""
        if self.task.done():
            error = self.task.exception()
            raise AssertionError(
                f"the relay's loop ended before it was stopped: {error!r}"
            ) from error
        return True

    async def stop(self) -> None:
        self.relay.stop()
        try:
            await asyncio.wait_for(self.task, 60)
        finally:
            await self.relay.aclose()


@pytest.fixture
async def database(postgres_server: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    async with fresh_database(postgres_server) as dsn:
        yield dsn


# -- 1. kill -9 the relay at random moments ------------------------------------------

KILL_EVENTS = 50_000
KILL_CHANNELS = 50
MIN_KILLS = 20


async def test_relay_killed_at_random_moments_loses_nothing(
    database: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    """SIGKILL relay processes at random moments while 50,000 events flow.

    Two relay processes run; every fraction of a second one of them, picked at
    random, is killed (half the time the instant a batch reaches Redis, before
    it can be marked sent) and replaced a moment later, at least 20 times, while
    a producer keeps committing. The Redis adapter's dedupe window is one
    second, so a batch a killed relay published but had not marked sent is
    usually published again, and the subscriber sees it twice: same ids, same seqs.
    """
    redis_port = urlsplit(redis_server).port or 6379
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    channels = [f"orders.{i}" for i in range(KILL_CHANNELS)]
    adapter_url = f"{redis_server}?prefix={redis_prefix}&dedupe_ttl=1&history=1000000&exact=true"
    keys = RedisAdapter.from_url(adapter_url)
    topics = [keys.keys(channel).topic for channel in channels]
    streams = {channel: keys.keys(channel).stream for channel in channels}
    await keys.aclose()
    events = make_events(KILL_EVENTS, channels, rng)
    backlog, flow = events[:25_000], events[25_000:]

    relays: list[RelayProcess] = []
    kills = 0
    generation = 0

    def start_relay() -> RelayProcess:
        nonlocal generation
        generation += 1
        return RelayProcess(
            database,
            adapter_url,
            tmp_path,
            "--batch-size",
            "200",
            "--poll",
            "0.2",
            name=f"relay-{generation}",
        ).start()

    async with Outbox(database, bridge=Bridge.from_url(adapter_url)) as outbox:
        await outbox.migrate()
        recorder = await Recorder(topics, port=redis_port).start()
        try:
            # A backlog before any relay runs, then a steady flow while relays are killed.
            await Producer(outbox, database, rng, pause=0.0).run(backlog)
            producing = asyncio.create_task(Producer(outbox, database, rng, pause=0.15).run(flow))
            relays += [start_relay(), start_relay()]
            while kills < MIN_KILLS or not producing.done():
                await asyncio.sleep(rng.uniform(0.2, 1.2))  # a random moment
                victim = rng.randrange(len(relays))
                assert relays[victim].running, (
                    f"a relay died by itself:\n{relays[victim].log_tail()}"
                )
                if rng.random() < 0.5:
                    # ...or the moment a batch reaches Redis, before the relay marks it sent
                    # (if the victim is the relay that published it): killed from the
                    # subscriber's reader, as soon as the first message of a batch is in.
                    killed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                    def kill_now(
                        process: RelayProcess = relays[victim],
                        killed: asyncio.Future[None] = killed,
                    ) -> None:
                        process.send_kill()
                        killed.set_result(None)

                    recorder.on_next_message = kill_now
                    await asyncio.wait([killed, producing], return_when=asyncio.FIRST_COMPLETED)
                    recorder.on_next_message = None
                relays[victim].kill()
                kills += 1
                # One relay keeps running; the replacement comes a moment later, often
                # after the adapter's one-second dedupe window, so a batch the victim
                # published but did not mark is seen again by the subscriber.
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                relays[victim] = start_relay()
                assert kills < 500, "the producer never finished"
            await producing
            # The last two relays are left alone to drain what is left.
            try:
                await eventually(
                    lambda: all_sent(database, KILL_EVENTS), within=300, what="all sent", every=0.5
                )
            except AssertionError as exc:
                logs = "\n".join(relay.log_tail() for relay in relays)
                raise AssertionError(f"{exc}; the relays' logs:\n{logs}") from None
            assert all(relay.running for relay in relays)
            await eventually(
                lambda: {e.id for e in events} <= recorder.ids(),
                within=60,
                what="the subscriber received every event",
            )
        finally:
            for relay in relays:
                relay.kill()
            await recorder.aclose()

    assert kills >= MIN_KILLS
    assert not recorder.disconnected
    live = recorder.messages()
    duplicates = assert_complete_and_in_order([m.event for m in live], events)

    # The history kept in Redis: exactly what the subscriber saw, per channel, in order.
    client = aioredis.Redis(host=HOST, port=redis_port)
    try:
        history: list[Event] = []
        for channel in channels:
            entries = await client.xrange(streams[channel])
            stream_events = [Event.decode(fields[b"e"]) for _, fields in entries]
            seen = [m.event for m in live if m.event.channel == channel]
            assert [e.id for e in stream_events] == [e.id for e in seen], channel
            assert [entry.decode() for entry, _ in entries] == [
                m.entry for m in live if m.event.channel == channel
            ], channel
            history += stream_events
    finally:
        await client.aclose()
    assert_complete_and_in_order(history, events)
    print(
        f"seed={seed} kills={kills} relays started={generation} "
        f"messages={len(live)} duplicates={duplicates}"
    )


# -- 2. restart PostgreSQL and Redis under load --------------------------------------


def postgres_cluster() -> tuple[str, str]:
    """The version and name of the local cluster listening on port 5432."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        missing("pg_ctlcluster/pg_lsclusters are not installed (postgresql-common)")
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False, timeout=30
    )
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "5432" and fields[3].startswith("online"):
            return fields[0], fields[1]
    missing(f"no local PostgreSQL cluster online on port 5432:\n{listing.stdout}")
    raise AssertionError("unreachable")


async def pg_ctlcluster(version: str, name: str, action: str) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"pg_ctlcluster {action}: {result.stdout}{result.stderr}"


async def postgres_answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except PG_CONNECTION_ERRORS:
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def postgres_kept_up(version: str, cluster: str, dsn: str) -> AsyncIterator[None]:
    """Whatever happens in the block, PostgreSQL is accepting connections after it."""
    try:
        yield
    finally:
        if not await postgres_answers(dsn):
            await pg_ctlcluster(version, cluster, "start")
            await eventually(lambda: postgres_answers(dsn), within=120, what="PostgreSQL back")


async def stream_history(port: int, adapter: RedisAdapter, channels: Sequence[str]) -> list[Event]:
    """Every event kept in the channels' streams on the Redis at ``port``."""
    client = aioredis.Redis(host=HOST, port=port)
    try:
        history: list[Event] = []
        for channel in channels:
            entries = await client.xrange(adapter.keys(channel).stream)
            history += [Event.decode(fields[b"e"]) for _, fields in entries]
    finally:
        await client.aclose()
    return history


async def test_postgres_and_redis_restart_under_load(database: str, postgres_server: str) -> None:
    """Restart PostgreSQL, then kill and restart Redis, while events flow.

    PostgreSQL is the machine's own, restarted with ``pg_ctlcluster`` (and up
    again before the test ends, whatever happens); Redis is a private server
    this test SIGKILLs and starts again, empty (no persistence). The relay
    reconnects to both by itself. Every event ends ``sent``, and was received
    by the subscriber before Redis died or is in the restarted Redis's history,
    which the new subscriber's live messages must match.
    """
    version, cluster = postgres_cluster()
    rng = random.Random()
    channels = [f"orders.{i}" for i in range(10)]
    prefix = f"rbfail-{uuid.uuid4().hex[:8]}"
    stop_producing = asyncio.Event()
    recorders: list[Recorder] = []
    with running_redis() as server:
        adapter = RedisAdapter.from_url(server.url(query=f"prefix={prefix}&history=1000000"))
        topics = [adapter.keys(channel).topic for channel in channels]
        bridge = Bridge(adapter, reset_timeout=1.0)
        async with (
            postgres_kept_up(version, cluster, postgres_server),
            Outbox(database, bridge=bridge) as outbox,
        ):
            await outbox.migrate()
            recorders.append(await Recorder(topics, port=server.port).start())
            relay = RelayTask.start(outbox.relay(batch_size=200, poll_interval=0.2, max_delay=2.0))
            producer = Producer(outbox, database, rng, batch=(25, 25), pause=0.02)
            stream = event_stream(channels, rng, until=stop_producing)
            producing = asyncio.create_task(producer.run(stream))
            stats = relay.relay.stats

            async def more_published(count: int, what: str) -> None:
                def check() -> bool:
                    if producing.done():
                        producing.result()
                    return relay.check() and stats.published >= mark + count

                mark = stats.published
                await eventually(check, within=60, what=what)

            try:
                await more_published(500, "the relay publishing")

                # PostgreSQL goes away under the relay and the producer (fast shutdown: their
                # connections are terminated), stays down until the relay has failed to reach
                # it, and comes back.
                errors = stats.database_errors
                await pg_ctlcluster(version, cluster, "stop")
                await eventually(
                    lambda: relay.check() and stats.database_errors > errors,
                    within=60,
                    what="the relay finding PostgreSQL down",
                )
                await pg_ctlcluster(version, cluster, "start")
                await more_published(500, "the relay publishing after PostgreSQL restarted")

                # Redis dies (no goodbye); the relay puts back what it cannot send.
                retried = stats.retried
                server.kill()
                await eventually(
                    lambda: relay.check() and stats.retried > retried,
                    within=60,
                    what="the relay retrying while Redis is down",
                )
                await asyncio.to_thread(server.start)
                recorders.append(await Recorder(topics, port=server.port).start())
                await more_published(500, "the relay publishing after Redis restarted")

                stop_producing.set()
                await producing
                await eventually(
                    lambda: relay.check() and all_sent(database, len(producer.committed)),
                    within=120,
                    what="every row sent",
                    every=0.2,
                )
            finally:
                stop_producing.set()
                await asyncio.gather(producing, return_exceptions=True)
                await relay.stop()
                for recorder in recorders:
                    await recorder.aclose()
            history = await stream_history(server.port, adapter, channels)

    before, after = recorders
    assert before.disconnected, "the first subscriber should have lost its server"
    # Seen live before Redis died, or kept by the restarted Redis: complete, in order.
    observed = [message.event for message in before.messages()] + history
    duplicates = assert_complete_and_in_order(observed, producer.committed)
    # The new subscriber saw the tail of what the restarted Redis kept, in order.
    live = [message.event.id for message in after.messages()]
    assert live, "the new subscriber received nothing"
    kept = [event.id for event in history]
    for channel in channels:
        mine = [m.event.id for m in after.messages() if m.event.channel == channel]
        theirs = [event.id for event in history if event.channel == channel]
        assert mine == theirs[len(theirs) - len(mine) :], f"{channel}: live is not history's tail"
    assert set(live) <= set(kept)
    print(
        f"events={len(producer.committed)} producer reconnects={producer.reconnects} "
        f"relay database errors={stats.database_errors} retried={stats.retried} "
        f"duplicates={duplicates}"
    )


# -- 3. the vendor answers 503 and 429 for a while ----------------------------------


@dataclass(frozen=True)
class Attempt:
    """One publish call the adapter received: when, with which events, and how it ended."""

    at: float
    ids: tuple[str, ...]
    error: str | None


class FlakyAdapter(FakeAdapter):
    """Fails every call with ``failure()`` while the test sets one; records every call."""

    def __init__(self) -> None:
        super().__init__(label="fake://flaky")
        self.failure: Callable[[], RealtimeBridgeError] | None = None
        self.attempts: list[Attempt] = []

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        at = time.time()
        ids = tuple(event.id for event in events)
        if self.failure is not None:
            error = self.failure()
            self.attempts.append(Attempt(at, ids, type(error).__name__))
            raise error
        self.attempts.append(Attempt(at, ids, None))
        return await super().publish(events)


RETRY_AFTER = 2.0

SCHEDULE_LOG = """
CREATE TABLE schedule_log (
    event_id        text        NOT NULL,
    attempts        integer     NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    logged_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION log_schedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.attempts <> OLD.attempts AND NEW.state = 'pending' THEN
        INSERT INTO schedule_log (event_id, attempts, next_attempt_at, last_error)
        VALUES (NEW.event_id, NEW.attempts, NEW.next_attempt_at, NEW.last_error);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER log_schedule AFTER UPDATE ON realtime_outbox
    FOR EACH ROW EXECUTE FUNCTION log_schedule();
"""


async def test_adapter_503_and_429_for_a_while(database: str) -> None:
    """503s, then 429s with Retry-After: 2, then recovery, while events keep coming.

    A trigger records every retry the relay schedules on a row (attempt count,
    next_attempt_at, error); the adapter records every call it receives. The
    recorded facts must agree: no row was tried before its scheduled time, a
    429's schedule is at least Retry-After after the 429, and no call at all
    reached the vendor within Retry-After of a 429.
    """
    rng = random.Random()
    channels = [f"orders.{i}" for i in range(200)]
    events = make_events(3000, channels, rng)
    flaky = FlakyAdapter()
    bridge = Bridge(flaky, retry=RetryPolicy(attempts=2), reset_timeout=1.0)
    async with Outbox(database, bridge=bridge) as outbox:
        await outbox.migrate()
        conn = await connect(database)
        try:
            await conn.execute(SCHEDULE_LOG)
        finally:
            await conn.close()
        flaky.failure = lambda: VendorUnavailable("503 Service Unavailable", adapter=flaky.name)
        relay = RelayTask.start(
            outbox.relay(batch_size=50, poll_interval=0.2, base_delay=0.2, max_delay=2.0)
        )
        producer = Producer(outbox, database, rng, batch=(20, 100), pause=0.05)
        producing = asyncio.create_task(producer.run(events))
        try:

            def failed(kind: str) -> int:
                relay.check()
                return sum(1 for attempt in flaky.attempts if attempt.error == kind)

            await eventually(lambda: failed("VendorUnavailable") >= 8, within=60, what="503s")
            flaky.failure = lambda: RateLimited(
                "429 Too Many Requests", adapter=flaky.name, retry_after=RETRY_AFTER
            )
            await eventually(lambda: failed("RateLimited") >= 4, within=60, what="429s")
            flaky.failure = None
            await producing
            await eventually(
                lambda: relay.check() and all_sent(database, len(events)),
                within=120,
                what="the backlog drained",
                every=0.2,
            )
        finally:
            flaky.failure = None
            await asyncio.gather(producing, return_exceptions=True)
            await relay.stop()
        conn = await connect(database)
        try:
            schedule = await conn.fetch(
                "SELECT event_id, attempts, next_attempt_at, last_error, logged_at "
                "FROM schedule_log ORDER BY logged_at"
            )
            final = await conn.fetch(
                "SELECT event_id, attempts, next_attempt_at FROM realtime_outbox WHERE attempts > 0"
            )
        finally:
            await conn.close()

    # Nothing lost, each channel in order.
    assert_complete_and_in_order(flaky.published, events)
    assert len(flaky.published) == len(events)

    attempts_of: defaultdict[str, list[Attempt]] = defaultdict(list)
    for attempt in flaky.attempts:
        for event_id in attempt.ids:
            attempts_of[event_id].append(attempt)
    rate_limited = [attempt for attempt in flaky.attempts if attempt.error == "RateLimited"]
    assert rate_limited and any(a.error == "VendorUnavailable" for a in flaky.attempts)

    # The log holds every schedule the relay wrote: the last one is what the row says.
    last_logged = {row["event_id"]: (row["attempts"], row["next_attempt_at"]) for row in schedule}
    assert last_logged == {
        row["event_id"]: (row["attempts"], row["next_attempt_at"]) for row in final
    }

    # Every schedule the relay wrote on a row was kept: no call before next_attempt_at,
    # and after a 429 the schedule is at least Retry-After after the failed call.
    rows_after_429 = 0
    for row in schedule:
        event_id = row["event_id"]
        written: float = row["logged_at"].timestamp()
        due: float = row["next_attempt_at"].timestamp()
        before = [a for a in attempts_of[event_id] if a.at <= written]
        after = [a for a in attempts_of[event_id] if a.at > written]
        assert after, f"{event_id}: never tried again after {row['last_error']}"
        assert after[0].at >= due, (
            f"{event_id} was tried at {_ts(after[0].at)}, before its next_attempt_at {_ts(due)}"
        )
        # A breaker's refusal is no attempt: the relay writes nothing for it.
        assert "circuit open" not in row["last_error"], f"{event_id}: a refusal was counted"
        assert before and before[-1].error is not None, f"{event_id}: retry without a failure"
        if "429" in row["last_error"]:
            assert before[-1].error == "RateLimited"
            rows_after_429 += 1
            assert due >= before[-1].at + RETRY_AFTER, (
                f"{event_id}: a 429 at {_ts(before[-1].at)} asked for {RETRY_AFTER}s, "
                f"but next_attempt_at is {_ts(due)}"
            )
    assert rows_after_429 > 0, "no row was put back after a 429"
    unavailable = sum(1 for attempt in flaky.attempts if attempt.error == "VendorUnavailable")
    print(
        f"calls={len(flaky.attempts)} 503s={unavailable} 429s={len(rate_limited)} "
        f"schedules={len(schedule)} after 429={rows_after_429}"
    )

    # Retry-After is about the vendor, not one row: after a 429 nothing reaches it
    # for that long (the Bridge's own retries and the relay's next batches alike).
    for limited in rate_limited:
        early = [a for a in flaky.attempts if limited.at < a.at < limited.at + RETRY_AFTER]
        assert not early, (
            f"a 429 at {_ts(limited.at)} asked for {RETRY_AFTER}s, but the vendor was called "
            f"{len(early)} time(s) within it, first at {_ts(early[0].at)}"
        )


def _ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")


# -- 4. a poison event ------------------------------------------------------------------


class PoisonAdapter(FakeAdapter):
    """Refuses, permanently, any call that carries the poison event (a vendor's 400)."""

    def __init__(self, poison: str) -> None:
        super().__init__(label="fake://strict")
        self.poison = poison
        self.accepted: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        if any(event.id == self.poison for event in events):
            raise PublishRejected(
                f"400 Bad Request: event {self.poison} has a field the vendor refuses",
                adapter=self.name,
            )
        self.accepted += events
        return await super().publish(events)


async def test_poison_event_is_dead_lettered_while_the_rest_flows(database: str) -> None:
    """One event the vendor always refuses (400): dead-lettered with the vendor's reason,
    while the later events of its channel, and every other channel, are published in order.
    """
    rng = random.Random()
    channels = [f"orders.{i}" for i in range(5)]
    events = make_events(2000, channels, rng)
    poison = next(e for e in events if e.channel == channels[0] and e.data["n"] == 50)
    strict = PoisonAdapter(poison.id)
    async with Outbox(database, bridge=Bridge(strict)) as outbox:
        await outbox.migrate()
        producer = Producer(outbox, database, rng, batch=(100, 300), pause=0.0)
        await producer.run(events[:1000])  # a backlog, the poison in it
        relay = RelayTask.start(outbox.relay(batch_size=200, poll_interval=0.2))
        try:
            await producer.run(events[1000:])  # and more while the relay runs

            async def settled() -> bool:
                relay.check()
                return await outbox_states(database) == {"sent": len(events) - 1, "dead": 1}

            await eventually(settled, within=120, what="all sent but the poison", every=0.2)
        finally:
            await relay.stop()
        dead = await outbox.dead()
        status = await outbox.status()

    assert [(row.event_id, row.channel) for row in dead] == [(poison.id, poison.channel)]
    assert dead[0].reason is not None and "400 Bad Request" in dead[0].reason
    assert poison.id in dead[0].reason
    assert (status.dead, status.pending) == (1, 0)

    assert poison.id not in {event.id for event in strict.published}
    published, duplicates = first_occurrences(strict.accepted)
    assert duplicates == 0
    assert {e.id for e in published} == {e.id for e in events} - {poison.id}
    for channel in channels:
        mine = [event for event in published if event.channel == channel]
        seqs = [event.seq or 0 for event in mine]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{channel} out of order"
        assert [event.data["n"] for event in mine] == sorted(event.data["n"] for event in mine)
    later = [e for e in published if e.channel == poison.channel and e.data["n"] > 50]
    assert len(later) == sum(1 for e in events if e.channel == poison.channel and e.data["n"] > 50)


# -- 5. two relays at once --------------------------------------------------------------


class RecordingAdapter(FakeAdapter):
    """Appends ``(relay name, event)`` to a log shared by both relays, in publish order."""

    def __init__(self, relay_name: str, log: list[tuple[str, Event]]) -> None:
        super().__init__(label=f"fake://{relay_name}")
        self.relay_name = relay_name
        self.log = log

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        self.log += [(self.relay_name, event) for event in events]
        return await super().publish(events)


async def test_two_relays_publish_each_event_once_in_order(database: str) -> None:
    """Two relays, each with its own connection, share 6,000 events over 20 channels.

    Each relay publishes through its own recording adapter into one shared log,
    in the order publishing happened: no event in it twice, every channel in
    commit order, and both relays did part of the work (their partitions split).
    """
    rng = random.Random()
    channels = [f"orders.{i}" for i in range(20)]
    events = make_events(6000, channels, rng)
    log: list[tuple[str, Event]] = []
    outbox_a = Outbox(database, bridge=Bridge(RecordingAdapter("a", log)))
    outbox_b = Outbox(database, bridge=Bridge(RecordingAdapter("b", log)))
    async with outbox_a, outbox_b:
        await outbox_a.migrate()
        relay_a = RelayTask.start(outbox_a.relay(batch_size=200, poll_interval=0.2))
        relay_b = RelayTask.start(outbox_b.relay(batch_size=200, poll_interval=0.2))
        try:
            owned: dict[str, frozenset[int]] = {}

            def split() -> bool:
                relay_a.check()
                relay_b.check()
                owned["a"] = relay_a.relay.database.owned_partitions  # type: ignore[attr-defined]
                owned["b"] = relay_b.relay.database.owned_partitions  # type: ignore[attr-defined]
                return len(owned["a"]) == len(owned["b"]) == 32

            # Each relay rebalances every 2 s; the first to start may hold all 64
            # partitions until its next rebalance. Events come once the split is even.
            await eventually(split, within=60, what="the relays splitting the 64 partitions")
            assert not owned["a"] & owned["b"]
            producer = Producer(outbox_a, database, rng, batch=(50, 200), pause=0.02)
            await producer.run(events)
            await eventually(
                lambda: relay_a.check() and relay_b.check() and all_sent(database, len(events)),
                within=120,
                what="every row sent",
                every=0.2,
            )
        finally:
            await asyncio.gather(relay_a.stop(), relay_b.stop())

    counts = Counter(event.id for _, event in log)
    twice = [event_id for event_id, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} event(s) published twice, e.g. {twice[:3]}"
    assert_complete_and_in_order([event for _, event in log], events)
    by_relay = Counter(name for name, _ in log)
    assert by_relay["a"] > 0 and by_relay["b"] > 0, f"one relay did all the work: {by_relay}"
    assert relay_a.relay.stats.published == by_relay["a"]
    assert relay_b.relay.stats.published == by_relay["b"]
    # A channel is published by one relay at a time: here, with the partitions split
    # before the events came, each channel by exactly one.
    publishers = defaultdict(set)
    for name, event in log:
        publishers[event.channel].add(name)
    assert all(len(names) == 1 for names in publishers.values()), dict(publishers)
    print(f"published by relay: {dict(by_relay)}")
