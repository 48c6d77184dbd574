"""The failure modes every release rehearses (DESIGN.md), each done for real.

Servers are private ``redis-server`` processes (tests/redis_servers.py) that a
test may SIGKILL and restart; subscribers are real pub/sub connections. The
Bridge's retry sleep and breaker clock are injected, so nothing here waits on
a backoff or asserts a duration; where a process or the server's clock must
move, a bounded poll waits for it.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_servers import HOST, STARTUP_TIMEOUT, LiveTap, RedisProcess, running_redis

from realtime_bridge import (
    AuthenticationFailed,
    Bridge,
    Event,
    Member,
    PermanentError,
    PublishReceipt,
    PublishResult,
    RetryPolicy,
)
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.adapters.redis import RedisAdapter

RESET_TIMEOUT = 30.0


class FakeClock:
    """The breaker's clock: moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """The retry policy's sleep: records each delay, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class CountingRedisAdapter(RedisAdapter):
    """A RedisAdapter that counts its publish calls and records which ids Redis acknowledged.

    ``after_ack`` runs after each acknowledged chunk: a test uses it to kill the
    server between two chunks of one Bridge batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.acknowledged: list[str] = []
        self.after_ack: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def open(cls, url: str, **options: Any) -> CountingRedisAdapter:
        adapter = cls.from_url(url, **options)
        assert isinstance(adapter, CountingRedisAdapter)
        return adapter

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        self.calls += 1
        result = await super().publish(events)
        dropped = set(result.duplicates)
        self.acknowledged += [event.id for event in events if event.id not in dropped]
        if self.after_ack is not None:
            await self.after_ack()
        return result


def _prefix() -> str:
    return f"rbfm-{uuid.uuid4().hex[:8]}"


def _uuid7(unix_ms: int) -> str:
    """A version-7 UUID for a given millisecond: an id made by a client with that clock."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms << 80) | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def _events(channels: Sequence[str], count: int, **data: object) -> list[Event]:
    return [
        Event(channel=channels[n % len(channels)], type="order.updated", data={"n": n, **data})
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RedisProcess]:
    """A private redis-server for the tests that do not kill theirs."""
    with running_redis() as server:
        yield server


@pytest.fixture
def doomed_server() -> Iterator[RedisProcess]:
    """A private redis-server this test may kill and restart."""
    with running_redis() as server:
        yield server


@pytest.fixture
async def redis_client(shared_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    async with aioredis.Redis(host=HOST, port=shared_server.port) as client:
        yield client


async def test_vendor_outage_fails_over_then_recovers(doomed_server: RedisProcess) -> None:
    primary = CountingRedisAdapter.open(doomed_server.url(query=f"prefix={_prefix()}"))
    fallback = MemoryAdapter()
    sleep, clock = FakeSleep(), FakeClock()
    bridge = Bridge(
        primary,
        fallbacks=[fallback],
        retry=RetryPolicy(attempts=2, sleep=sleep),
        failure_threshold=2,
        reset_timeout=RESET_TIMEOUT,
        clock=clock,
    )
    async with bridge:
        up = Event(channel="orders.1", type="order.updated", data={"phase": "up"})
        receipt = await bridge.publish(up)
        assert (receipt.adapter, receipt.failed_over) == (primary.name, False)

        doomed_server.kill()

        # The outage: two attempts (one backoff sleep), then the fallback; the breaker opens.
        down = Event(channel="orders.1", type="order.updated", data={"phase": "down"})
        receipt = await bridge.publish(down)
        assert (receipt.adapter, receipt.failed_over, receipt.published) == (
            fallback.name,
            True,
            1,
        )
        assert (primary.calls, len(sleep.delays)) == (3, 1)

        # Breaker open: Redis is not even called, and nobody waits.
        skipped = Event(channel="orders.1", type="order.updated", data={"phase": "skipped"})
        receipt = await bridge.publish(skipped)
        assert (receipt.adapter, receipt.failed_over) == (fallback.name, True)
        assert (primary.calls, len(sleep.delays)) == (3, 1)
        assert bridge.stats()[primary.name]["skipped"] == 1
        assert "cannot reach Redis" in str(bridge.stats()[primary.name]["last_error"])

        # Cool-down over, Redis still down: the one half-open probe fails and reopens it.
        clock.advance(RESET_TIMEOUT)
        probe_fails = Event(channel="orders.1", type="order.updated", data={"phase": "probe"})
        receipt = await bridge.publish(probe_fails)
        assert (receipt.adapter, primary.calls) == (fallback.name, 4)
        receipt = await bridge.publish(Event(channel="orders.1", type="order.updated"))
        assert (receipt.adapter, primary.calls) == (fallback.name, 4)
        calls_while_down = primary.calls
        memory_only = [e.id for e in await fallback.history("orders.1")]

        doomed_server.restart()
        clock.advance(RESET_TIMEOUT)

        # The half-open probe reaches the restarted Redis and closes the breaker.
        back = Event(channel="orders.1", type="order.updated", data={"phase": "back"})
        receipt = await bridge.publish(back)
        assert (receipt.adapter, receipt.failed_over) == (primary.name, False)
        assert primary.calls == calls_while_down + 1
        later = _events(["orders.1"], 3, phase="later")
        receipt = await bridge.publish_many(later)
        assert (receipt.adapter, receipt.failed_over, receipt.published) == (primary.name, False, 3)

        # The restarted Redis kept nothing (no persistence); what it holds now is only
        # what it acknowledged since; the outage's events are in the fallback, once.
        history = await bridge.history("orders.1")
        assert [e.id for e in history] == [back.id, *(e.id for e in later)]
        assert memory_only[:2] == [down.id, skipped.id]
        assert len(memory_only) == 4
        assert not set(memory_only) & {e.id for e in history}


async def test_duplicate_events_dropped_across_relays(shared_server: RedisProcess) -> None:
    url = shared_server.url(query=f"prefix={_prefix()}")
    channels = ["orders.7", "orders.8"]
    events = _events(channels, 20)
    relay_a, relay_b = Bridge.from_url(url), Bridge.from_url(url)
    assert isinstance(relay_a.primary, RedisAdapter)
    topics = [relay_a.primary.keys(channel).topic for channel in channels]
    async with relay_a, relay_b, LiveTap(shared_server.port, topics) as tap:
        # Two relays claim the same outbox rows (a lost lease) and publish them at once.
        first, second = await asyncio.gather(
            relay_a.publish_many(events), relay_b.publish_many(events)
        )
        assert first.published + second.published == len(events)
        assert sorted([*first.duplicates, *second.duplicates]) == sorted(e.id for e in events)
        # A relay retries a batch whose acknowledgement it never saw: all dropped.
        retried = await relay_b.publish_many(events[5:12])
        assert (retried.published, len(retried.duplicates)) == (0, 7)

        # Pub/sub keeps order per connection: once the sentinels arrive, all earlier
        # messages (and any duplicate among them) have arrived too.
        sentinels = [Event(channel=channel, type="sentinel") for channel in channels]
        await relay_a.publish_many(sentinels)
        await tap.collect_ids(s.id for s in sentinels)

        expected = [*events, *sentinels]
        assert Counter(tap.ids()) == Counter(e.id for e in expected)  # each exactly once
        for channel in channels:
            page = await relay_a.history(channel, limit=100)
            assert [e.id for e in page] == [e.id for e in expected if e.channel == channel]


async def test_a_burst_of_concurrent_publishes_waits_for_a_connection(
    shared_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    """400 publishes at once on a pool of 8: they queue for a connection, none is refused."""
    url = shared_server.url(query=f"prefix={_prefix()}&max_connections=8")
    events = _events([f"burst.{n}" for n in range(400)], 400)
    before = len(await redis_client.client_list())
    async with Bridge.from_url(url) as bridge:
        receipts = await asyncio.gather(*(bridge.publish(event) for event in events))
        assert sum(receipt.published for receipt in receipts) == len(events)
        opened = len(await redis_client.client_list()) - before
        assert 1 <= opened <= 8, f"the pool opened {opened} connections, max_connections=8"


async def test_clock_skew_does_not_reorder_history(
    shared_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    url = shared_server.url(query=f"prefix={_prefix()}")
    now = datetime.now(UTC)

    def skewed(offset: timedelta, name: str) -> Event:
        """An event from a relay whose clock is off by ``offset``: id and ts both skewed."""
        at = now + offset
        return Event(
            id=_uuid7(int(at.timestamp() * 1000)),
            channel="orders.9",
            type="order.updated",
            data={"name": name},
            ts=at,
        )

    # Publish order differs from every client-side order (id, ts) on purpose.
    ahead = skewed(timedelta(days=1), "ahead")
    behind = skewed(-timedelta(days=365), "behind")
    on_time = skewed(timedelta(0), "on_time")
    far_behind = skewed(-timedelta(days=3650), "far_behind")
    far_ahead = skewed(timedelta(days=3650), "far_ahead")
    published = [ahead, behind, on_time, far_behind, far_ahead]
    assert sorted(published, key=lambda e: e.id) != published

    async with Bridge.from_url(url) as bridge:
        assert isinstance(bridge.primary, RedisAdapter)
        keys = bridge.primary.keys("orders.9")
        async with LiveTap(shared_server.port, [keys.topic]) as tap:
            for event in (ahead, behind, on_time):
                await bridge.publish(event)
            await bridge.publish_many([far_behind, far_ahead])  # one batch, skewed both ways
            await tap.collect_ids(e.id for e in published)

        ids = [e.id for e in published]
        assert [e.id for e in await bridge.history("orders.9")] == ids
        assert [e.id for e in await bridge.history("orders.9", after=ahead.id)] == ids[1:]
        assert [e.id for e in await bridge.history("orders.9", before=on_time.id)] == ids[:2]
        assert [e.ts for e in await bridge.history("orders.9")] == [e.ts for e in published]

        # The order comes from the server: stream entry ids (Redis's clock) ascend in
        # publish order, live and stored alike.
        def entry_key(entry: str) -> tuple[int, int]:
            ms, _, seq = entry.partition("-")
            return int(ms), int(seq)

        live_entries = [m.entry for m in tap.messages]
        assert [m.event.id for m in tap.messages] == ids
        assert live_entries == sorted(live_entries, key=entry_key)
        stored = await redis_client.xrange(keys.stream)
        assert [entry.decode() for entry, _ in stored] == live_entries


async def test_presence_expires_by_server_clock(
    shared_server: RedisProcess,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapter = RedisAdapter.from_url(shared_server.url(query=f"prefix={_prefix()}"))
    keys = adapter.keys("presence-room.1")

    async def server_ms() -> int:
        seconds, micros = await redis_client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # This client's wall clock is an hour ahead; the adapter must not care.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    try:
        before = await server_ms()
        await adapter.enter_presence("presence-room.1", Member("brief", {"n": 1}), ttl=0.3)
        after = await server_ms()
        await adapter.enter_presence("presence-room.1", Member("steady"), ttl=60)

        # The deadline is the server's TIME at entry plus the ttl, not the client's clock.
        deadline = await redis_client.zscore(keys.presence, "brief")
        assert deadline is not None
        assert before + 300 <= deadline <= after + 300
        assert [m.id for m in await adapter.presence("presence-room.1")] == ["brief", "steady"]

        # Poll (bounded) until the server's clock passes the deadline and drops the member.
        give_up = time.monotonic() + STARTUP_TIMEOUT
        while [m.id for m in await adapter.presence("presence-room.1")] != ["steady"]:
            assert time.monotonic() < give_up, "the brief member never expired"
            await asyncio.sleep(0.05)
        assert await server_ms() >= deadline
        assert await redis_client.hget(keys.members, "brief") is None  # info dropped too
        occupancy = await adapter.occupancy("presence-room.1")
        assert occupancy.members == 1
    finally:
        await adapter.aclose()


async def test_wrong_password_is_one_clear_error() -> None:
    right, wrong = "correct-horse-battery", "wrong-staple-9f3a"
    with running_redis(password=right) as server:
        for bad_url in (server.url(password=wrong), server.url(password="")):
            sleep = FakeSleep()
            bridge = Bridge.from_url(
                bad_url, fallback_urls=["memory://"], retry=RetryPolicy(attempts=4, sleep=sleep)
            )
            fallback = bridge.adapters[1]
            async with bridge:
                with pytest.raises(AuthenticationFailed) as caught:
                    await bridge.publish(Event(channel="orders.1", type="order.updated"))
                stats = bridge.stats()[bridge.primary.name]

            error = caught.value
            assert isinstance(error, PermanentError)
            assert (sleep.delays, stats["calls"]) == ([], 1)  # not retried
            assert len(await fallback.history("orders.1")) == 0  # and not failed over
            text = str(error)
            assert "\n" not in text
            assert error.adapter == bridge.primary.name
            assert text.startswith(error.adapter + ": ")
            for shown in (text, repr(error), repr(bridge), str(stats)):
                assert wrong not in shown
                assert right not in shown
            if bad_url == server.url(password=wrong):
                assert error.adapter == f"redis://:***@{HOST}:{server.port}/0"

        async with Bridge.from_url(server.url()) as bridge:
            event = Event(channel="orders.1", type="order.updated")
            receipt = await bridge.publish(event)
            assert (receipt.published, receipt.failed_over) == (1, False)
            assert [e.id for e in await bridge.history("orders.1")] == [event.id]
            assert right not in repr(bridge)


async def test_server_restart_mid_batch_loses_nothing_acknowledged(
    doomed_server: RedisProcess,
) -> None:
    """At-least-once across a crash: every batch is acknowledged by some adapter, and each
    acknowledged event is somewhere a client can get it.

    Redis runs without persistence, so a SIGKILL loses its history; what it
    acknowledged before dying is witnessed by a live subscriber (the fan-out
    already happened). The kill lands between two chunks of one Bridge batch,
    so that batch is half Redis, half fallback.
    """
    channels = ["orders.1", "orders.2"]
    primary = CountingRedisAdapter.open(doomed_server.url(query=f"prefix={_prefix()}"), max_batch=4)
    fallback = MemoryAdapter(history=1000)
    topics = [primary.keys(channel).topic for channel in channels]
    clock = FakeClock()
    bridge = Bridge(
        primary,
        fallbacks=[fallback],
        retry=RetryPolicy(attempts=2, sleep=FakeSleep()),
        failure_threshold=2,
        reset_timeout=RESET_TIMEOUT,
        clock=clock,
    )
    batches = [_events(channels, 10, batch=b) for b in range(6)]
    receipts: list[PublishReceipt] = []
    taps: list[LiveTap] = []
    kill_at = len(batches[0]) + 8  # after the second chunk (of 4) of the second batch

    async def crash_when_due() -> None:
        if len(primary.acknowledged) == kill_at:
            # What Redis acknowledged was fanned out before it died: let the tap read it.
            await taps[-1].collect_ids(primary.acknowledged)
            doomed_server.kill()

    primary.after_ack = crash_when_due
    try:
        async with bridge:
            taps.append(await LiveTap(doomed_server.port, topics).start())
            for number, batch in enumerate(batches):
                if number == 3:  # the server comes back empty; a new subscriber joins it
                    await taps[-1].aclose()
                    doomed_server.restart()
                    taps.append(await LiveTap(doomed_server.port, topics).start())
                    clock.advance(RESET_TIMEOUT)
                receipts.append(await bridge.publish_many(batch))  # acknowledged, or raises
            await taps[-1].collect_ids(primary.acknowledged[kill_at:])

            live = {message.event.id for tap in taps for message in tap.messages}
            stored: list[str] = []
            for channel in channels:
                stored += [e.id for e in await fallback.history(channel, limit=1000)]
            after_restart = set()
            for channel in channels:
                after_restart |= {e.id for e in await bridge.history(channel, limit=1000)}
    finally:
        for tap in taps:
            await tap.aclose()

    every_id = [event.id for batch in batches for event in batch]
    assert sum(receipt.published for receipt in receipts) == len(every_id)
    assert [r.failed_over for r in receipts] == [False, True, True, False, False, False]
    # Nothing acknowledged is lost: each event reached a subscriber or the fallback.
    assert set(every_id) <= live | set(stored)
    # Redis acknowledged exactly what the subscribers saw, and none of it was resent.
    assert sorted(primary.acknowledged) == sorted(live)
    assert not live & set(stored)
    assert len(stored) == len(set(stored))
    # The half of the crashed batch Redis did not acknowledge went to the fallback.
    assert {e.id for e in batches[1][:8]} <= live
    assert {e.id for e in batches[1][8:]} <= set(stored)
    # The restarted Redis holds only what it acknowledged after the restart.
    assert after_restart == set(primary.acknowledged[kill_at:])
    assert after_restart == {event.id for batch in batches[3:] for event in batch}
