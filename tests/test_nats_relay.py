"""The relay publishing to NATS JetStream: the outbox's guarantees hold on this adapter too.

Each test runs on PostgreSQL and on SQLite (``outbox_url``), with a real relay and the
real NATS adapter: the drain in order with seqs, a relay that died after NATS stored its
batch but before recording it (the batch goes out again; JetStream drops it by id, so
each event is stored once), and a NATS outage (the rows back off and stay pending,
then go out once the server is back, each once). Rows are read back with plain SQL
(``outbox_fixtures``); a row waiting for its retry is made due by moving
``next_attempt_at`` into the past, so nothing waits out a backoff or asserts a duration.
"""

from __future__ import annotations

import contextlib
from typing import Any

from conftest_nats import adapter_url, eventually_true, running_nats
from outbox_fixtures import enqueue_committed, make_due, relayed, stored_rows

from realtime_bridge import Event, VendorUnavailable
from realtime_bridge.adapters.nats import NatsAdapter, NatsNames

pytest_plugins = ["conftest_outbox"]

A, B, C = "orders.a", "orders.b", "orders.c"


def ev(channel: str, n: int, **data: Any) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n, **data})


def ids(events: Any) -> list[str]:
    return [event.id for event in events]


async def test_the_relay_drains_the_outbox_to_nats_in_order_with_seqs(
    outbox_url: str, nats_server: str, nats_names: NatsNames
) -> None:
    url = adapter_url(nats_server, nats_names, history=100)
    sent: dict[str, list[Event]] = {A: [], B: [], C: []}
    async with relayed(outbox_url, NatsAdapter.from_url(url), batch_size=4) as (outbox, relay):
        for n in range(6):  # interleaved commits, two per transaction
            first, second = ev((A, B, C)[n % 3], n), ev((A, B, C)[(n + 1) % 3], n)
            await enqueue_committed(outbox_url, outbox, first, second)
            sent[first.channel].append(first)
            sent[second.channel].append(second)
        assert await relay.drain() == 12
    assert [row.state for row in await stored_rows(outbox_url)] == ["sent"] * 12
    async with NatsAdapter.from_url(url) as reader:
        for channel, events in sent.items():
            page = await reader.history(channel, limit=100)
            assert ids(page) == ids(events), channel
            assert [event.seq for event in page] == list(range(1, len(events) + 1))
            assert [event.data for event in page] == [event.data for event in events]


async def test_a_relay_that_died_after_nats_stored_its_batch_stores_nothing_twice(
    outbox_url: str, nats_server: str, nats_names: NatsNames
) -> None:
    url = adapter_url(nats_server, nats_names, history=100)
    events = [ev((A, B)[n % 2], n) for n in range(6)]
    async with relayed(outbox_url, NatsAdapter.from_url(url)) as (outbox, relay):
        await enqueue_committed(outbox_url, outbox, *events)
        # The first relay claims the rows and NATS stores them, then it dies unrecorded.
        await relay.database.rebalance()
        claimed = await relay.database.claim(10)
        async with NatsAdapter.from_url(url) as dying:
            stored_by_the_dead = await dying.publish([row.event() for row in claimed])
        assert stored_by_the_dead.published == len(events)
        rows = await stored_rows(outbox_url)
        assert [row.state for row in rows] == ["pending"] * len(events)

        assert await relay.drain() == len(events)  # the same rows, claimed again and resent
        assert relay.stats.published == len(events)
    assert [row.state for row in await stored_rows(outbox_url)] == ["sent"] * len(events)
    async with NatsAdapter.from_url(url) as reader:
        for channel in (A, B):
            page = await reader.history(channel, limit=100)
            assert ids(page) == [e.id for e in events if e.channel == channel]  # each once
            assert [event.seq for event in page] == [1, 2, 3]


async def test_a_nats_outage_backs_off_then_everything_goes_out_once(outbox_url: str) -> None:
    events = [ev((A, B)[n % 2], n) for n in range(4)]
    later = [ev(A, 10), ev(C, 11)]
    with running_nats() as server:
        url = f"{server.url}?history=100&timeout=2"
        adapter = NatsAdapter.from_url(url)
        async with relayed(outbox_url, adapter) as (outbox, relay):
            await enqueue_committed(outbox_url, outbox, *events[:2])
            assert await relay.drain() == 2  # NATS is up: sent
            server.stop()
            await enqueue_committed(outbox_url, outbox, *events[2:])
            assert await relay.drain() == 2  # claimed, failed, backed off

            rows = {row.event_id: row for row in await stored_rows(outbox_url)}
            for event in events[2:]:
                row = rows[event.id]
                assert (row.state, row.attempts) == ("pending", 1)
                assert row.last_error is not None and "NATS" in row.last_error

            server.start()

            async def reconnected() -> bool:
                with contextlib.suppress(VendorUnavailable):
                    await adapter.ping()
                    return True
                return False

            await eventually_true(reconnected, "the adapter to reconnect by itself")
            await enqueue_committed(outbox_url, outbox, *later)
            await make_due(outbox_url)
            await relay.drain()
        assert {row.state for row in await stored_rows(outbox_url)} == {"sent"}
        async with NatsAdapter.from_url(url) as reader:
            everything = [*events, *later]
            for channel in (A, B, C):
                page = await reader.history(channel, limit=100)
                assert ids(page) == [e.id for e in everything if e.channel == channel]
