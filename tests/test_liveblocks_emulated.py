"""The Liveblocks adapter, the outbox and the relay against the Liveblocks emulator, over HTTP.

The emulator (``realtime_bridge.testing.liveblocks``) answers as Liveblocks' REST API
does and is held to the official ``liveblocks`` SDK in ``test_liveblocks_emulator.py``;
each test here serves a private one (``serve_liveblocks``) and drives the library at
it through a real socket. Browsers are the emulator's connections in rooms: what is
asserted is what each connection received (decoded back to the ``Event`` it carries),
what the outbox table says (plain SQL, ``outbox_fixtures``) and the errors the library
raised. Faults are injected with ``fail_next``; time moves by making outbox rows due;
nothing sleeps to assert and nothing asserts a duration.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from conftest_liveblocks import ServedLiveblocks, ServeLiveblocks
from liveblocks import AsyncLiveblocks
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
from realtime_bridge.adapters.liveblocks import LiveblocksAdapter
from realtime_bridge.errors import (
    AuthenticationFailed,
    CapabilityNotSupported,
    CursorNotFound,
    InvalidChannel,
)
from realtime_bridge.testing import instant_retry
from realtime_bridge.testing.liveblocks import LiveblocksEmulator

pytest_plugins = ["conftest_outbox"]

A, B, C = "orders.a", "orders.b", "orders.c"
TYPE = "order.updated"
BROADCAST = "/v2/rooms/{roomId}/broadcast_event"


def ev(channel: str, n: int, **data: Any) -> Event:
    return Event(channel=channel, type=TYPE, data={"n": n, **data})


def ids(events: Sequence[Event]) -> list[str]:
    return [event.id for event in events]


def got(emulator: LiveblocksEmulator, room: str, connection: int) -> list[Event]:
    """What a browser in ``room`` received, each checked to be a REST broadcast of an envelope."""
    events = []
    for item in emulator.received(room, connection):
        assert (item.connection_id, item.user) == (-1, None)
        event = Event.decode(json.dumps(item.event))
        assert (event.type, event.channel) == (TYPE, room)
        events.append(event)
    return events


def broadcasts(emulator: LiveblocksEmulator) -> list[tuple[int, bool]]:
    """(status, injected?) of every broadcast request Liveblocks answered, in order."""
    return [(r.status, r.fault) for r in emulator.request_log if r.route == BROADCAST]


# -- committed events reach the browsers in the rooms --------------------------------------------


async def test_committed_events_reach_the_browsers_of_each_room_in_commit_order(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    served = await serve_liveblocks()
    emulator = served.emulator
    in_a, also_in_a, in_b = emulator.connect(A, "u1"), emulator.connect(A), emulator.connect(B)
    events = [ev(A, 1), ev(B, 1), ev(A, 2), ev(C, 1), ev(A, 3), ev(B, 2)]
    async with relayed(pg_url, served.adapter()) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events[:3])
        await enqueue_committed(pg_url, outbox, *events[3:])
        assert await relay.drain() == 6
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    for connection in (in_a, also_in_a):
        received = got(emulator, A, connection)
        assert ids(received) == ids([e for e in events if e.channel == A])
        assert [event.seq for event in received] == [1, 2, 3]
        assert [event.data for event in received] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [event.seq for event in got(emulator, B, in_b)] == [1, 2]
    # Nobody ever entered room C: Liveblocks says it does not exist; the event counts as sent.
    assert C not in emulator.rooms() and emulator.broadcasts(C) == []
    assert broadcasts(emulator).count((404, False)) == 1
    assert len(broadcasts(emulator)) == 6  # one request per event: no batch API


async def test_the_sdk_and_the_adapter_see_the_same_rooms(
    serve_liveblocks: ServeLiveblocks,
) -> None:
    """What the adapter broadcast is what Liveblocks' own SDK finds there, and the other way."""
    served = await serve_liveblocks()
    emulator = served.emulator
    listener = emulator.connect(A, "alice", {"name": "Alice"})
    async with (
        served.adapter() as adapter,
        AsyncLiveblocks(secret=emulator.secret, base_url=served.base_url) as sdk,
    ):
        event = ev(A, 1)
        await adapter.publish([event])
        await sdk.broadcast_event(A, body=json.loads(event.encode()))
        assert [user.id for user in (await sdk.get_active_users(A)).data] == ["alice"]
        assert await adapter.presence(A) == [Member("alice", {"name": "Alice"})]
    assert got(emulator, A, listener) == [event, event]
    assert [b.route for b in emulator.broadcasts(A)] == ["broadcast_event", "broadcast-event"]


# -- outages, rate limits, lost answers -----------------------------------------------------------


async def test_an_outage_is_retried_until_liveblocks_is_back_with_nothing_lost(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    served = await serve_liveblocks()
    emulator = served.emulator
    listener = emulator.connect(A)
    events = [ev(A, 1), ev(A, 2), ev(A, 3)]
    async with relayed(pg_url, served.adapter()) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        emulator.fail_next(2, 503)
        for attempt in (1, 2):
            assert await relay.drain() == 3
            rows = await stored_rows(pg_url)
            assert {(row.state, row.attempts) for row in rows} == {("pending", attempt)}
            assert all("SERVICE_UNAVAILABLE" in (row.last_error or "") for row in rows)
            await make_due(pg_url)
        assert await relay.drain() == 3
        assert relay.stats.published == 3
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert broadcasts(emulator) == [(503, True), (503, True)] + [(204, False)] * 3
    assert ids(got(emulator, A, listener)) == ids(events)


async def test_a_429_holds_the_relay_for_the_retry_after(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    """Liveblocks' Retry-After is kept on every row and holds this relay, even for rows due.

    (30 s: the relay's own hold is checked while it runs, so the wait it was told must
    outlast this test by far; nothing here measures it.)
    """
    served = await serve_liveblocks()
    emulator = served.emulator
    listener = emulator.connect(A)
    events = [ev(A, 1), ev(B, 1), ev(A, 2)]
    async with relayed(pg_url, served.adapter(), base_delay=0.001) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        emulator.fail_next(1, 429, retry_after=30, path=f"/v2/rooms/{A}/")
        before = await database_now(pg_url)
        assert await relay.drain() == 3
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all(row.next_attempt_at >= before + 30 for row in rows), rows
        assert all("TOO_MANY_REQUESTS" in (row.last_error or "") for row in rows)
        assert all("retry after 30s" in (row.last_error or "") for row in rows)

        await make_due(pg_url)  # due by the table, but this relay was told to wait
        assert await relay.drain() == 0
        assert (relay.stats.retried, relay.stats.published) == (3, 0)

    await no_relay_connected(pg_url)
    async with relayed(pg_url, served.adapter()) as (_, other):
        assert await other.drain() == 3
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert [event.seq for event in got(emulator, A, listener)] == [1, 2]


async def test_a_lost_answer_is_sent_again_and_browsers_drop_the_repeat_by_id(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    """Liveblocks broadcast the event, then its answer was lost: the relay cannot know, and
    Liveblocks has no message ids to drop a repeat. The browser gets it twice, same id."""
    served = await serve_liveblocks()
    emulator = served.emulator
    listener = emulator.connect(A)
    events = [ev(A, 1), ev(A, 2)]
    async with relayed(pg_url, served.adapter()) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        emulator.fail_next(1, 503, applied=True)
        assert await relay.drain() == 2
        await make_due(pg_url)
        assert await relay.drain() == 2
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    received = got(emulator, A, listener)
    assert ids(received) == [events[0].id, events[0].id, events[1].id]
    assert list(dict.fromkeys(ids(received))) == ids(events)  # what a browser keeps, by id


async def test_a_partly_failed_batch_is_not_sent_twice_by_the_same_relay(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    """Room B fails, room A went: the retry through the same adapter sends only B's."""
    served = await serve_liveblocks()
    emulator = served.emulator
    in_a, in_b = emulator.connect(A), emulator.connect(B)
    events = [ev(A, 1), ev(B, 1), ev(A, 2)]
    async with relayed(pg_url, served.adapter()) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, *events)
        emulator.fail_next(1, 502, path=f"/v2/rooms/{B}/")
        assert await relay.drain() == 3
        assert {row.state for row in await stored_rows(pg_url)} == {"pending"}
        await make_due(pg_url)
        assert await relay.drain() == 3
    assert set(states(await stored_rows(pg_url)).values()) == {"sent"}
    assert ids(got(emulator, A, in_a)) == ids([events[0], events[2]])  # once each
    assert ids(got(emulator, B, in_b)) == [events[1].id]
    # Rooms go side by side, so A's and B's answers interleave in any order: count them.
    assert Counter(broadcasts(emulator)) == {(204, False): 3, (502, True): 1}


# -- what Liveblocks refuses ----------------------------------------------------------------------


async def test_an_event_liveblocks_refuses_as_too_large_is_dead_lettered_and_the_rest_flows(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    """The emulator takes 2,000 bytes a broadcast, the adapter is configured for Liveblocks'
    1,000,000: the adapter's check passes, Liveblocks refuses (413), the relay dead-letters
    that event and sends the rest, each once."""
    served = await serve_liveblocks(max_message_size=2000)
    emulator = served.emulator
    in_a, in_b = emulator.connect(A), emulator.connect(B)
    big = ev(A, 2, blob="x" * 3000)
    a1, b1, a3 = ev(A, 1), ev(B, 1), ev(A, 3)
    async with relayed(pg_url, served.adapter()) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, a1, big, b1, a3)
        assert await relay.drain() == 4
        rows = {row.event_id: row for row in await stored_rows(pg_url)}
        assert rows[big.id].state == "dead"
        assert "PAYLOAD_TOO_LARGE" in (rows[big.id].last_error or "")
        assert {rows[e.id].state for e in (a1, b1, a3)} == {"sent"}
        assert [dead.event_id for dead in await outbox.dead()] == [big.id]
    assert ids(got(emulator, A, in_a)) == ids([a1, a3])
    assert [event.seq for event in got(emulator, A, in_a)] == [1, 3]  # 2: the dead one
    assert ids(got(emulator, B, in_b)) == [b1.id]


async def test_a_room_id_liveblocks_cannot_hold_is_refused_before_the_commit(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    served = await serve_liveblocks()
    async with relayed(pg_url, served.adapter()) as (outbox, _):
        with pytest.raises(InvalidChannel, match="at most 128"):
            await enqueue_committed(pg_url, outbox, ev("r" * 129, 1))
    assert await stored_rows(pg_url) == []
    assert served.emulator.requests == {}


async def test_a_wrong_secret_fails_authentication_and_the_rows_stay_pending(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    served = await serve_liveblocks()
    adapter = served.adapter("sk_not_this_project")
    with pytest.raises(AuthenticationFailed, match="INVALID_SECRET_KEY"):
        await adapter.ping()
    async with relayed(pg_url, adapter) as (outbox, relay):
        await enqueue_committed(pg_url, outbox, ev(A, 1), ev(B, 1))
        assert await relay.drain() == 2
        rows = await stored_rows(pg_url)
        assert {(row.state, row.attempts) for row in rows} == {("pending", 1)}
        assert all("check the secret key" in (row.last_error or "") for row in rows)
        assert "sk_not_this_project" not in "".join(row.last_error or "" for row in rows)
        assert relay.stats.dead == 0


# -- reading: history from the outbox, presence from active users -----------------------------


async def test_bridge_history_comes_from_the_outbox_with_event_id_cursors(
    pg_url: str, serve_liveblocks: ServeLiveblocks
) -> None:
    served = await serve_liveblocks()
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
        latest = await bridge.history(A, limit=2)
        assert ids(latest.events) == ids(a[3:]) and latest.has_more
        older = await bridge.history(A, limit=2, before=a[3].id)
        assert ids(older.events) == ids(a[1:3])
        newer = await bridge.history(A, limit=2, after=a[0].id)
        assert ids(newer.events) == ids(a[1:3])
        with pytest.raises(CursorNotFound):
            await bridge.history(A, after=pending.id)
    assert set(served.emulator.requests) == {f"POST {BROADCAST}"}  # never asked for history


async def test_presence_and_occupancy_follow_the_browsers_in_the_room(
    serve_liveblocks: ServeLiveblocks,
) -> None:
    served = await serve_liveblocks()
    emulator = served.emulator
    room = "presence-room.1"
    async with Bridge(served.adapter()) as bridge:
        assert await bridge.presence(room) == []
        assert await bridge.occupancy(room) == Occupancy(room, subscribers=0, members=0)
        emulator.connect(room, "bob", {"name": "Bob"})
        first_tab = emulator.connect(room, "alice", {"name": "Alice"})
        emulator.connect(room, "alice", {"name": "Alice (2)"})
        emulator.connect(room)  # a listener without a user id
        assert await bridge.presence(room) == [
            Member("alice", {"name": "Alice"}),
            Member("bob", {"name": "Bob"}),
        ]
        assert await bridge.occupancy(room) == Occupancy(room, subscribers=4, members=2)
        emulator.disconnect(room, connection_id=first_tab)
        assert (await bridge.presence(room))[0] == Member("alice", {"name": "Alice (2)"})
        emulator.disconnect(room, user_id="alice")
        assert [member.id for member in await bridge.presence(room)] == ["bob"]
    assert emulator.requests["GET /v2/rooms/{roomId}/active_users"] == 6


# -- browser tokens -----------------------------------------------------------------------------


async def test_tokens_come_from_liveblocks_for_that_user_and_room(
    serve_liveblocks: ServeLiveblocks,
) -> None:
    served: ServedLiveblocks = await serve_liveblocks()
    emulator = served.emulator
    async with served.adapter() as adapter:
        with pytest.raises(CapabilityNotSupported, match="authorize_room"):
            Bridge(adapter).authorize(A, user=Member("u1"))
        grant = await adapter.authorize_room(A, user=Member("u1", {"name": "Ada"}))
        assert set(grant) == {"token"}
        claims = emulator.verify_token(grant["token"])
        assert (claims["k"], claims["uid"], claims["ui"]) == ("acc", "u1", {"name": "Ada"})
        assert claims["perms"] == {A: ["room:read", "room:presence:write"]}
        ident = await adapter.identify_user(Member("u1"), groups=["staff"])
        claims = emulator.verify_token(ident["token"])
        assert (claims["k"], claims["gids"]) == ("id", ["staff"])
    assert emulator.requests == {"POST /v2/authorize-user": 1, "POST /v2/identify-user": 1}


def test_the_adapter_url_names_the_emulator() -> None:
    adapter = LiveblocksAdapter.from_url("liveblocks://sk_emulator_secret@127.0.0.1:8081?tls=false")
    assert adapter.name == "liveblocks://***@127.0.0.1:8081?tls=false"
