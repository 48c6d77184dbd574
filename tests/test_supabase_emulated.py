"""The Supabase adapter, the outbox and the relay against the Supabase emulator, end to end.

The emulator (``realtime_bridge.testing.supabase``) answers as Supabase Realtime does
(REST broadcast, the Phoenix WebSocket, RLS on private channels, the silent drop) and
is held to Supabase's own client in ``test_supabase_emulator.py``; each test here serves
a private one (``serve_supabase``: its own options, policies, sometimes a
``ManualClock``) and drives the library at it through real sockets. Browsers are
Supabase's own ``AsyncRealtimeClient`` (``RealtimeClients`` in ``conftest_supabase``),
joined as a browser joins, with the anon key and the token ``authorize`` gives.

What is asserted is what those clients received, what the emulator accepted or dropped,
what the outbox table says (plain SQL, ``outbox_fixtures``) and the errors the library
raised. Faults are injected with ``fail_next``; time moves by ``ManualClock`` and by
making outbox rows due; nothing sleeps to assert and nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest_supabase import (
    PATIENCE,
    RealtimeClients,
    ServedSupabase,
    ServeSupabase,
    channel_options,
    decoded,
)
from outbox_fixtures import (
    database_now,
    enqueue_committed,
    make_due,
    no_relay_connected,
    relayed,
    states,
    stored_rows,
    wait_until,
)
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime._async.channel import AsyncRealtimeChannel

from realtime_bridge import Bridge, Event, Member, Occupancy, PublishResult
from realtime_bridge.adapters.supabase import SupabaseAdapter
from realtime_bridge.cli import main
from realtime_bridge.errors import (
    CapabilityNotSupported,
    CursorNotFound,
    PayloadTooLarge,
    RateLimited,
    VendorUnavailable,
)
from realtime_bridge.testing import instant_retry
from realtime_bridge.testing.supabase import ManualClock, SupabaseEmulator

pytest_plugins = ["conftest_outbox"]

A, B, C = "orders.a", "private-orders.b", "orders.c"
ROOM = "presence-room.1"
TYPE = "order.updated"
BROADCAST = "POST /api/broadcast"


def ev(channel: str, n: int, **data: Any) -> Event:
    return Event(channel=channel, type=TYPE, data={"n": n, **data})


def ids(events: Sequence[Event]) -> list[str]:
    return [event.id for event in events]


def accepted(emulator: SupabaseEmulator, topic: str) -> list[Event]:
    """The events Supabase accepted on ``topic``, oldest first (each payload an envelope)."""
    events = []
    for broadcast in emulator.broadcasts(topic):
        event = Event.decode(json.dumps(broadcast.payload))
        assert (broadcast.event, broadcast.id, event.channel) == (TYPE, event.id, topic)
        events.append(event)
    return events


def publishes(emulator: SupabaseEmulator) -> list[tuple[int, bool]]:
    """(status, injected?) of every broadcast request Supabase answered, in order."""
    return [
        (r.status, r.fault)
        for r in emulator.request_log
        if r.method == "POST" and r.route == "/api/broadcast"
    ]


@contextlib.asynccontextmanager
async def browsers(
    served: ServedSupabase, adapter: SupabaseAdapter, *, as_anon: bool = False
) -> AsyncIterator[RealtimeClients]:
    """Supabase clients, closed afterwards: with the anon key, joining private channels with
    ``adapter.authorize``'s token (or, ``as_anon``, with the anon key itself)."""
    anon_key = served.emulator.anon_key
    clients = (
        RealtimeClients(adapter, served.base_url, anon_key, no_token)
        if as_anon
        else served.clients(adapter)
    )
    try:
        yield clients
    finally:
        await clients.aclose()


def no_token(channel: str, user: Member) -> str | None:
    return None


class Wire(httpx.AsyncBaseTransport):
    """httpx's network transport, noting how many messages each broadcast request carried."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sizes: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sizes.append(len(json.loads(await request.aread())["messages"]))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def refusal(client: AsyncRealtimeClient, topic: str, *, private: bool = True) -> str:
    """Why Supabase refused ``client`` a join of ``topic`` (the test fails if it joined)."""
    errors: list[str] = []

    def note(state: RealtimeSubscribeStates, error: Exception | None) -> None:
        if state is RealtimeSubscribeStates.CHANNEL_ERROR:
            errors.append(str(error))

    channel = client.channel(topic, channel_options(private=private))
    await channel.subscribe(note)
    assert not channel.is_joined and errors, f"Supabase let the client join {topic!r}"
    return errors[0]


# -- (a) committed events reach real clients, in commit order ----------------------------------


async def test_committed_events_reach_subscribed_clients_in_commit_order_public_and_private(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    """A browser on the public channel with the anon key, and Alice on the private one
    with the token ``authorize`` gave her, which an RLS policy lets her (only) receive."""
    served = await serve_supabase()
    served.emulator.allow(B, role="authenticated", sub="alice", insert=False)
    channels = (A, B)
    sent: dict[str, list[Event]] = {A: [], B: []}
    adapter = served.adapter()
    async with (
        browsers(served, adapter) as clients,
        relayed(pg_url, adapter, batch_size=4) as (outbox, relay),
        clients.subscriber(A) as next_on_a,
        clients.subscriber(B, user=Member("alice")) as next_on_b,
    ):
        for n in range(6):  # interleaved commits, two events each, across both channels
            first, second = ev(channels[n % 2], n), ev(channels[(n + 1) % 2], n)
            await enqueue_committed(pg_url, outbox, first, second)
            sent[first.channel].append(first)
            sent[second.channel].append(second)
        assert await relay.drain() == 12
        assert await relay.drain() == 0
        got = {
            A: [await next_on_a() for _ in sent[A]],
            B: [await next_on_b() for _ in sent[B]],
        }
    rows = {row.event_id: row for row in await stored_rows(pg_url)}
    assert {row.state for row in rows.values()} == {"sent"}
    assert served.emulator.requests[BROADCAST] == 3  # one request per claim of four
    for channel in channels:
        assert ids(got[channel]) == ids(sent[channel]), channel  # commit order, each once
        assert [event.seq for event in got[channel]] == list(range(1, 7))
        assert [event.seq for event in got[channel]] == [rows[e.id].seq for e in got[channel]]
        for received, original in zip(got[channel], sent[channel], strict=True):
            assert (received.type, received.data) == (original.type, original.data)
    assert {b.private for b in served.emulator.broadcasts(A)} == {False}
    assert {b.private for b in served.emulator.broadcasts(B)} == {True}
    assert served.emulator.dropped == []  # the service key passes RLS


# -- (b) the silent drop ------------------------------------------------------------------------


async def test_the_anon_key_loses_private_events_silently_and_the_probe_finds_out(
    serve_supabase: ServeSupabase,
) -> None:
    """Configured with the anon key, which may receive on ``private-x`` but not send
    there, the adapter's private events are answered 202 and never delivered."""
    served = await serve_supabase()
    emulator = served.emulator
    private_x = "private-x"
    emulator.allow(private_x, role="anon", insert=False)  # SELECT only
    service = served.adapter()
    async with (
        served.adapter(emulator.anon_key) as anon,
        browsers(served, service, as_anon=True) as clients,
        service,
    ):
        async with clients.subscriber(private_x) as next_event:
            lost, marker = ev(private_x, 1), ev(private_x, 2)
            assert await anon.publish([lost]) == PublishResult(published=1)  # a 202...
            [dropped] = emulator.dropped  # ...and dropped without a word
            assert (dropped.topic, dropped.role, dropped.source) == (private_x, "anon", "rest")
            assert dropped.reason == "no RLS INSERT permission"
            assert emulator.broadcasts(private_x) == []
            await service.publish([marker])  # the service key passes RLS
            assert await next_event() == marker  # the first to arrive: the lost one never will
        assert publishes(emulator) == [(202, False), (202, False)]

        check = await anon.verify_private_delivery(private_x, timeout=0.5)
        assert not check and check.channel == private_x
        assert "RLS INSERT check on realtime.messages" in check.detail
        assert "service_role" in check.detail
        assert emulator.anon_key not in check.detail

        assert await service.verify_private_delivery(private_x)  # bypasses RLS
        emulator.allow(private_x, role="anon", select=False)  # the INSERT policy
        check = await anon.verify_private_delivery(private_x)
        assert check and check.detail == "a private probe sent over REST arrived"


async def test_doctor_private_channel_exits_1_on_the_silent_drop_and_0_once_delivered(
    serve_supabase: ServeSupabase,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``realtime-bridge doctor`` in this process (on a thread: it runs its own loop) with
    REALTIME_BRIDGE_URL pointing at the emulator served by this test's loop."""
    for name in list(os.environ):
        if name.startswith("REALTIME_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no realtime_bridge.toml
    served = await serve_supabase()
    emulator = served.emulator
    emulator.allow("private-x", role="anon", insert=False)

    async def doctor(key: str) -> tuple[int, str, str]:
        monkeypatch.setenv("REALTIME_BRIDGE_URL", served.url(key))
        argv = ["doctor", "--private-channel", "private-x", "--timeout", "1"]
        code = await asyncio.to_thread(main, argv)
        out, err = capsys.readouterr()
        assert emulator.anon_key not in out + err and emulator.service_key not in out + err
        return code, out, err

    code, _, err = await doctor(emulator.anon_key)
    assert code == 1, err
    assert "private delivery on private-x" in err
    assert "RLS INSERT check on realtime.messages" in err
    assert len(emulator.dropped) == 1  # the probe, dropped silently

    emulator.allow("private-x", role="anon", select=False)  # the INSERT policy
    code, out, err = await doctor(emulator.anon_key)
    assert (code, err) == (0, "")
    assert "ok" in out

    emulator.policies.clear()  # the service key needs no policy at all
    code, out, err = await doctor(emulator.service_key)
    assert (code, err) == (0, "")
    assert len(emulator.dropped) == 1


# -- (c) the plan's quota: batches split, 429 waited out -------------------------------------


async def test_batches_are_split_at_messages_per_second(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    served = await serve_supabase()
    wire = Wire()
    adapter = served.adapter(messages_per_second=3, transport=wire)
    assert adapter.limits.max_events_per_batch == 3
    events = [ev((A, C)[n % 2], n) for n in range(7)]
    async with relayed(pg_url, adapter, batch_size=10) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        assert await relay.drain() == 7
    assert wire.sizes == [3, 3, 1]  # one claim of seven, in requests of at most three
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert ids(accepted(served.emulator, A)) == ids(events[0::2])
    assert ids(accepted(served.emulator, C)) == ids(events[1::2])


async def test_a_429_is_rate_limited_for_as_long_as_the_rate_headers_say_and_the_relay_holds(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    """Over its quota, Supabase answers 429 with ``x-rate-rolling`` (events per second
    lately) and ``x-rate-limit``: waiting 60 * (rolling - limit) / rolling seconds brings
    the rolling average under the limit. Here 60 * (15 - 5) / 15 = 40 s."""
    clock = ManualClock()
    served = await serve_supabase(messages_per_second=5, clock=clock)
    emulator = served.emulator
    adapter = served.adapter(messages_per_second=5)
    emulator.rate.add(15)  # the project's other traffic, this second
    with pytest.raises(RateLimited) as caught:
        await adapter.publish([ev(A, 0)])
    assert caught.value.retry_after == 40.0
    assert "429" in str(caught.value)

    events = [ev(A, 1), ev(C, 1), ev(A, 2)]
    async with relayed(pg_url, adapter, base_delay=0.001) as (outbox, relay):  # backoff ~0 s
        await enqueue_committed(pg_url, outbox, *events)
        before = await database_now(pg_url)
        assert await relay.drain() == 3
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all(row.next_attempt_at >= before + 40 for row in rows), rows
        assert all("retry after 40s" in (row.last_error or "") for row in rows)

        await make_due(pg_url)  # due by the table, but this relay was told to wait
        assert await relay.drain() == 0
        assert (relay.stats.retried, relay.stats.published) == (3, 0)

    clock.advance(1)  # a new second: the emulator's count starts again
    await no_relay_connected(pg_url)
    async with relayed(pg_url, served.adapter()) as (_, other):  # a relay that was not told
        assert await other.drain() == 3
    assert publishes(emulator) == [(429, False), (429, False), (202, False)]
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert ids(accepted(emulator, A)) == ids([events[0], events[2]])
    assert [event.seq for event in accepted(emulator, A)] == [1, 2]


# -- (d) outages ----------------------------------------------------------------------------------


async def test_an_outage_is_retried_until_supabase_is_back_with_nothing_lost(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    """Five 503s in a row: the relay backs off each time; the Bridge's circuit breaker
    opens after the fifth, and the batch it refuses is left as it was (no attempt counted)
    until it half-opens; then all goes, in order,
    to a browser that stayed subscribed throughout."""
    served = await serve_supabase()
    breaker_clock = ManualClock(0.0)
    adapter = served.adapter()
    bridge = Bridge(adapter, retry=instant_retry(1), clock=breaker_clock)  # 5 failures open it
    events = [ev(A, 1), ev(C, 1), ev(A, 2), ev(A, 3), ev(C, 2)]
    async with (
        browsers(served, adapter) as clients,
        clients.subscriber(A) as next_event,
        relayed(pg_url, adapter, bridge=bridge) as (outbox, relay),
    ):
        await enqueue_committed(pg_url, outbox, *events[:3])
        await enqueue_committed(pg_url, outbox, *events[3:])
        served.emulator.fail_next(5, 503)
        for attempt in range(1, 7):  # five 503s, then one refused by the open circuit
            assert await relay.drain() == 5
            rows = await stored_rows(pg_url)
            # The refused sixth is not an attempt: the vendor never saw it.
            counted = min(attempt, 5)
            assert {(row.state, row.attempts) for row in rows} == {("pending", counted)}
            assert all("answered 503" in (row.last_error or "") for row in rows), rows[0].last_error
            await make_due(pg_url)
        assert relay.stats.refused == 1
        assert publishes(served.emulator) == [(503, True)] * 5  # the 6th never reached it
        assert served.emulator.broadcasts() == []

        breaker_clock.advance(30.0)  # the breaker's reset_timeout: one probe may go
        assert await relay.drain() == 5
        assert (relay.stats.retried, relay.stats.published, relay.stats.dead) == (25, 5, 0)
        on_a = [event for event in events if event.channel == A]
        assert ids([await next_event() for _ in on_a]) == ids(on_a)
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert publishes(served.emulator)[-1] == (202, False)
    for channel in (A, C):
        got = accepted(served.emulator, channel)
        assert ids(got) == ids([event for event in events if event.channel == channel])
        assert [event.seq for event in got] == list(range(1, len(got) + 1))


async def test_a_suspended_project_keeps_the_rows_pending_until_it_is_restored(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    served = await serve_supabase()
    served.emulator.suspended = True
    events = [ev(A, 1), ev(A, 2)]
    adapter = served.adapter()
    with pytest.raises(VendorUnavailable, match="Tenant is suspended"):
        await adapter.publish([ev(A, 0)])  # transient: the events are fine
    async with relayed(pg_url, adapter) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        assert await relay.drain() == 2
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all("403: Tenant is suspended" in (row.last_error or "") for row in rows)
        assert await outbox.dead() == []

        served.emulator.suspended = False  # the project is restored
        await make_due(pg_url)
        assert await relay.drain() == 2
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert ids(accepted(served.emulator, A)) == ids(events)
    assert publishes(served.emulator) == [(403, False), (403, False), (202, False)]


# -- (e) an event Supabase refuses ----------------------------------------------------------------


async def test_an_event_over_the_projects_payload_limit_is_dead_lettered_and_the_rest_flows(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    """The project allows 2 KB a payload, the adapter is configured for the Free plan's
    256: the adapter's own check passes and Supabase refuses the batch (422, its errors
    pointing at the one message). Supabase's batch is all or nothing, so the relay
    dead-letters that event and publishes the others."""
    served = await serve_supabase(max_payload_kb=2)
    adapter = served.adapter()
    assert adapter.limits.max_payload_bytes == 256_000
    big = ev(A, 2, blob="x" * 3000)
    a1, c1, a3 = ev(A, 1), ev(C, 1), ev(A, 3)
    with pytest.raises(PayloadTooLarge) as caught:  # the adapter alone: it names the event
        await adapter.publish([ev(C, 0), ev(C, 0, blob="z" * 3000), ev(C, 0)])
    assert caught.value.event_id is not None and caught.value.limit == 256_000
    assert served.emulator.broadcasts() == []  # a refused batch delivers nothing of it
    async with (
        browsers(served, adapter) as clients,
        clients.subscriber(A) as next_event,
        relayed(pg_url, adapter) as (outbox, relay),
    ):
        await enqueue_committed(pg_url, outbox, a1, big, c1, a3)
        assert await relay.drain() == 4
        rows = {row.event_id: row for row in await stored_rows(pg_url)}
        assert rows[big.id].state == "dead"
        reason = rows[big.id].last_error or ""
        assert "422" in reason and "Payload size exceeds tenant limit" in reason, reason
        assert big.id in reason
        assert states([rows[e.id] for e in (a1, c1, a3)]) == dict.fromkeys(
            ids([a1, c1, a3]), "sent"
        )
        alone = ev(C, 2, blob="y" * 3000)  # a claim of one: refused itself
        await enqueue_committed(pg_url, outbox, alone)
        assert await relay.drain() == 1
        a4 = ev(A, 4)
        await enqueue_committed(pg_url, outbox, a4)
        assert await relay.drain() == 1
        assert [d.event_id for d in await outbox.dead()] == [big.id, alone.id]
        assert relay.stats.dead == 2
        assert ids([await next_event() for _ in range(3)]) == ids([a1, a3, a4])
    assert (422, False) in publishes(served.emulator)
    assert [event.seq for event in accepted(served.emulator, A)] == [1, 3, 4]  # 2: the dead one
    assert ids(accepted(served.emulator, C)) == [c1.id]


# -- (f) presence and occupancy ------------------------------------------------------------------


def adapter_or_sdk_tasks() -> set[asyncio.Task[Any]]:
    """Pending tasks started by the realtime SDK or by realtime_bridge's adapters."""
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code is not None else ""
        sdk = f"{os.sep}realtime{os.sep}" in where and "realtime_bridge" not in where
        if not task.done() and (sdk or f"realtime_bridge{os.sep}adapters" in where):
            found.add(task)
    return found


async def member_on(
    clients: RealtimeClients, channel: str, member: Member
) -> tuple[AsyncRealtimeClient, AsyncRealtimeChannel]:
    """A browser of ``member`` joined to ``channel`` with presence key the member's id."""
    client = await clients.client(clients.token_for(channel, member))
    joined = client.channel(channel, channel_options(private=True, presence_key=member.id))
    await joined.subscribe()
    assert joined.is_joined
    return client, joined


async def test_presence_and_occupancy_follow_real_clients_tracking_and_untracking(
    serve_supabase: ServeSupabase,
) -> None:
    """Browsers track and untrack with their own tokens; the Bridge lists them as its
    socket learns of it (``presence_diff``: polled, never assumed at once), counts them,
    and cannot count a browser that only listens. Closing leaves no task running."""
    served = await serve_supabase()
    served.emulator.allow("presence-*", role="authenticated", insert=False)
    served.emulator.allow("presence-*", role="authenticated", extension="presence")
    pending_before = adapter_or_sdk_tasks()
    adapter = served.adapter()
    bridge = Bridge(adapter)

    async def presence_is(expected: list[Member]) -> None:
        async def matches() -> bool:
            return await bridge.presence(ROOM) == expected

        await wait_until(matches, within=PATIENCE)

    async with browsers(served, adapter) as clients:
        assert await bridge.presence(ROOM) == []
        ann_client, ann = await member_on(clients, ROOM, Member("ann"))
        _, bob = await member_on(clients, ROOM, Member("bob"))
        await ann.track({"name": "Ann", "tags": ["a", 1]})
        await bob.track({"name": "Bob"})
        await presence_is(
            [Member("ann", {"name": "Ann", "tags": ["a", 1]}), Member("bob", {"name": "Bob"})]
        )
        assert served.emulator.presence(ROOM, private=True) == {
            "ann": [{"name": "Ann", "tags": ["a", 1]}],
            "bob": [{"name": "Bob"}],
        }
        assert await bridge.occupancy(ROOM) == Occupancy(ROOM, subscribers=None, members=2)
        async with clients.subscriber(ROOM):  # listening without tracking: invisible
            assert served.emulator.subscribers(ROOM) == 4  # the adapter, two members, it
            assert await bridge.occupancy(ROOM) == Occupancy(ROOM, subscribers=None, members=2)

        await ann.track({"name": "Ann", "away": True})  # the same connection, new info
        await presence_is(
            [Member("ann", {"name": "Ann", "away": True}), Member("bob", {"name": "Bob"})]
        )
        await bob.untrack()
        await presence_is([Member("ann", {"name": "Ann", "away": True})])
        assert await bridge.occupancy(ROOM) == Occupancy(ROOM, subscribers=None, members=1)
        await clients.close(ann_client)  # the tab closes: the member goes with it
        await presence_is([])
        assert await bridge.occupancy(ROOM) == Occupancy(ROOM, subscribers=None, members=0)
        assert await bridge.occupancy("quiet.1") == Occupancy("quiet.1", None, members=0)
        assert adapter_or_sdk_tasks() - pending_before  # the adapter's socket is running
    await bridge.aclose()
    assert adapter_or_sdk_tasks() - pending_before == set()  # none left behind
    assert served.emulator.connections == 0


# -- (g) history: from the outbox ------------------------------------------------------------------


async def test_bridge_history_comes_from_the_outbox_with_event_id_cursors(
    pg_url: str, serve_supabase: ServeSupabase
) -> None:
    """Supabase keeps no history: the Bridge reads the outbox's sent rows instead."""
    served = await serve_supabase()
    adapter = served.adapter()
    bridge = Bridge(adapter, retry=instant_retry(1))
    a = [ev(A, n) for n in range(1, 6)]
    with pytest.raises(CapabilityNotSupported):
        await adapter.history(A)
    async with relayed(pg_url, adapter, bridge=bridge) as (outbox, relay):
        assert bridge.history_source is outbox
        await enqueue_committed(pg_url, outbox, *a[:3], ev(C, 1))
        await enqueue_committed(pg_url, outbox, *a[3:])
        assert await relay.drain() == 6
        pending = ev(A, 6)  # committed, not relayed: not sent, so not in history
        await enqueue_committed(pg_url, outbox, pending)

        everything = await bridge.history(A)
        assert ids(everything.events) == ids(a) and not everything.has_more
        assert [event.seq for event in everything] == [1, 2, 3, 4, 5]
        latest = await bridge.history(A, limit=2)
        assert ids(latest.events) == ids(a[3:]) and latest.has_more
        older = await bridge.history(A, limit=2, before=a[3].id)
        assert ids(older.events) == ids(a[1:3]) and older.has_more
        oldest = await bridge.history(A, limit=2, before=a[1].id)
        assert ids(oldest.events) == [a[0].id] and not oldest.has_more
        newer = await bridge.history(A, limit=2, after=a[0].id)
        assert ids(newer.events) == ids(a[1:3]) and newer.has_more
        newest = await bridge.history(A, limit=5, after=a[2].id)
        assert ids(newest.events) == ids(a[3:]) and not newest.has_more
        [second] = await bridge.history(A, limit=1, after=a[0].id)
        assert (second.id, second.seq, second.data) == (a[1].id, 2, a[1].data)
        assert len(await bridge.history("orders.none")) == 0
        for cursor in (pending.id, "no-such-event"):
            for direction in ("before", "after"):
                with pytest.raises(CursorNotFound):
                    await bridge.history(A, **{direction: cursor})
    assert ids(accepted(served.emulator, A)) == ids(a)  # what Supabase was sent...
    assert set(served.emulator.requests) == {BROADCAST}  # ...and never asked for again


# -- (h) browser tokens ---------------------------------------------------------------------------


async def test_authorize_gives_a_jwt_supabase_accepts_for_that_user_only_until_it_expires(
    serve_supabase: ServeSupabase,
) -> None:
    clock = ManualClock()
    served = await serve_supabase(clock=clock)
    emulator = served.emulator
    emulator.allow("private-alice.*", role="authenticated", sub="alice", insert=False)
    emulator.allow("private-bob.*", role="authenticated", sub="bob", insert=False)
    alice = Member("alice", {"name": "Alice"})
    inbox, bobs = "private-alice.inbox", "private-bob.inbox"
    adapter = served.adapter(clock=clock)
    async with adapter, browsers(served, adapter) as clients:
        grant = adapter.authorize(inbox, user=alice)
        assert (grant["topic"], grant["private"], grant["token_type"]) == (inbox, True, "bearer")
        claims = emulator.verify(grant["access_token"])  # signed with the project's secret
        assert (claims["sub"], claims["role"], claims["exp"]) == (
            "alice",
            "authenticated",
            grant["expires_at"],
        )

        # Alice's browser: the anon key opens the socket, her token joins her channel.
        client = await clients.client(grant["access_token"])
        received: asyncio.Queue[Any] = asyncio.Queue()
        channel = client.channel(inbox, channel_options(private=True))
        await channel.on_broadcast("*", received.put_nowait).subscribe()
        assert channel.is_joined
        event = ev(inbox, 1)
        await adapter.publish([event])
        assert decoded(await asyncio.wait_for(received.get(), PATIENCE), inbox) == event
        await clients.close(client)

        # A token for Alice naming Bob's channel: the policy is Bob's, so RLS refuses her.
        hers_for_bob = adapter.authorize(bobs, user=alice)["access_token"]
        reason = await refusal(await clients.client(hers_for_bob), bobs)
        assert "Unauthorized" in reason and bobs in reason

        # The probe listening as Alice checks the browser's side the same way.
        assert await adapter.verify_private_delivery(inbox, as_user=alice)
        check = await adapter.verify_private_delivery(bobs, as_user=alice)
        assert not check and check.detail.startswith("the listener may not receive")

        # An hour later her token has expired: the join is refused, a fresh one joins.
        clock.advance(grant["expires_in"] + 1)
        reason = await refusal(await clients.client(grant["access_token"]), inbox)
        assert "Token has expired" in reason
        fresh = adapter.authorize(inbox, user=alice)["access_token"]
        async with RealtimeClients(
            adapter, served.base_url, emulator.anon_key, lambda channel, user: fresh
        ).subscriber(inbox) as next_event:
            later = ev(inbox, 2)
            await adapter.publish([later])
            assert await next_event() == later
