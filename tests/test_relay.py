"""The relay: committed outbox rows reach the adapter, in order per channel, at least once.

Each behaviour runs on PostgreSQL and on SQLite (the ``outbox_url`` fixture),
against a ``FakeAdapter`` (failures on demand) and, for the plain drain, the
real Redis adapter: ordering and seqs, backoff and Retry-After, dead letters
(through the ``Outbox`` API and the CLI), history answered from the outbox,
retention, and the relay running in the background and stopping. Rows are
read back with plain SQL (``outbox_fixtures``), and a row waiting for its
retry is made due by moving ``next_attempt_at`` into the past, so nothing
here waits out a backoff or asserts a duration; where the relay runs in the
background a bounded poll waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from outbox_fixtures import (
    age_sent,
    database_now,
    dialect_of,
    enqueue_committed,
    insert_raw,
    make_due,
    no_relay_connected,
    run_async,
    sqlite_url_of,
    stored_rows,
    wait_until,
)

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.base import (
    Adapter,
    Capability,
    Limits,
    PublishResult,
)
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.cli import main
from realtime_bridge.errors import CursorNotFound, PublishRejected, RateLimited
from realtime_bridge.outbox import Outbox, Relay
from realtime_bridge.testing import FakeAdapter, instant_retry

pytest_plugins = ["conftest_outbox"]

A, B, C = "orders.a", "orders.b", "orders.c"
LONG_BACKOFF = 60.0  # a retried row stays put until the test makes it due


def ev(channel: str, n: int, **data: Any) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n, **data})


def ids(events: Sequence[Event]) -> list[str]:
    return [event.id for event in events]


class PickyAdapter(FakeAdapter):
    """Refuses every batch holding an event marked ``poison``, as a vendor answers 400."""

    def __init__(self) -> None:
        super().__init__()
        self.cured = False

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        bad = [event for event in events if event.data.get("poison")]
        if bad and not self.cured:
            self.calls.append(list(events))
            raise PublishRejected(f"400 Bad Request: event {bad[0].id} refused", adapter=self.name)
        return await super().publish(events)


class PublishOnly(Adapter):
    """A vendor that keeps no history (as Pusher): publish, nothing else."""

    scheme = "publish-only"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PUBLISH, Capability.BATCH}
    )

    def __init__(self) -> None:
        self.limits = Limits(max_payload_bytes=10_000, max_events_per_batch=100)
        self.published: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        self.published.extend(events)
        return PublishResult(published=len(events))


@dataclass
class Rig:
    url: str
    fake: FakeAdapter
    outbox: Outbox
    relay: Relay

    async def enqueue(self, *events: Event) -> None:
        await enqueue_committed(self.url, self.outbox, *events)

    async def drain(self) -> int:
        return await self.relay.drain()

    async def once(self) -> int:
        """One claim-publish-mark cycle, this relay owning its partitions."""
        await self.relay.database.rebalance()
        return await self.relay.run_once()

    def published(self, channel: str) -> list[Event]:
        return self.fake.find(channel=channel)


@contextlib.asynccontextmanager
async def rigged(url: str, fake: FakeAdapter, **relay_options: Any) -> AsyncIterator[Rig]:
    """An outbox over ``fake`` (one Bridge attempt per publish: failures reach the relay)
    and one relay, reused for every drain of the test."""
    relay_options.setdefault("base_delay", LONG_BACKOFF)
    async with Outbox(url, bridge=Bridge(fake, retry=instant_retry(1))) as outbox:
        relay = outbox.relay(**relay_options)
        try:
            yield Rig(url, fake, outbox, relay)
        finally:
            await relay.aclose()


@pytest.fixture
async def rig(outbox_url: str) -> AsyncIterator[Rig]:
    async with rigged(outbox_url, FakeAdapter()) as rig:
        yield rig


@pytest.fixture
async def picky(outbox_url: str) -> AsyncIterator[Rig]:
    async with rigged(outbox_url, PickyAdapter()) as rig:
        yield rig


def by_event(rows: Sequence[Any]) -> dict[str, Any]:
    return {row.event_id: row for row in rows}


# -- draining ---------------------------------------------------------------------------------


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.redis)])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Adapter, Adapter]]:
    """The adapter the relay publishes to, and one to read back what arrived."""
    if request.param == "fake":
        fake = FakeAdapter()
        yield fake, fake
        return
    server, prefix = (
        request.getfixturevalue("redis_server"),
        request.getfixturevalue("redis_prefix"),
    )
    url = f"{server}?prefix={prefix}&history=100"
    reader = RedisAdapter.from_url(url)
    try:
        yield RedisAdapter.from_url(url), reader
    finally:
        await reader.aclose()


async def test_drain_publishes_everything_in_order_per_channel_with_seqs(
    outbox_url: str, target: tuple[Adapter, Adapter]
) -> None:
    adapter, reader = target
    channels = (A, B, C)
    sent: dict[str, list[Event]] = {channel: [] for channel in channels}
    async with Outbox(outbox_url, bridge=Bridge(adapter)) as outbox:
        relay = outbox.relay(batch_size=4)  # several claims, each channel across them
        try:
            for n in range(6):  # interleaved commits: a, b, c, a, b, c, ... two per transaction
                first, second = ev(channels[n % 3], n), ev(channels[(n + 1) % 3], n)
                await enqueue_committed(outbox_url, outbox, first, second)
                sent[first.channel].append(first)
                sent[second.channel].append(second)
            assert await relay.drain() == 12
            assert await relay.drain() == 0
            # Later commits continue each channel's seq.
            late = ev(A, 99)
            await enqueue_committed(outbox_url, outbox, late)
            sent[A].append(late)
            assert await relay.drain() == 1
        finally:
            await relay.aclose()

        rows = await stored_rows(outbox_url)
        assert [row.state for row in rows] == ["sent"] * 13
        assert all(row.sent_at is not None and row.attempts == 0 for row in rows)
        stored = by_event(rows)
        for channel in channels:
            page = await reader.history(channel, limit=100)
            got = list(page.events)
            assert ids(got) == ids(sent[channel]), channel  # commit order, each once
            assert [e.seq for e in got] == list(range(1, len(got) + 1)), channel
            assert [stored[e.id].seq for e in got] == [e.seq for e in got]
            for published, original in zip(got, sent[channel], strict=True):
                assert (published.type, published.data) == (original.type, original.data)
                assert isinstance(published.ts, datetime)
                assert abs(published.ts.timestamp() - stored[published.id].created_at) < 1e-3


async def test_a_relay_killed_before_recording_leaves_the_same_seqs_to_claim(rig: Rig) -> None:
    """Seqs are recorded with each row's outcome: claiming again after a crash renumbers
    the rows exactly as before, and a batch claimed while another is in flight follows it."""
    await rig.enqueue(ev(A, 1), ev(A, 2), ev(B, 1))
    database = rig.relay.database
    await database.rebalance()
    first = await database.claim(10)
    again = await database.claim(10)  # the relay that claimed ``first`` died
    assert [(r.event_id, r.seq) for r in again] == [(r.event_id, r.seq) for r in first]
    assert [(r.channel, r.seq) for r in first] == [(A, 1), (A, 2), (B, 1)]

    await rig.enqueue(ev(A, 3))
    in_flight = {row.channel: row.seq for row in first}
    following = await database.claim(10, exclude=[r.pk for r in first], floors=in_flight)
    assert [(r.channel, r.seq) for r in following] == [(A, 3)]
    await database.mark_sent(first)
    await database.mark_sent(following)
    await rig.enqueue(ev(A, 4), ev(B, 2))
    assert [(r.channel, r.seq) for r in await database.claim(10)] == [(A, 4), (B, 2)]


async def test_seqs_follow_claim_order_not_event_ids(rig: Rig) -> None:
    """Event ids are time-ordered client-side; seq follows the database's commit order."""
    later_id = ev(A, 1)
    earlier_id = ev(A, 0)  # made second, so its UUIDv7 sorts after: commit it first
    assert earlier_id.id > later_id.id
    await rig.enqueue(earlier_id)
    await rig.enqueue(later_id)
    assert await rig.drain() == 2
    assert ids(rig.published(A)) == [earlier_id.id, later_id.id]
    assert [e.seq for e in rig.published(A)] == [1, 2]


# -- transient failures ---------------------------------------------------------------------


async def test_a_transient_failure_backs_off_and_holds_back_only_its_channel(rig: Rig) -> None:
    a1 = ev(A, 1)
    await rig.enqueue(a1)
    rig.fake.fail_next(1)
    before = await database_now(rig.url)
    assert await rig.drain() == 1

    [row] = await stored_rows(rig.url)
    assert (row.state, row.attempts, row.seq) == ("pending", 1, 1)
    assert row.last_error is not None and "injected failure" in row.last_error
    assert row.next_attempt_at > before + LONG_BACKOFF / 4  # the backoff, jittered
    assert rig.fake.published == []

    # Later rows: the failing channel's wait behind a1, the other channels flow.
    a2, b1, c1, b2 = ev(A, 2), ev(B, 1), ev(C, 1), ev(B, 2)
    await rig.enqueue(a2, b1)
    await rig.enqueue(c1, b2)
    assert await rig.drain() == 3
    assert ids(rig.fake.published) == ids([b1, c1, b2])
    rows = by_event(await stored_rows(rig.url))
    assert (rows[a1.id].state, rows[a2.id].state) == ("pending", "pending")
    assert rows[a2.id].attempts == 0 and rows[a2.id].seq is None  # never claimed

    await make_due(rig.url)
    assert await rig.drain() == 2
    assert ids(rig.published(A)) == ids([a1, a2])
    assert [e.seq for e in rig.published(A)] == [1, 2]  # a1 kept the seq of its first claim
    assert [e.seq for e in rig.published(B)] == [1, 2]
    rows = by_event(await stored_rows(rig.url))
    assert rows[a1.id].state == "sent" and rows[a1.id].last_error is None
    assert rows[a1.id].attempts == 1


async def test_rate_limited_waits_at_least_the_retry_after(outbox_url: str) -> None:
    fake = FakeAdapter()
    async with rigged(outbox_url, fake, base_delay=0.001) as rig:  # backoff alone: ~0s
        await rig.enqueue(ev(A, 1), ev(B, 1))
        fake.fail_next(1, RateLimited("slow down", adapter=fake.name, retry_after=30))
        before = await database_now(rig.url)
        assert await rig.once() == 2  # one claim (a drain would wait out the Retry-After)
        rows = await stored_rows(rig.url)
        assert all(row.state == "pending" and row.attempts == 1 for row in rows)
        assert all(row.next_attempt_at >= before + 30 for row in rows), rows
        assert all("retry after 30s" in (row.last_error or "") for row in rows)
        assert fake.published == []


async def test_a_circuit_breaker_refusal_is_not_an_attempt(outbox_url: str) -> None:
    """An open breaker keeps the vendor from seeing the rows: they stay as they were."""
    fake = FakeAdapter()
    bridge = Bridge(fake, retry=instant_retry(1), failure_threshold=1, reset_timeout=3600)
    async with Outbox(outbox_url, bridge=bridge) as outbox:
        relay = outbox.relay(base_delay=LONG_BACKOFF)
        try:
            await enqueue_committed(outbox_url, outbox, ev(A, 1))
            fake.fail_next(1)  # the vendor fails once: one attempt, and the breaker opens
            await relay.database.rebalance()
            assert await relay.run_once() == 1
            [row] = await stored_rows(outbox_url)
            assert (row.state, row.attempts) == ("pending", 1)

            await make_due(outbox_url)
            for _ in range(3):  # the first cycle after a retry may still hold the channel back
                await relay.run_once()
                if relay.stats.refused:
                    break
            [again] = await stored_rows(outbox_url)
            assert (again.state, again.attempts, again.last_error) == (
                "pending",
                1,
                row.last_error,
            )
            assert relay.stats.refused == 1 and fake.published == []
            assert await relay.run_once() == 0  # and it claims nothing while the breaker is open
        finally:
            await relay.aclose()


async def test_events_past_the_attempt_limit_are_dead_with_the_reason(outbox_url: str) -> None:
    fake = FakeAdapter()
    async with rigged(outbox_url, fake, max_attempts=3) as rig:
        a1 = ev(A, 1)
        await rig.enqueue(a1)
        fake.fail_next(3)
        for attempts in (1, 2):
            assert await rig.drain() == 1
            [row] = await stored_rows(rig.url)
            assert (row.state, row.attempts) == ("pending", attempts)
            await make_due(rig.url)
        assert await rig.drain() == 1
        [row] = await stored_rows(rig.url)
        assert (row.state, row.attempts) == ("dead", 3)
        assert row.last_error is not None
        assert "gave up after 3 attempts" in row.last_error
        assert "injected failure" in row.last_error

        a2 = ev(A, 2)  # a dead event no longer holds its channel back
        await rig.enqueue(a2)
        assert await rig.drain() == 1
        assert ids(fake.published) == [a2.id]
        assert fake.published[0].seq == 2
        [dead] = await rig.outbox.dead()
        assert dead.event_id == a1.id and "gave up after 3 attempts" in (dead.reason or "")


# -- permanent failures ------------------------------------------------------------------------


async def test_a_permanent_error_is_isolated_to_its_event(picky: Rig) -> None:
    a1, b1, a2, c1, a3, b2 = ev(A, 1), ev(B, 1), ev(A, 2, poison=True), ev(C, 1), ev(A, 3), ev(B, 2)
    await picky.enqueue(a1, b1, a2)
    await picky.enqueue(c1, a3, b2)
    assert await picky.drain() == 6

    rows = by_event(await stored_rows(picky.url))
    assert rows[a2.id].state == "dead"
    assert "400 Bad Request" in (rows[a2.id].last_error or "")
    assert a2.id in (rows[a2.id].last_error or "")
    assert [rows[e.id].state for e in (a1, b1, c1, a3, b2)] == ["sent"] * 5
    assert ids(picky.published(A)) == ids([a1, a3])
    assert [e.seq for e in picky.published(A)] == [1, 3]  # seq 2 is the dead event's
    assert ids(picky.published(B)) == ids([b1, b2])
    assert ids(picky.published(C)) == [c1.id]

    a4 = ev(A, 4)  # the channel keeps flowing after its poison event
    await picky.enqueue(a4)
    assert await picky.drain() == 1
    assert ids(picky.published(A)) == ids([a1, a3, a4])


async def test_a_refused_first_event_is_dead_and_the_rest_of_the_batch_published(
    rig: Rig,
) -> None:
    """The vendor refuses the batch, then the first event alone; the others go through."""
    a1, b1, a2 = ev(A, 1), ev(B, 1), ev(A, 2)
    await rig.enqueue(a1, b1, a2)
    rig.fake.fail_next(2, PublishRejected("422 refused", adapter=rig.fake.name))
    assert await rig.drain() == 3
    rows = by_event(await stored_rows(rig.url))
    assert (rows[a1.id].state, rows[b1.id].state, rows[a2.id].state) == ("dead", "sent", "sent")
    assert "422 refused" in (rows[a1.id].last_error or "")
    assert ids(rig.fake.published) == ids([b1, a2])


async def test_payload_too_large_in_the_table_is_dead_lettered_by_event_id(
    outbox_url: str,
) -> None:
    small = Limits(max_payload_bytes=100, max_events_per_batch=10)
    fake = FakeAdapter(limits=small)
    async with rigged(outbox_url, fake) as rig:
        a1, big, a3, b1 = ev(A, 1), ev(A, 2, blob="x" * 500), ev(A, 3), ev(B, 1)
        await rig.enqueue(a1)
        # Written behind the outbox's back (an older version, another writer): no check.
        await insert_raw(rig.url, big.id, big.channel, big.type, big.data_json.decode())
        await rig.enqueue(a3, b1)
        assert await rig.drain() == 4

        rows = by_event(await stored_rows(rig.url))
        assert rows[big.id].state == "dead"
        reason = rows[big.id].last_error or ""
        assert big.id in reason and "100 bytes" in reason
        assert [rows[e.id].state for e in (a1, a3, b1)] == ["sent"] * 3
        assert ids(rig.published(A)) == ids([a1, a3])
        assert ids(rig.published(B)) == [b1.id]


# -- dead letters: the Outbox API ------------------------------------------------------------


async def test_dead_letters_are_listed_retried_and_purged(picky: Rig) -> None:
    assert isinstance(picky.fake, PickyAdapter)
    a1, bad_a, bad_b, b1 = ev(A, 1), ev(A, 2, poison=True), ev(B, 1, poison=True), ev(B, 2)
    await picky.enqueue(a1, bad_a, bad_b, b1)
    assert await picky.drain() == 4

    dead = await picky.outbox.dead()
    assert [(d.event_id, d.channel, d.type) for d in dead] == [
        (bad_a.id, A, "order.updated"),
        (bad_b.id, B, "order.updated"),
    ]
    assert all("400 Bad Request" in (d.reason or "") and d.attempts == 1 for d in dead)
    assert [d.event_id for d in await picky.outbox.dead(channel=B)] == [bad_b.id]
    assert len(await picky.outbox.dead(limit=1)) == 1
    status = await picky.outbox.status()
    assert (status.pending, status.dead, status.sent) == (0, 2, 2)

    assert await picky.outbox.retry_dead("no-such-event") == 0
    picky.fake.cured = True
    assert await picky.outbox.retry_dead(bad_a.id) == 1
    status = await picky.outbox.status()
    assert (status.pending, status.dead) == (1, 1)
    assert status.oldest_pending_seconds is not None and status.oldest_pending_seconds >= 0
    assert await picky.drain() == 1
    assert ids(picky.published(A)) == ids([a1, bad_a])
    assert [d.event_id for d in await picky.outbox.dead()] == [bad_b.id]

    assert await picky.outbox.purge_dead(channel=A) == 0  # nothing dead there any more
    assert await picky.outbox.purge_dead(channel=B) == 1
    assert await picky.outbox.dead() == []
    remaining = {row.event_id: row.state for row in await stored_rows(picky.url)}
    assert remaining == {a1.id: "sent", bad_a.id: "sent", b1.id: "sent"}
    status = await picky.outbox.status()
    assert (status.pending, status.dead, status.sent) == (0, 0, 3)
    assert status.oldest_pending_seconds is None
    assert status.sent_last_minute == 3


async def test_retry_and_purge_without_ids_take_every_dead_event(picky: Rig) -> None:
    assert isinstance(picky.fake, PickyAdapter)
    poisoned = [ev(channel, n, poison=True) for n, channel in enumerate((A, B, C, A))]
    await picky.enqueue(*poisoned)
    assert await picky.drain() == 4
    assert len(await picky.outbox.dead()) == 4
    assert await picky.outbox.purge_dead(poisoned[0].id, channel=B) == 0  # both filters apply
    assert await picky.outbox.purge_dead(poisoned[0].id) == 1
    picky.fake.cured = True
    assert await picky.outbox.retry_dead() == 3
    assert await picky.drain() == 3
    assert sorted(ids(picky.fake.published)) == sorted(ids(poisoned[1:]))


# -- dead letters and the relay: the CLI -----------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No REALTIME_BRIDGE_* variable or realtime_bridge.toml from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("REALTIME_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("sqlite")]
)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An outbox database URL with no schema yet, of each dialect."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_empty_url"))
    return sqlite_url_of(tmp_path / "cli.db")


async def poison_through_a_relay(url: str, *events: Event) -> None:
    """Enqueue and drain through a picky vendor: the poison events end up dead."""
    async with rigged(url, PickyAdapter()) as rig:
        await rig.enqueue(*events)
        await rig.drain()


@pytest.mark.redis
@pytest.mark.usefixtures("cli_env")
def test_cli_migrate_status_dead_and_relay(
    capsys: pytest.CaptureFixture[str],
    empty_database: str,
    redis_server: str,
    redis_prefix: str,
) -> None:
    db = ("--database", empty_database)
    code, out, _ = cli(capsys, "outbox", "migrate", *db)
    assert (code, out.strip()) == (0, "applied: 0001_initial")
    code, out, _ = cli(capsys, "outbox", "migrate", *db)
    assert (code, out.strip()) == (0, "the outbox schema is up to date")

    good, bad, later = ev(A, 1), ev(A, 2, poison=True), ev(B, 1, poison=True)
    run_async(lambda: poison_through_a_relay(empty_database, good, bad, later))

    code, out, _ = cli(capsys, "outbox", "status", "--json", *db)
    status = json.loads(out)
    assert code == 0
    assert {k: status[k] for k in ("pending", "waiting_retry", "dead", "sent")} == {
        "pending": 0,
        "waiting_retry": 0,
        "dead": 2,
        "sent": 1,
    }
    code, out, _ = cli(capsys, "outbox", "status", *db)
    assert code == 0 and "dead" in out and "2" in out

    code, out, _ = cli(capsys, "outbox", "dead", "list", "--json", *db)
    listed = json.loads(out)
    assert [d["id"] for d in listed] == [bad.id, later.id]
    assert all("400 Bad Request" in d["reason"] for d in listed)
    code, out, _ = cli(capsys, "outbox", "dead", "list", "--channel", B, *db)
    assert later.id in out and bad.id not in out

    code, _, err = cli(capsys, "outbox", "dead", "retry", *db)
    assert code == 2 and "name event ids, --channel CHANNEL, or --all" in err

    code, out, _ = cli(capsys, "outbox", "dead", "retry", bad.id, *db)
    assert (code, out.strip()) == (0, "1 dead event(s) queued again")
    code, out, _ = cli(capsys, "outbox", "status", "--json", *db)
    assert json.loads(out)["pending"] == 1

    redis_url = f"{redis_server}?prefix={redis_prefix}&history=100"
    run_async(lambda: no_relay_connected(empty_database))
    code, out, _ = cli(capsys, "relay", "--drain", "--url", redis_url, *db)
    assert (code, out.strip()) == (0, "drained: 1 event(s) published")

    async def redis_history() -> list[Event]:
        reader = RedisAdapter.from_url(redis_url)
        try:
            return list((await reader.history(A, limit=10)).events)
        finally:
            await reader.aclose()

    [published] = run_async(redis_history)
    assert (published.id, published.seq) == (bad.id, 2)

    code, out, _ = cli(capsys, "outbox", "dead", "purge", "--all", *db)
    assert (code, out.strip()) == (0, "1 dead event(s) purged")
    code, out, _ = cli(capsys, "outbox", "dead", "list", *db)
    assert (code, out.strip()) == (0, "no dead events")
    rows = run_async(lambda: stored_rows(empty_database))
    assert {row.event_id: row.state for row in rows} == {good.id: "sent", bad.id: "sent"}


# -- history from the outbox -------------------------------------------------------------------


async def test_history_comes_from_the_outbox_when_the_vendor_keeps_none(outbox_url: str) -> None:
    vendor = PublishOnly()
    bridge = Bridge(vendor)
    async with Outbox(outbox_url, bridge=bridge) as outbox:
        assert bridge.history_source is outbox
        a = [ev(A, n) for n in range(1, 6)]
        b = [ev(B, n) for n in range(1, 3)]
        await enqueue_committed(outbox_url, outbox, *a[:3], b[0])
        await enqueue_committed(outbox_url, outbox, *a[3:], b[1])
        relay = outbox.relay()
        try:
            assert await relay.drain() == 7
        finally:
            await relay.aclose()
        assert len(vendor.published) == 7
        pending = ev(A, 6)  # committed but not yet published: not history
        await enqueue_committed(outbox_url, outbox, pending)

        latest = await bridge.history(A, limit=2)
        assert ids(latest.events) == ids(a[3:]) and latest.has_more
        assert [e.seq for e in latest] == [4, 5]
        assert all(e.ts is not None for e in latest)
        assert [e.data for e in latest] == [{"n": 4}, {"n": 5}]
        older = await bridge.history(A, limit=2, before=a[3].id)
        assert ids(older.events) == ids(a[1:3]) and older.has_more
        oldest = await bridge.history(A, limit=2, before=a[1].id)
        assert ids(oldest.events) == [a[0].id] and not oldest.has_more
        newer = await bridge.history(A, limit=2, after=a[0].id)
        assert ids(newer.events) == ids(a[1:3]) and newer.has_more
        newest = await bridge.history(A, limit=2, after=a[3].id)
        assert ids(newest.events) == [a[4].id] and not newest.has_more
        everything = await bridge.history(A)
        assert ids(everything.events) == ids(a) and not everything.has_more
        assert ids((await bridge.history(B)).events) == ids(b)
        assert len(await bridge.history("orders.none")) == 0

        for cursor in ("no-such-event", b[0].id, pending.id):  # unknown, other channel, unsent
            with pytest.raises(CursorNotFound):
                await bridge.history(A, before=cursor)
            with pytest.raises(CursorNotFound):
                await bridge.history(A, after=cursor)


async def test_a_vendor_with_history_answers_it_itself(outbox_url: str) -> None:
    fake = FakeAdapter()
    bridge = Bridge(fake)
    async with Outbox(outbox_url, bridge=bridge):
        assert bridge.history_source is None


# -- retention -----------------------------------------------------------------------------------


async def test_retention_deletes_old_sent_rows_in_batches(outbox_url: str) -> None:
    hour = 3600.0
    async with Outbox(outbox_url, bridge=Bridge(FakeAdapter()), retention=hour) as outbox:
        old = [ev(A, n) for n in range(5)]
        recent = [ev(B, n) for n in range(2)]
        await enqueue_committed(outbox_url, outbox, *old, *recent)
        relay = outbox.relay(poll_interval=0.05)
        try:
            assert await relay.drain() == 7
            waiting = ev(C, 1)
            await enqueue_committed(outbox_url, outbox, waiting)  # pending: never deleted
            await age_sent(outbox_url, ids(old), 2 * hour)

            assert await relay.database.delete_sent(older_than=hour, batch=2) == 2
            await relay._delete_expired(batch=2)  # the relay's cleanup: batches until done
            left = {row.event_id: row.state for row in await stored_rows(outbox_url)}
            assert left == {**dict.fromkeys(ids(recent), "sent"), waiting.id: "pending"}
        finally:
            await relay.aclose()

        # The running relay cleans up too (and publishes what is pending).
        await age_sent(outbox_url, ids(recent), 2 * hour)
        async with outbox.relay(poll_interval=0.05):

            async def cleaned() -> bool:
                rows = await stored_rows(outbox_url)
                return [(row.event_id, row.state) for row in rows] == [(waiting.id, "sent")]

            await wait_until(cleaned)
        assert len(await outbox.history(A)) == 0  # history is gone with the rows


# -- running in the background ------------------------------------------------------------------


async def test_a_running_relay_picks_up_rows_committed_after_it_started(rig: Rig) -> None:
    """PostgreSQL wakes the relay with NOTIFY (its poll interval here is a minute); SQLite
    has no NOTIFY, so there the relay's short poll interval finds the rows."""
    poll = 60.0 if dialect_of(rig.url) == "postgres" else 0.05
    async with rig.outbox.relay(poll_interval=poll) as relay:

        async def idle() -> bool:
            return relay.stats.cycles >= 1

        await wait_until(idle)
        events = [ev(A, 1), ev(B, 1), ev(A, 2)]
        await rig.enqueue(*events)

        async def published() -> bool:
            return len(rig.fake.published) == 3

        await wait_until(published)
        more = ev(A, 3)
        await rig.enqueue(more)

        async def published_more() -> bool:
            return len(rig.fake.published) == 4

        await wait_until(published_more)
    assert ids(rig.published(A)) == ids([events[0], events[2], more])
    assert [e.seq for e in rig.published(A)] == [1, 2, 3]
    assert relay.stats.published == 4
    assert all(row.state == "sent" for row in await stored_rows(rig.url))


async def test_stop_ends_run(rig: Rig) -> None:
    relay = rig.outbox.relay(poll_interval=60.0)
    task = asyncio.create_task(relay.run())
    try:

        async def idle() -> bool:
            return relay.stats.cycles >= 1

        await wait_until(idle)
        assert not task.done()
        relay.stop()
        await asyncio.wait_for(task, timeout=20)  # a bound: run() returns, not a timing claim
    finally:
        if not task.done():
            task.cancel()
        await relay.aclose()
    assert task.exception() is None


async def test_leaving_the_context_at_once_stops_the_relay(rig: Rig) -> None:
    """An app whose startup fails right after entering the relay must still shut down."""

    async def enter_and_leave() -> None:
        async with rig.outbox.relay(poll_interval=60.0):
            pass

    await asyncio.wait_for(enter_and_leave(), timeout=20)  # a bound on a hang, not a timing


async def test_stop_right_after_starting_run_as_a_task_is_not_forgotten(rig: Rig) -> None:
    relay = rig.outbox.relay(poll_interval=60.0)
    task = asyncio.create_task(relay.run())
    relay.stop()  # e.g. the app's shutdown came before the task first ran
    try:
        await asyncio.wait_for(task, timeout=20)
    finally:
        await relay.aclose()


class GatedAdapter(FakeAdapter):
    """Publishing waits for ``gate``: a batch stays in hand until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.in_hand = asyncio.Event()

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        self.in_hand.set()
        await self.gate.wait()
        return await super().publish(events)


async def test_stop_finishes_the_batch_in_hand(outbox_url: str) -> None:
    gated = GatedAdapter()
    async with rigged(outbox_url, gated, poll_interval=60.0) as rig:
        events = [ev(A, 1), ev(B, 1)]
        await rig.enqueue(*events)
        task = asyncio.create_task(rig.relay.run())
        try:
            await wait_until(lambda: _is_set(gated.in_hand))
            rig.relay.stop()
            await asyncio.sleep(0)
            assert not task.done()  # still holding the batch: stop does not abandon it
            gated.gate.set()
            await asyncio.wait_for(task, timeout=20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert ids(gated.published) == ids(events)
        assert [row.state for row in await stored_rows(outbox_url)] == ["sent", "sent"]


async def test_cancelling_the_owner_cancels_the_relay_and_is_not_swallowed(
    outbox_url: str,
) -> None:
    """Cancelling the task that leaves the relay's context must cancel that task (an app's
    shutdown deadline), and leave the batch in hand pending for the next relay."""
    gated = GatedAdapter()
    async with Outbox(outbox_url, bridge=Bridge(gated)) as outbox:
        event = ev(A, 1)
        await enqueue_committed(outbox_url, outbox, event)

        leaving = asyncio.Event()

        async def owner() -> None:
            async with outbox.relay(poll_interval=60.0):
                await gated.in_hand.wait()
                leaving.set()
            # Leaving waits for the batch in hand, which never finishes: cancelled there.

        task = asyncio.create_task(owner())
        await wait_until(lambda: _is_set(leaving))  # the owner is inside __aexit__ now
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=20)
        assert task in done and task.cancelled()
        [row] = await stored_rows(outbox_url)
        assert row.state == "pending"  # at least once: the next relay publishes it
        assert gated.published == []


async def _is_set(flag: asyncio.Event) -> bool:
    return flag.is_set()
