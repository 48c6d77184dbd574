"""The Ably adapter, the outbox and the relay against the Ably emulator, over HTTP.

The emulator (``realtime_bridge.testing.ably``) answers as Ably's REST API does and
is held to Ably's own SDK in ``test_ably_emulator.py``; each test here serves a
private one (``serve_ably``: its own options, often a ``ManualClock``) and drives the
library at it through a real socket. What is asserted is what Ably ended up holding
(``emulator.messages``, or Ably's SDK reading it back), what the outbox table says
(plain SQL, ``outbox_fixtures``), and the errors the library raised. Faults are
injected with ``fail_next``; time moves by ``ManualClock`` and by making outbox rows
due; nothing sleeps to assert and nothing asserts a duration.

"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from ably import AblyException, AblyRest
from conftest_ably import ServeAbly, ServedAbly
from outbox_fixtures import (
    database_now,
    enqueue_committed,
    make_due,
    no_relay_connected,
    relayed,
    states,
    stored_rows,
)

from realtime_bridge import Bridge, Event, Member, Occupancy
from realtime_bridge.adapters.ably import AblyAdapter
from realtime_bridge.errors import (
    AuthenticationFailed,
    CursorNotFound,
    InvalidWebhook,
    PayloadTooLarge,
)
from realtime_bridge.testing import instant_retry
from realtime_bridge.testing.ably import AblyEmulator, ManualClock
from realtime_bridge.webhooks import WebhookKind

pytest_plugins = ["conftest_outbox"]

A, B, C = "orders.a", "orders.b", "orders.c"
TYPE = "order.updated"
PUBLISH_ROUTES = ("/channels/{channel}/messages", "/messages")


def ev(channel: str, n: int, **data: Any) -> Event:
    return Event(channel=channel, type=TYPE, data={"n": n, **data})


def ids(events: Sequence[Event]) -> list[str]:
    return [event.id for event in events]


def in_ably(emulator: AblyEmulator, channel: str) -> list[Event]:
    """The events Ably holds on ``channel``, oldest first, each message checked."""
    events = []
    for message in emulator.messages(channel):
        assert message.encoding == "json" and isinstance(message.data, str), message
        event = Event.decode(message.data)
        assert (message.id, message.name, event.channel) == (f"{event.id}:0", TYPE, channel)
        events.append(event)
    return events


def publishes(emulator: AblyEmulator) -> list[tuple[int, bool]]:
    """(status, injected?) of every publish request Ably answered, in order: 201 for one
    channel's message, 200 for a batch (``POST /messages``)."""
    return [
        (r.status, r.fault)
        for r in emulator.request_log
        if r.method == "POST" and r.route in PUBLISH_ROUTES
    ]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + base64.b64encode(token.encode()).decode()}


@contextlib.asynccontextmanager
async def sdk(served: ServedAbly, **options: Any) -> AsyncIterator[AblyRest]:
    """Ably's own SDK, pointed at the emulator as Ably documents for a local server."""
    settings: dict[str, Any] = {
        "endpoint": "127.0.0.1",
        "port": served.port,
        "tls": False,
        "use_binary_protocol": False,
        **options,
    }
    if "auth_callback" not in settings and "token" not in settings:
        settings.update(key=served.emulator.key, use_token_auth=True)
    async with AblyRest(**settings) as rest:
        yield rest


# -- (a) committed events reach Ably, in commit order ------------------------------------------


async def test_committed_events_reach_ably_in_commit_order_and_the_sdk_reads_them_back(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    served = await serve_ably()
    channels = (A, B, C)
    sent: dict[str, list[Event]] = {channel: [] for channel in channels}
    adapter = AblyAdapter.from_url(served.url())
    async with relayed(pg_url, adapter, batch_size=4) as (outbox, relay):
        for n in range(6):  # interleaved commits, two events each, across three channels
            first, second = ev(channels[n % 3], n), ev(channels[(n + 1) % 3], n)
            await enqueue_committed(pg_url, outbox, first, second)
            sent[first.channel].append(first)
            sent[second.channel].append(second)
        assert await relay.drain() == 12
        assert await relay.drain() == 0
    rows = {row.event_id: row for row in await stored_rows(pg_url)}
    assert {row.state for row in rows.values()} == {"sent"}
    assert served.emulator.requests["POST /messages"] == 3  # one batch request per claim

    async with sdk(served) as rest:
        for channel in channels:
            page = await rest.channels.get(channel).history(direction="forwards", limit=100)
            messages = page.items
            got = [Event.decode(json.dumps(message.data)) for message in messages]
            assert ids(got) == ids(sent[channel]), channel  # commit order, each once
            assert [event.seq for event in got] == list(range(1, len(got) + 1))
            assert [event.seq for event in got] == [rows[event.id].seq for event in got]
            assert [message.id for message in messages] == [f"{e.id}:0" for e in got]
            assert {message.name for message in messages} == {TYPE}
            for published, original in zip(got, sent[channel], strict=True):
                assert (published.type, published.data) == (original.type, original.data)
                assert published.ts is not None
                assert abs(published.ts.timestamp() - rows[published.id].created_at) < 1e-3


# -- (b) idempotency, end to end ---------------------------------------------------------------


async def test_a_relay_that_died_after_publishing_is_not_duplicated_by_the_next(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    """The dead relay published with its own adapter (and token), then died before
    marking; the next relay, another adapter, publishes the same rows again."""
    served = await serve_ably()
    events = [ev(A, 1), ev(B, 1), ev(A, 2)]
    async with relayed(pg_url, AblyAdapter.from_url(served.url())) as (outbox, dying):
        await enqueue_committed(pg_url, outbox, *events)
        await dying.database.rebalance()
        claimed = await dying.database.claim(10)
        await outbox.bridge.publish_many([row.event() for row in claimed])
        # ... and the process dies here: the rows are never marked sent.
    assert set(states(await stored_rows(pg_url)).values()) == {"pending"}
    assert ids(in_ably(served.emulator, A)) == ids([events[0], events[2]])

    await no_relay_connected(pg_url)
    async with relayed(pg_url, AblyAdapter.from_url(served.url())) as (_, successor):
        assert await successor.drain() == 3
        assert successor.stats.published == 3
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert publishes(served.emulator) == [(200, False), (200, False)]  # asked twice...
    assert ids(in_ably(served.emulator, A)) == ids([events[0], events[2]])  # ...stored once
    assert ids(in_ably(served.emulator, B)) == [events[1].id]
    assert [event.seq for event in in_ably(served.emulator, A)] == [1, 2]


async def test_a_publish_whose_answer_was_lost_is_retried_without_a_duplicate(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    served = await serve_ably()
    events = [ev(A, 1), ev(B, 1), ev(A, 2)]
    async with relayed(pg_url, AblyAdapter.from_url(served.url())) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        # Ably applies the batch, but its answer is lost (a 503 instead of its 200).
        served.emulator.fail_next(1, 503, path="/messages", applied=True)
        assert await relay.drain() == 3
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all("503" in (row.last_error or "") for row in rows)
        assert ids(in_ably(served.emulator, A)) == ids([events[0], events[2]])  # it went

        await make_due(pg_url)
        assert await relay.drain() == 3
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert publishes(served.emulator) == [(503, True), (200, False)]
    assert ids(in_ably(served.emulator, A)) == ids([events[0], events[2]])
    assert ids(in_ably(served.emulator, B)) == [events[1].id]


async def test_the_same_events_from_two_adapters_at_once_are_stored_once(
    serve_ably: ServeAbly,
) -> None:
    served = await serve_ably()
    events = [ev(A, n) for n in range(5)] + [ev(B, n) for n in range(3)]
    async with (
        AblyAdapter.from_url(served.url()) as first,
        AblyAdapter.from_url(served.url()) as second,
    ):
        await asyncio.gather(first.publish(events), second.publish(events[:6]))
        await second.publish([events[0]])  # one more, alone: one message, not a batch
        assert ids((await first.history(A)).events) == ids(events[:5])
    assert ids(in_ably(served.emulator, A)) == ids(events[:5])
    assert ids(in_ably(served.emulator, B)) == ids(events[5:])
    assert publishes(served.emulator) == [(200, False), (200, False), (201, False)]


async def test_ably_remembers_message_ids_for_two_minutes_only(serve_ably: ServeAbly) -> None:
    """Ably's deduplication has a window: a copy sent more than 2 minutes after the first
    is stored again. A relay's retry after a lost answer is deduplicated only within it
    (with the default base_delay of 0.5 s, the relay's backoff before its ninth attempt
    can pass 2 minutes), so past it clients' own dedupe by event id is what holds."""
    clock = ManualClock()
    served = await serve_ably(clock=clock)
    event = ev(A, 1)
    async with AblyAdapter.from_url(served.url(), clock=clock) as adapter:
        await adapter.publish([event])
        clock.advance(119)
        await adapter.publish([event])
        assert ids(in_ably(served.emulator, A)) == [event.id]
        clock.advance(2)  # 121 s after the first copy
        await adapter.publish([event])
        assert ids(in_ably(served.emulator, A)) == [event.id, event.id]
        assert ids((await adapter.history(A)).events) == [event.id, event.id]


# -- (c) outages and rate limits ---------------------------------------------------------------


async def test_an_outage_is_retried_until_ably_is_back_with_nothing_lost(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    """Five 503s in a row: the relay backs off each time; the Bridge's circuit breaker
    opens after the fifth, and the batch it refuses is left as it was (no attempt counted)
    until it half-opens; then all goes, in order."""
    served = await serve_ably()
    breaker_clock = ManualClock(0.0)
    adapter = AblyAdapter.from_url(served.url())
    bridge = Bridge(adapter, retry=instant_retry(1), clock=breaker_clock)  # 5 failures open it
    events = [ev(A, 1), ev(B, 1), ev(A, 2), ev(A, 3), ev(B, 2)]
    async with relayed(pg_url, adapter, bridge=bridge) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events[:3])
        await enqueue_committed(pg_url, outbox, *events[3:])
        await adapter.ping()  # the token first: the outage hits the publishes
        served.emulator.fail_next(5, 503)
        for attempt in range(1, 7):  # five 503s, then one refused by the open circuit
            assert await relay.drain() == 5
            rows = await stored_rows(pg_url)
            # The refused sixth is not an attempt: the vendor never saw it.
            counted = min(attempt, 5)
            assert {(row.state, row.attempts) for row in rows} == {("pending", counted)}
            assert all("50003" in (row.last_error or "") for row in rows), rows[0].last_error
            await make_due(pg_url)
        assert relay.stats.refused == 1
        assert publishes(served.emulator) == [(503, True)] * 5  # the 6th never reached Ably
        assert served.emulator.messages(A) == []

        breaker_clock.advance(30.0)  # the breaker's reset_timeout: one probe may go
        assert await relay.drain() == 5
        assert (relay.stats.retried, relay.stats.published, relay.stats.dead) == (25, 5, 0)
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert publishes(served.emulator)[-1] == (200, False)
    for channel in (A, B):
        got = in_ably(served.emulator, channel)
        assert ids(got) == ids([event for event in events if event.channel == channel])
        assert [event.seq for event in got] == list(range(1, len(got) + 1))


async def test_a_429_holds_the_relay_for_the_retry_after(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    """Ably's Retry-After is kept on every row and holds this relay, even for rows due.

    (30 s rather than 2: the relay's own hold is checked while it runs, so the wait it
    was told must outlast this test by far; nothing here measures it.)
    """
    served = await serve_ably()
    events = [ev(A, 1), ev(B, 1), ev(A, 2)]
    adapter = AblyAdapter.from_url(served.url())
    async with relayed(pg_url, adapter, base_delay=0.001) as (outbox, relay):  # backoff ~0 s
        await enqueue_committed(pg_url, outbox, *events)
        await adapter.ping()  # the token first: the 429 answers the publish
        served.emulator.fail_next(1, 429, retry_after=30)
        before = await database_now(pg_url)
        assert await relay.drain() == 3
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all(row.next_attempt_at >= before + 30 for row in rows), rows
        assert all("42910" in (row.last_error or "") for row in rows)
        assert all("retry after 30s" in (row.last_error or "") for row in rows)
        assert (relay.stats.retried, relay.stats.published) == (3, 0)

        await make_due(pg_url)  # due by the table, but this relay was told to wait
        assert await relay.drain() == 0
        assert (relay.stats.retried, relay.stats.published) == (3, 0)
        assert publishes(served.emulator) == [(429, True)]

    # Another relay, which was not told, goes by the rows: due, so it publishes them.
    await no_relay_connected(pg_url)
    async with relayed(pg_url, AblyAdapter.from_url(served.url())) as (_, other):
        assert await other.drain() == 3
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert ids(in_ably(served.emulator, A)) == ids([events[0], events[2]])
    assert [event.seq for event in in_ably(served.emulator, A)] == [1, 2]


# -- (d) events Ably refuses --------------------------------------------------------------------


async def test_events_ably_refuses_are_dead_lettered_while_the_rest_flows(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    """The emulator accepts 2,000 bytes a message, the adapter is configured for Ably's
    65,536: the adapter's own check passes, and Ably refuses (40009). In a batch, Ably
    refuses one spec (40020, naming 40009 for it); alone, the message itself."""
    served = await serve_ably(max_message_size=2000)
    adapter = AblyAdapter.from_url(served.url())
    assert adapter.limits.max_payload_bytes == 65_536
    big = ev(A, 2, blob="x" * 3000)
    a1, b1, a3 = ev(A, 1), ev(B, 1), ev(A, 3)
    async with relayed(pg_url, adapter) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, a1, big, b1, a3)
        assert await relay.drain() == 4
        rows = {row.event_id: row for row in await stored_rows(pg_url)}
        assert rows[big.id].state == "dead"
        reason = rows[big.id].last_error or ""
        assert "40009" in reason and big.id in reason
        assert states([rows[e.id] for e in (a1, b1, a3)]) == dict.fromkeys(
            ids([a1, b1, a3]), "sent"
        )
        assert (400, False) in publishes(served.emulator)  # the batch, partly refused

        alone = ev(C, 1, blob="y" * 3000)  # a claim of one: one message, refused itself
        await enqueue_committed(pg_url, outbox, alone)
        assert await relay.drain() == 1
        c2, a4 = ev(C, 2), ev(A, 4)
        await enqueue_committed(pg_url, outbox, c2, a4)
        assert await relay.drain() == 2
        dead = await outbox.dead()
        assert [d.event_id for d in dead] == [big.id, alone.id]
        assert all("40009" in (d.reason or "") for d in dead)
        assert relay.stats.dead == 2
    assert ids(in_ably(served.emulator, A)) == ids([a1, a3, a4])
    assert [event.seq for event in in_ably(served.emulator, A)] == [1, 3, 4]  # 2: the dead one
    assert ids(in_ably(served.emulator, B)) == [b1.id]
    assert ids(in_ably(served.emulator, C)) == [c2.id]


async def test_a_partly_refused_batch_names_the_refused_event(serve_ably: ServeAbly) -> None:
    served = await serve_ably(max_message_size=2000)
    big = ev(B, 1, blob="x" * 3000)
    events = [ev(A, 1), big, ev(A, 2)]
    async with AblyAdapter.from_url(served.url()) as adapter:
        with pytest.raises(PayloadTooLarge) as caught:
            await adapter.publish(events)
    assert caught.value.event_id == big.id
    assert "40009" in str(caught.value)
    # Ably's batch is not atomic across specs: the others went, and a retry of them is
    # dropped as duplicates.
    assert ids(in_ably(served.emulator, A)) == ids([events[0], events[2]])


async def test_a_channel_the_key_may_not_publish_on_is_treated_alike_alone_or_batched(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    served = await serve_ably(keys={"app.relay:secret": {"orders.*": ["publish", "history"]}})
    adapter = AblyAdapter.from_url(served.url())
    async with relayed(pg_url, adapter) as (outbox, relay):
        alone = ev("audit.1", 1)
        await enqueue_committed(pg_url, outbox, alone)
        assert await relay.drain() == 1
        [row] = await stored_rows(pg_url)
        assert (row.state, row.attempts) == ("pending", 1)  # a setup problem: retried
        assert "40160" in (row.last_error or "")

        allowed, batched = ev(A, 1), ev("audit.2", 1)
        await enqueue_committed(pg_url, outbox, allowed, batched)
        assert await relay.drain() == 2
        rows = states(await stored_rows(pg_url))
        assert rows[allowed.id] == "sent"
        assert rows[batched.id] == "pending"  # as when alone; today: "dead"


# -- (e) token auth ---------------------------------------------------------------------------


async def test_a_token_about_to_expire_is_renewed_before_use(serve_ably: ServeAbly) -> None:
    clock = ManualClock()
    served = await serve_ably(clock=clock)
    async with AblyAdapter.from_url(served.url(), clock=clock) as adapter:
        await adapter.publish([ev(A, 1)])
        clock.advance(3600 - 10)  # the hour-long token has 10 s left
        await adapter.publish([ev(A, 2)])
    assert served.emulator.requests["POST /keys/{keyName}/requestToken"] == 2
    assert [r.status for r in served.emulator.request_log] == [200, 201, 200, 201]
    assert [event.data["n"] for event in in_ably(served.emulator, A)] == [1, 2]


async def test_an_expired_token_is_renewed_transparently(serve_ably: ServeAbly) -> None:
    """The adapter's clock runs 50 s behind Ably's, so it still trusts a token Ably
    says expired (40142): it gets a new one and the publish goes through."""
    ably_clock = ManualClock()
    our_clock = ManualClock(ably_clock.now)
    served = await serve_ably(clock=ably_clock)
    async with AblyAdapter.from_url(served.url(), clock=our_clock) as adapter:
        await adapter.publish([ev(A, 1)])
        ably_clock.advance(3600)
        our_clock.advance(3550)
        await adapter.publish([ev(A, 2)])
        assert [event.data["n"] for event in (await adapter.history(A)).events] == [1, 2]
    log = [(r.route, r.status) for r in served.emulator.request_log]
    assert log[:5] == [
        ("/keys/{keyName}/requestToken", 200),
        ("/channels/{channel}/messages", 201),
        ("/channels/{channel}/messages", 401),  # 40142: expired
        ("/keys/{keyName}/requestToken", 200),
        ("/channels/{channel}/messages", 201),
    ]


async def test_a_wrong_key_fails_authentication_and_the_relay_keeps_rows_pending(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    served = await serve_ably()
    wrong = served.url(key="emulator.key:not-the-secret")
    async with AblyAdapter.from_url(wrong) as adapter:
        with pytest.raises(AuthenticationFailed) as caught:
            await adapter.publish([ev(A, 0)])
    assert "40101" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)

    events = [ev(A, 1), ev(B, 1)]
    async with relayed(pg_url, AblyAdapter.from_url(wrong)) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        assert await relay.drain() == 2
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all("40101" in (row.last_error or "") for row in rows)
        assert await outbox.dead() == []
    assert served.emulator.channels() == []

    await make_due(pg_url)  # the key is put right: the same rows go
    await no_relay_connected(pg_url)
    async with relayed(pg_url, AblyAdapter.from_url(served.url())) as (_, relay):
        assert await relay.drain() == 2
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert ids(in_ably(served.emulator, A)) == [events[0].id]


async def test_an_unknown_key_name_keeps_rows_pending(pg_url: str, serve_ably: ServeAbly) -> None:
    served = await serve_ably()
    events = [ev(A, 1), ev(A, 2)]
    unknown = AblyAdapter.from_url(served.url(key="emulator.nokey:secret"))
    async with relayed(pg_url, unknown) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        await relay.drain()
        assert await outbox.dead() == []
        assert set(states(await stored_rows(pg_url)).values()) == {"pending"}


# -- (f) history: Ably's own, through the Bridge ------------------------------------------------


async def test_bridge_history_is_ablys_own_with_event_id_cursors(
    pg_url: str, serve_ably: ServeAbly
) -> None:
    served = await serve_ably()
    adapter = AblyAdapter.from_url(served.url())
    bridge = Bridge(adapter, retry=instant_retry(1))
    a = [ev(A, n) for n in range(1, 6)]
    async with relayed(pg_url, adapter, bridge=bridge) as (outbox, relay):
        assert bridge.history_source is None  # Ably keeps history: no outbox fallback
        await enqueue_committed(pg_url, outbox, *a[:3], ev(B, 1))
        await enqueue_committed(pg_url, outbox, *a[3:])
        assert await relay.drain() == 6
        pending = ev(A, 6)  # committed, not relayed: in the outbox, not in Ably
        await enqueue_committed(pg_url, outbox, pending)
        direct = ev(A, 7)  # published to Ably without the outbox: in Ably only
        await bridge.publish(direct)

        everything = await bridge.history(A)
        assert ids(everything.events) == [*ids(a), direct.id]
        assert [event.seq for event in everything][:5] == [1, 2, 3, 4, 5]
        latest = await bridge.history(A, limit=2)
        assert ids(latest.events) == [a[4].id, direct.id] and latest.has_more
        older = await bridge.history(A, limit=2, before=a[4].id)
        assert ids(older.events) == ids(a[2:4]) and older.has_more
        oldest = await bridge.history(A, limit=2, before=a[1].id)
        assert ids(oldest.events) == [a[0].id] and not oldest.has_more
        newer = await bridge.history(A, limit=2, after=a[0].id)
        assert ids(newer.events) == ids(a[1:3]) and newer.has_more
        newest = await bridge.history(A, limit=5, after=a[3].id)
        assert ids(newest.events) == [a[4].id, direct.id] and not newest.has_more
        assert len(await bridge.history("orders.none")) == 0
        for cursor in (pending.id, "no-such-event"):
            for direction in ("before", "after"):
                with pytest.raises(CursorNotFound):
                    await bridge.history(A, **{direction: cursor})


async def test_history_past_ablys_retention_is_gone(serve_ably: ServeAbly) -> None:
    """Ably keeps history for a time (here an hour), not a number of events: past it,
    messages are gone and a cursor naming one is CursorNotFound."""
    clock = ManualClock()
    served = await serve_ably(clock=clock, retention=3600)
    old, new = [ev(A, 1), ev(A, 2)], ev(A, 3)
    async with AblyAdapter.from_url(served.url(), clock=clock) as adapter:
        await adapter.publish(old)
        clock.advance(1800)
        await adapter.publish([new])
        assert ids((await adapter.history(A)).events) == [*ids(old), new.id]
        clock.advance(1801)  # the old ones are 3601 s old, the new one 1801 s
        page = await adapter.history(A)
        assert ids(page.events) == [new.id] and not page.has_more
        for direction in ("before", "after"):
            with pytest.raises(CursorNotFound):
                await adapter.history(A, **{direction: old[1].id})
        clock.advance(1800)
        assert (await adapter.history(A)).events == ()
        with pytest.raises(CursorNotFound):
            await adapter.history(A, after=new.id)


# -- (g) presence and occupancy -----------------------------------------------------------------


async def test_presence_and_occupancy_are_ablys(serve_ably: ServeAbly) -> None:
    served = await serve_ably()
    room = "presence-room.1"
    emulator = served.emulator
    emulator.enter_presence(room, "ann", {"name": "Ann", "tags": ["a", 1]})
    emulator.enter_presence(room, "bob", "just text")
    emulator.enter_presence(room, "cy")
    emulator.enter_presence("presence-room.2", "dee")
    emulator.set_subscribers(room, 4)
    async with Bridge(AblyAdapter.from_url(served.url())) as bridge:
        assert await bridge.presence(room) == [
            Member("ann", {"name": "Ann", "tags": ["a", 1]}),
            Member("bob", {"data": "just text"}),
            Member("cy"),
        ]
        assert await bridge.occupancy(room) == Occupancy(room, subscribers=4, members=3)
        emulator.leave_presence(room, "bob")
        emulator.set_subscribers(room, 1)
        assert [m.id for m in await bridge.presence(room)] == ["ann", "cy"]
        assert await bridge.occupancy(room) == Occupancy(room, subscribers=1, members=2)
        assert await bridge.presence("presence-room.3") == []


async def test_presence_follows_ablys_pages(serve_ably: ServeAbly) -> None:
    served = await serve_ably()
    names = [f"user-{n:04d}" for n in range(1005)]  # Ably's page holds 1,000 at most
    for name in names:
        served.emulator.enter_presence("presence-big", name, {"n": name})
    async with AblyAdapter.from_url(served.url()) as adapter:
        members = await adapter.presence("presence-big")
    assert [m.id for m in members] == names
    assert members[-1] == Member("user-1004", {"n": "user-1004"})
    assert served.emulator.requests["GET /channels/{channel}/presence"] == 2


async def test_a_member_on_two_connections_is_listed_once(serve_ably: ServeAbly) -> None:
    served = await serve_ably()
    served.emulator.enter_presence("presence-room.1", "ann", {"tab": 1})  # one browser tab
    served.emulator.enter_presence("presence-room.1", "ann", {"tab": 2})  # and another
    async with AblyAdapter.from_url(served.url()) as adapter:
        assert [m.id for m in await adapter.presence("presence-room.1")] == ["ann"]


# -- (h) what authorize() gives browsers --------------------------------------------------------


async def _channel_access(http: httpx.AsyncClient, token: str) -> dict[str, tuple[int, int]]:
    """(HTTP status, Ably code or 0) of what a browser holding ``token`` tries."""
    tries = {
        "history": ("GET", "/channels/orders.1/messages"),
        "presence": ("GET", "/channels/orders.1/presence"),
        "publish": ("POST", "/channels/orders.1/messages"),
        "other history": ("GET", "/channels/orders.2/messages"),
        "other presence": ("GET", "/channels/orders.2/presence"),
    }
    outcome = {}
    for name, (method, path) in tries.items():
        body = {"name": "n", "data": "d"} if method == "POST" else None
        response = await http.request(method, path, json=body, headers=bearer(token))
        code = response.json()["error"]["code"] if response.is_error else 0
        outcome[name] = (response.status_code, code)
    return outcome


BROWSER_ACCESS = {
    "history": (200, 0),
    "presence": (200, 0),
    "publish": (401, 40160),  # database-first: browsers never publish
    "other history": (401, 40160),
    "other presence": (401, 40160),
}


async def test_authorize_gives_a_token_request_ably_accepts_for_that_channel_only(
    serve_ably: ServeAbly,
) -> None:
    served = await serve_ably()
    event = ev("orders.1", 1)
    async with (
        AblyAdapter.from_url(served.url()) as adapter,
        httpx.AsyncClient(base_url=served.base_url) as http,
    ):
        await adapter.publish([event, ev("orders.2", 1)])
        signed = adapter.authorize("orders.1")
        response = await http.post(f"/keys/{served.emulator.key_name}/requestToken", json=signed)
        assert response.status_code == 200, response.text
        details = response.json()
        assert json.loads(details["capability"]) == {"orders.1": ["history", "subscribe"]}
        assert "clientId" not in details
        assert await _channel_access(http, details["token"]) == BROWSER_ACCESS

        with_user = adapter.authorize("presence-room.1", user=Member("u1", {"name": "Ann"}))
        response = await http.post(f"/keys/{served.emulator.key_name}/requestToken", json=with_user)
        assert response.status_code == 200, response.text
        assert response.json()["clientId"] == "u1"  # the browser cannot pretend to be another
        assert "presence" in json.loads(response.json()["capability"])["presence-room.1"]

    # Ably's own SDK, as a browser's: it exchanges the TokenRequest itself.
    async def token_request(params: Any) -> dict[str, Any]:
        return adapter.authorize("orders.1")

    async with sdk(served, auth_callback=token_request) as browser:
        [message] = (await browser.channels.get("orders.1").history()).items
        assert Event.decode(json.dumps(message.data)) == event
        with pytest.raises(AblyException) as refused:
            await browser.channels.get("orders.2").history()
        assert refused.value.code == 40160


async def test_authorize_with_client_auth_jwt_gives_a_jwt_ably_accepts_for_that_channel_only(
    serve_ably: ServeAbly,
) -> None:
    served = await serve_ably()
    async with (
        AblyAdapter.from_url(served.url(client_auth="jwt")) as adapter,
        httpx.AsyncClient(base_url=served.base_url) as http,
    ):
        await adapter.publish([ev("orders.1", 1)])
        token = adapter.authorize("orders.1")["token"]
        assert token.count(".") == 2
        assert await _channel_access(http, token) == BROWSER_ACCESS
        assert served.emulator.requests["POST /keys/{keyName}/requestToken"] == 1  # ours only

    async with sdk(served, token=token) as browser:
        [message] = (await browser.channels.get("orders.1").history()).items
        assert Event.decode(json.dumps(message.data)).data == {"n": 1}


# -- (i) webhooks -------------------------------------------------------------------------------


def signed_webhook(body: bytes, key_name: str, secret: str) -> dict[str, str]:
    """Headers of a batched webhook as Ably sends it, signed with the key."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Ably-Version": "1.2",
        "X-Ably-Key": key_name.partition(".")[2],  # the keyId, as Ably's docs show
        "X-Ably-Signature": base64.b64encode(digest).decode(),
    }


async def test_a_batched_webhook_signed_with_the_key_is_verified_and_normalised(
    serve_ably: ServeAbly,
) -> None:
    served = await serve_ably()
    emulator = served.emulator
    event = ev("orders.1", 1)
    emulator.enter_presence("presence-room.1", "ann", {"name": "Ann"})
    async with Bridge(AblyAdapter.from_url(served.url())) as bridge:
        await bridge.publish(event)
        # What Ably would forward: the stored message and member, as its API gives them.
        [message] = emulator.messages("orders.1")
        [member] = emulator.presence_members("presence-room.1")
        items = [
            {
                "webhookId": "wh1",
                "source": "channel.message",
                "serial": message.serial,
                "timestamp": message.timestamp,
                "name": "channel.message",
                "data": {"channelId": "orders.1", "messages": [message.wire()]},
            },
            {
                "webhookId": "wh1",
                "source": "channel.presence",
                "serial": member.id,
                "timestamp": member.timestamp,
                "name": "presence.message",
                "data": {"channelId": "presence-room.1", "presence": [member.wire()]},
            },
        ]
        body = json.dumps({"items": items}).encode()
        secret = emulator.key.partition(":")[2]
        headers = signed_webhook(body, emulator.key_name, secret)

        received, joined = bridge.verify_webhook(headers, body)
        assert (received.kind, received.vendor, received.channel) == (
            WebhookKind.MESSAGE,
            "ably",
            "orders.1",
        )
        assert received.event == TYPE
        assert Event.decode(json.dumps(received.data)) == event  # the envelope, decoded
        assert (joined.kind, joined.channel, joined.user_id) == (
            WebhookKind.MEMBER_ADDED,
            "presence-room.1",
            "ann",
        )
        assert joined.data == {"name": "Ann"}

        tampered = body.replace(b'"orders.1"', b'"orders.2"')
        forged = signed_webhook(body, emulator.key_name, "a guessed secret")
        other_key = {**headers, "X-Ably-Key": "otherkey"}
        for wrong_headers, wrong_body in ((headers, tampered), (forged, body), (other_key, body)):
            with pytest.raises(InvalidWebhook):
                bridge.verify_webhook(wrong_headers, wrong_body)
