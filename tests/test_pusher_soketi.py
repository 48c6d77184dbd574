"""The Pusher adapter and the outbox against a real Pusher-protocol server (soketi).

Everything here goes over the network to soketi, as it would to Pusher: the
relay publishes committed outbox rows through a ``Bridge`` to a ``PusherAdapter``,
and ``PusherSocket`` clients subscribe, authorised by ``adapter.authorize`` (soketi
checks the signatures). What is asserted is what arrived: the envelopes a socket
received (decoded with ``Event.decode``), what soketi reports about presence and
occupancy, the webhooks it sent, and what the outbox table says. soketi is killed
and restarted for real. Every wait is a bounded poll; nothing asserts a duration.
"""

# Each socket wait takes its own ``timeout=``, as in pusher_ws.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpx
import pytest
from outbox_fixtures import (
    enqueue_committed,
    make_due,
    no_relay_connected,
    pg_connection,
    stored_rows,
    wait_until,
)
from pusher_ws import PusherSocket, SocketClosed, SubscriptionError
from soketi_server import SoketiServer, WebhookReceiver, unique_name

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters import pusher_auth
from realtime_bridge.adapters.base import Member, Occupancy
from realtime_bridge.adapters.pusher import PusherAdapter
from realtime_bridge.errors import AuthenticationFailed, InvalidWebhook
from realtime_bridge.outbox import Outbox
from realtime_bridge.testing import instant_retry
from realtime_bridge.webhooks import WebhookEvent, WebhookKind

pytest_plugins = ["conftest_outbox", "conftest_pusher"]

#: Upper bound of every wait for something soketi or the relay does (a bound, not a claim).
WAIT = 10.0
#: Waits that span a soketi restart (its start alone is bounded by 20 s in soketi_server).
RESTART_WAIT = 30.0
EVENT_TYPE = "order.updated"


# -- helpers ----------------------------------------------------------------------------


def pusher_url(server: SoketiServer, *, secret: str | None = None) -> str:
    """The ``pusher://`` URL of ``server`` (signed with another ``secret`` if given)."""
    return (
        f"pusher://{server.key}:{secret or server.secret}@{server.host}:{server.port}"
        f"/{server.app_id}?tls=false"
    )


def adapter_for(
    server: SoketiServer, *, secret: str | None = None, **options: Any
) -> PusherAdapter:
    return PusherAdapter.from_url(pusher_url(server, secret=secret), **options)


class RecordingTransport(httpx.AsyncBaseTransport):
    """httpx's real network transport, noting the path and body of every request."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, request.content))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def ev(channel: str, n: int, **data: Any) -> Event:
    return Event(channel=channel, type=EVENT_TYPE, data={"n": n, **data})


def ids(events: Iterable[Event]) -> list[str]:
    return [event.id for event in events]


def envelope(message: dict[str, Any]) -> Event:
    """The event a socket received: its Pusher ``data`` is the envelope, decoded."""
    data = message["data"]
    event = Event.decode(data if isinstance(data, str) else json.dumps(data))
    # Pusher's event name is the event's type, on the event's own channel.
    assert (message["event"], message["channel"]) == (event.type, event.channel), message
    return event


async def received(ws: PusherSocket, n: int, timeout: float = WAIT) -> list[Event]:
    """The next ``n`` events ``ws`` receives, decoded."""
    return [envelope(message) for message in await ws.events(n, timeout=timeout)]


async def read_until(
    ws: PusherSocket, into: list[Event], done: Callable[[], bool], timeout: float = WAIT
) -> None:
    """Append what ``ws`` receives to ``into`` until ``done()``; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not done():
            into.append(envelope(await ws.next_event(timeout=timeout)))


async def read_until_closed(ws: PusherSocket, into: list[Event]) -> None:
    """Append every event ``ws`` received before its connection ended."""
    while True:
        try:
            into.append(envelope(await ws.next_event(timeout=WAIT)))
        except SocketClosed:
            return


async def join_private(ws: PusherSocket, adapter: PusherAdapter, channel: str) -> None:
    auth = adapter.authorize(channel, socket_id=ws.socket_id)
    await ws.subscribe(channel, auth=auth["auth"])


async def join_presence(
    ws: PusherSocket, adapter: PusherAdapter, channel: str, member: Member
) -> Any:
    """Join as ``member``; returns soketi's confirmation (``{"presence": {...}}``)."""
    auth = adapter.authorize(channel, user=member, socket_id=ws.socket_id)
    return await ws.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])


async def eventually_equal(
    read: Callable[[], Awaitable[Any]], expected: Any, within: float = WAIT
) -> None:
    """Poll ``read()`` until it returns ``expected``; fail with the last value after ``within``."""
    last: list[Any] = []

    async def matches() -> bool:
        last[:] = [await read()]
        return bool(last[0] == expected)

    try:
        await wait_until(matches, within=within, step=0.05)
    except pytest.fail.Exception:
        pytest.fail(f"expected {expected!r} within {within}s, last read {last!r}")


def first_occurrences(observed: Iterable[Event]) -> list[Event]:
    """``observed`` without repeats (at least once: a retried publish arrives twice);
    every repeat must be the very same event."""
    first: dict[str, Event] = {}
    kept: list[Event] = []
    for event in observed:
        seen = first.get(event.id)
        if seen is None:
            first[event.id] = event
            kept.append(event)
        else:
            assert (event.channel, event.seq, event.data) == (seen.channel, seen.seq, seen.data)
    return kept


def by_channel(events: Iterable[Event]) -> dict[str, list[Event]]:
    grouped: defaultdict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event.channel].append(event)
    return grouped


async def signed_post(server: SoketiServer, path: str, payload: Any) -> httpx.Response:
    """A correctly signed POST to soketi's HTTP API, bypassing the adapter."""
    body = json.dumps(payload).encode()
    query = pusher_auth.sign_query(
        "POST", path, {}, body, key=server.key, secret=server.secret, timestamp=round(time.time())
    )
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        return await client.post(
            path, params=query, content=body, headers={"Content-Type": "application/json"}
        )


# -- 1. committed events reach subscribers of every kind of channel ----------------------


@pytest.mark.postgres
async def test_committed_events_reach_public_private_and_presence_subscribers_in_commit_order(
    soketi: SoketiServer, pg_url: str
) -> None:
    public = unique_name("orders.")
    private = unique_name("private-orders.")
    presence = unique_name("presence-room.")
    adapter = adapter_for(soketi)
    forger_adapter = adapter_for(soketi, secret="not-the-secret")
    async with (
        Outbox(pg_url, bridge=Bridge(adapter)) as outbox,
        forger_adapter,
        PusherSocket.connect(soketi) as public_ws,
        PusherSocket.connect(soketi) as private_ws,
        PusherSocket.connect(soketi) as presence_ws,
        PusherSocket.connect(soketi) as forger,
    ):
        assert await public_ws.subscribe(public) is None
        await join_private(private_ws, adapter, private)
        joined = await join_presence(
            presence_ws, adapter, presence, Member("viewer-1", {"name": "Viewer"})
        )
        assert joined["presence"]["ids"] == ["viewer-1"]
        assert joined["presence"]["hash"] == {"viewer-1": {"name": "Viewer"}}

        # Forged auths are refused by soketi: signed with another secret, signed for another
        # socket, and a presence member who claims to be someone else.
        wrong_secret = forger_adapter.authorize(private, socket_id=forger.socket_id)
        other_socket = adapter.authorize(private, socket_id=private_ws.socket_id)
        as_guest = adapter.authorize(presence, user=Member("guest"), socket_id=forger.socket_id)
        attempts = [
            (private, wrong_secret["auth"], None),
            (private, other_socket["auth"], None),
            (presence, as_guest["auth"], json.dumps({"user_id": "admin"})),
        ]
        for channel, auth, channel_data in attempts:
            with pytest.raises(SubscriptionError) as refused:
                await forger.subscribe(channel, auth=auth, channel_data=channel_data)
            assert refused.value.data["status"] == 401, refused.value.data
        assert await adapter.occupancy(private) == Occupancy(private, subscribers=1, members=0)
        assert [member.id for member in await adapter.presence(presence)] == ["viewer-1"]

        # Interleaved commits over the three channels; data with non-ASCII text.
        commits = [
            [public, private],
            [presence, public, public],
            [private, presence, private],
            [public, presence],
        ]
        sent: dict[str, list[Event]] = {public: [], private: [], presence: []}
        for commit in commits:
            batch = [ev(channel, len(sent[channel]) + 1, note="café ✓") for channel in commit]
            for event in batch:
                sent[event.channel].append(event)
            await enqueue_committed(pg_url, outbox, *batch)

        relay = outbox.relay(batch_size=4)  # several claims, each channel across them
        try:
            assert await relay.drain() == 10
        finally:
            await relay.aclose()

        for ws, channel in ((public_ws, public), (private_ws, private), (presence_ws, presence)):
            got = await received(ws, len(sent[channel]))
            assert ids(got) == ids(sent[channel]), channel  # commit order, each once
            assert [event.seq for event in got] == list(range(1, len(got) + 1)), channel
            for arrived, enqueued in zip(got, sent[channel], strict=True):
                assert (arrived.type, arrived.channel, arrived.data) == (
                    enqueued.type,
                    enqueued.channel,
                    enqueued.data,
                )
                assert arrived.ts is not None

    rows = await stored_rows(pg_url)
    assert [(row.state, row.attempts) for row in rows] == [("sent", 0)] * 10


# -- 2. more than Pusher's 10 events per batch ---------------------------------------------


@pytest.mark.postgres
async def test_a_backlog_of_35_events_on_one_channel_arrives_whole_and_in_order(
    soketi: SoketiServer, pg_url: str
) -> None:
    channel = unique_name("orders.")
    # soketi, like Pusher, refuses a batch of more than 10 events: splitting is needed.
    too_many = [{"name": EVENT_TYPE, "channel": channel, "data": "{}"} for _ in range(11)]
    refusal = await signed_post(soketi, f"/apps/{soketi.app_id}/batch_events", {"batch": too_many})
    assert refusal.json()["code"] == 400, refusal.text

    transport = RecordingTransport()
    adapter = adapter_for(soketi, transport=transport)
    async with (
        Outbox(pg_url, bridge=Bridge(adapter)) as outbox,
        PusherSocket.connect(soketi) as ws,
    ):
        await ws.subscribe(channel)
        events = [ev(channel, n) for n in range(1, 36)]
        await enqueue_committed(pg_url, outbox, *events[:20])
        await enqueue_committed(pg_url, outbox, *events[20:])
        relay = outbox.relay()  # one claim of all 35: the Bridge splits it for Pusher
        try:
            assert await relay.drain() == 35
        finally:
            await relay.aclose()

        got = await received(ws, 35)
        assert ids(got) == ids(events)
        assert [event.seq for event in got] == list(range(1, 36))
        assert [event.data for event in got] == [event.data for event in events]

        batches = [
            len(json.loads(body)["batch"])
            for path, body in transport.requests
            if path.endswith("/batch_events")
        ]
        assert batches == [10, 10, 10, 5]
        assert outbox.bridge.stats()[adapter.name]["failures"] == 0

    assert {row.state for row in await stored_rows(pg_url)} == {"sent"}


# -- 3. socket_id exclusion ---------------------------------------------------------------


async def test_trigger_with_socket_id_reaches_others_but_not_the_sender(
    soketi: SoketiServer,
) -> None:
    first, second = unique_name("orders."), unique_name("orders.")
    adapter = adapter_for(soketi)
    async with (
        adapter,
        PusherSocket.connect(soketi) as sender,
        PusherSocket.connect(soketi) as other,
    ):
        for ws in (sender, other):
            await ws.subscribe(first)
            await ws.subscribe(second)

        echo = Event(channel=first, type="cart.updated", data={"by": sender.socket_id})
        assert (await adapter.trigger([first, second], echo, socket_id=sender.socket_id)).published
        got = [(message["channel"], message["data"]["id"]) for message in await other.events(2)]
        assert sorted(got) == sorted([(first, echo.id), (second, echo.id)])

        # A later event for everyone: the sender's next event is this one, so the echo,
        # triggered before it on the same server, never reached the sender.
        marker = Event(channel=first, type="cart.marker", data={})
        await adapter.trigger([first], marker)
        assert ids(await received(sender, 1)) == [marker.id]
        assert ids(await received(other, 1)) == [marker.id]


# -- 4. presence and occupancy ------------------------------------------------------------


async def test_presence_and_occupancy_follow_real_clients(soketi: SoketiServer) -> None:
    room = unique_name("presence-room.")
    lobby = unique_name("orders.")
    adapter = adapter_for(soketi)
    bridge = Bridge(adapter)
    async with (
        bridge,
        PusherSocket.connect(soketi) as alice,
        PusherSocket.connect(soketi) as bob,
    ):
        await join_presence(alice, adapter, room, Member("alice", {"name": "Alice"}))
        joined = await join_presence(bob, adapter, room, Member("bob", {"name": "Bob"}))
        # The member info signed by authorize() is what the other members see.
        assert joined["presence"]["hash"] == {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}

        assert [member.id for member in await bridge.presence(room)] == ["alice", "bob"]
        assert [member.id for member in await adapter.presence(room)] == ["alice", "bob"]
        assert await bridge.occupancy(room) == Occupancy(room, subscribers=None, members=2)

        await bob.close()  # bob's tab closes: he leaves the room

        async def member_ids() -> list[str]:
            return [member.id for member in await bridge.presence(room)]

        await eventually_equal(member_ids, ["alice"])
        await eventually_equal(
            lambda: bridge.occupancy(room), Occupancy(room, subscribers=None, members=1)
        )

        await alice.unsubscribe(room)
        await eventually_equal(member_ids, [])
        await eventually_equal(
            lambda: adapter.occupancy(room), Occupancy(room, subscribers=0, members=0)
        )

    async with (
        adapter_for(soketi) as reader,
        PusherSocket.connect(soketi) as one,
        PusherSocket.connect(soketi) as two,
        PusherSocket.connect(soketi) as three,
    ):
        for ws in (one, two, three):
            await ws.subscribe(lobby)
        await eventually_equal(
            lambda: reader.occupancy(lobby), Occupancy(lobby, subscribers=3, members=0)
        )
        await three.close()
        await eventually_equal(
            lambda: reader.occupancy(lobby), Occupancy(lobby, subscribers=2, members=0)
        )


# -- 5. webhooks ---------------------------------------------------------------------------


async def verified_webhooks(
    receiver: WebhookReceiver,
    adapter: PusherAdapter,
    done: Callable[[list[WebhookEvent]], bool],
    within: float = WAIT,
) -> list[WebhookEvent]:
    """Every delivery so far through ``adapter.verify_webhook`` (any refusal fails the
    test), polled until ``done`` holds for the normalised events."""
    deadline = time.monotonic() + within
    while True:
        events = [
            event
            for delivery in list(receiver.deliveries)
            for event in adapter.verify_webhook(delivery.headers, delivery.body)
        ]
        if done(events):
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"webhooks incomplete within {within}s: {events!r}")
        await asyncio.sleep(0.05)


async def test_webhooks_are_verified_and_normalised_and_a_tampered_one_refused(
    soketi_with_webhooks: SoketiServer, webhook_receiver: WebhookReceiver
) -> None:
    server = soketi_with_webhooks
    chat = unique_name("private-chat.")
    room = unique_name("presence-room.")
    adapter = adapter_for(server)
    async with (
        adapter,
        PusherSocket.connect(server) as alice,
        PusherSocket.connect(server) as bob,
    ):
        await join_private(alice, adapter, chat)
        await join_private(bob, adapter, chat)
        await join_presence(alice, adapter, room, Member("alice", {"name": "Alice"}))
        await join_presence(bob, adapter, room, Member("bob", {"name": "Bob"}))
        await alice.trigger_client_event(chat, "client-typing", {"who": "alice"})
        assert (await bob.next_event(timeout=WAIT))["event"] == "client-typing"
        for ws, channel in ((bob, room), (alice, room), (alice, chat), (bob, chat)):
            await ws.unsubscribe(channel)
        alice_socket = alice.socket_id

        expected = sorted(
            [
                (WebhookKind.CHANNEL_OCCUPIED, chat, None),
                (WebhookKind.CHANNEL_OCCUPIED, room, None),
                (WebhookKind.MEMBER_ADDED, room, "alice"),
                (WebhookKind.MEMBER_ADDED, room, "bob"),
                (WebhookKind.CLIENT_EVENT, chat, None),
                (WebhookKind.MEMBER_REMOVED, room, "bob"),
                (WebhookKind.MEMBER_REMOVED, room, "alice"),
                (WebhookKind.CHANNEL_VACATED, room, None),
                (WebhookKind.CHANNEL_VACATED, chat, None),
            ]
        )

        def summary(events: Sequence[WebhookEvent]) -> list[tuple[WebhookKind, str, str | None]]:
            return sorted((event.kind, event.channel, event.user_id) for event in events)

        events = await verified_webhooks(
            webhook_receiver, adapter, lambda events: len(events) >= len(expected)
        )
    assert summary(events) == expected
    assert all(event.vendor == "pusher" and event.name == event.kind.value for event in events)
    assert all(event.at.tzinfo is not None for event in events)
    [client] = [event for event in events if event.kind is WebhookKind.CLIENT_EVENT]
    assert (client.event, client.data, client.socket_id) == (
        "client-typing",
        {"who": "alice"},
        alice_socket,
    )

    # One byte of a genuine delivery altered (still valid JSON): refused.
    [delivery] = [d for d in webhook_receiver.deliveries if b"client-typing" in d.body]
    assert adapter.verify_webhook(delivery.headers, delivery.body)
    tampered = delivery.body.replace(b'"alice"', b'"alicf"', 1)
    assert len(tampered) == len(delivery.body) and tampered != delivery.body
    json.loads(tampered)
    with pytest.raises(InvalidWebhook, match="Signature"):
        adapter.verify_webhook(delivery.headers, tampered)
    # And an app with another secret refuses the genuine one.
    with pytest.raises(InvalidWebhook):
        adapter_for(server, secret="not-the-secret").verify_webhook(delivery.headers, delivery.body)


# -- 6. soketi killed and restarted while the relay streams ---------------------------------


class Producer:
    """One connection committing one event per transaction, round-robin over channels,
    ``data["n"]`` numbering each channel's events in commit order."""

    def __init__(self, url: str, outbox: Outbox, channels: Sequence[str]) -> None:
        self.url = url
        self.outbox = outbox
        self.channels = channels
        self.committed: list[Event] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        counts = dict.fromkeys(self.channels, 0)
        async with pg_connection(self.url) as conn:
            while not self.stop.is_set():
                channel = self.channels[len(self.committed) % len(self.channels)]
                counts[channel] += 1
                event = ev(channel, counts[channel])
                async with conn.transaction():
                    await self.outbox.enqueue(conn, event)
                self.committed.append(event)
                await asyncio.sleep(0.02)  # pacing: a steady stream, not a flood

    async def committed_at_least(self, n: int) -> None:
        async def enough() -> bool:
            return len(self.committed) >= n

        await wait_until(enough, within=WAIT)


@contextlib.asynccontextmanager
async def producing(producer: Producer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(producer.run())
    try:
        yield task
    finally:
        producer.stop.set()
        await task


@pytest.mark.postgres
async def test_nothing_is_lost_when_soketi_is_killed_and_restarted_mid_stream(
    fresh_soketi: SoketiServer, pg_url: str
) -> None:
    server = fresh_soketi
    channels = [unique_name("orders."), unique_name("orders.")]
    adapter = adapter_for(server)
    # One attempt per relay cycle (the relay does the retrying); a short breaker cool-down
    # so the relay's next try after the restart is not refused by an open circuit.
    bridge = Bridge(adapter, retry=instant_retry(1), reset_timeout=0.2)
    async with Outbox(pg_url, bridge=bridge) as outbox:
        assert bridge.history_source is outbox  # Pusher keeps no history: the outbox does
        producer = Producer(pg_url, outbox, channels)
        before: list[Event] = []  # what the subscriber got before the kill
        after: list[Event] = []  # what it got after reconnecting
        async with (
            PusherSocket.connect(server) as ws,
            # Quick retries so the stream resumes soon after the restart; an attempt limit
            # no slow restart can reach (dead-lettering is not what this test is about).
            outbox.relay(
                poll_interval=0.05, base_delay=0.05, max_delay=0.5, max_attempts=10_000
            ) as relay,
        ):
            for channel in channels:
                await ws.subscribe(channel)
            async with producing(producer) as task:
                await read_until(ws, before, lambda: len(before) >= 6)  # streaming live

                await asyncio.to_thread(server.stop)  # SIGKILL, like a crash
                await ws.wait_closed(timeout=WAIT)
                await read_until_closed(ws, before)
                killed_at = len(producer.committed)

                await producer.committed_at_least(killed_at + 10)
                down_rows: list[Any] = []

                async def tried_while_down() -> bool:
                    """The relay tried (and failed) to publish events committed after the kill."""
                    down = set(ids(producer.committed[killed_at:]))
                    rows = await stored_rows(pg_url)
                    down_rows[:] = [row for row in rows if row.event_id in down]
                    return any(row.attempts > 0 for row in down_rows)

                await wait_until(tried_while_down, within=WAIT)
                assert len(down_rows) >= 10
                assert {row.state for row in down_rows} == {"pending"}  # none sent while down

                await asyncio.to_thread(server.restart)  # the same port
                await ws.reconnect(timeout=RESTART_WAIT)  # resubscribes its channels
                subscribed_at = len(producer.committed)
                await producer.committed_at_least(subscribed_at + 10)
                assert not task.done()
            committed = producer.committed
            last = {channel: by_channel(committed)[channel][-1].id for channel in channels}

            async def all_sent() -> bool:
                status = await outbox.status()
                return (status.pending, status.dead, status.sent) == (0, 0, len(committed))

            await wait_until(all_sent, within=RESTART_WAIT)

            def got_the_last() -> bool:
                return set(last.values()) <= set(ids(after))

            await read_until(ws, after, got_the_last)

        assert relay.stats.retried > 0 and relay.stats.dead == 0
        assert bridge.stats()[adapter.name]["failures"] > 0
        assert len(committed) > killed_at + 10  # events were enqueued while soketi was down

        # The outbox: every event sent once in the table, seq = commit order per channel.
        rows = await stored_rows(pg_url)
        assert sorted(row.event_id for row in rows) == sorted(ids(committed))
        assert {row.state for row in rows} == {"sent"}
        seq_of = {row.event_id: row.seq for row in rows}
        assert all(seq_of[event.id] == event.data["n"] for event in committed)

        # History, served from the outbox through the Bridge: the whole of each channel.
        expected = by_channel(committed)
        for channel in channels:
            page = await bridge.history(channel, limit=1000)
            assert not page.has_more
            assert ids(page.events) == ids(expected[channel])
            assert [event.seq for event in page] == list(range(1, len(expected[channel]) + 1))

        # Live deliveries: before the kill, each channel from seq 1 without a gap; after
        # the reconnect, a gapless run up to the last event, including everything
        # committed once the subscriber was back.
        for channel, events in by_channel(first_occurrences(before)).items():
            assert [event.seq for event in events] == list(range(1, len(events) + 1)), channel
        live_after = by_channel(first_occurrences(after))
        for channel in channels:
            seqs = [event.seq for event in live_after[channel]]
            total = len(expected[channel])
            assert seqs == list(range(seqs[0], total + 1)), (channel, seqs)
        must_arrive = set(ids(committed[subscribed_at:]))
        assert must_arrive <= set(ids(after))
        for event in first_occurrences(after):
            assert event.data == {"n": event.seq}


# -- 7. terminating a user's connections ------------------------------------------------------


async def test_terminate_user_connections_disconnects_every_socket_of_that_user(
    soketi: SoketiServer,
) -> None:
    banned, other = unique_name("user-"), unique_name("user-")
    adapter = adapter_for(soketi)
    async with (
        adapter,
        PusherSocket.connect(soketi) as laptop,
        PusherSocket.connect(soketi) as phone,
        PusherSocket.connect(soketi) as bystander,
    ):
        for ws, user in ((laptop, banned), (phone, banned), (bystander, other)):
            auth = adapter.authorize(
                None, user=Member(user, {"name": user}), socket_id=ws.socket_id
            )
            signed_in = await ws.signin(auth["auth"], auth["user_data"])
            assert json.loads(signed_in["user_data"])["id"] == user

        await adapter.terminate_user_connections(banned)

        assert await laptop.wait_closed(timeout=WAIT) == 4009
        assert await phone.wait_closed(timeout=WAIT) == 4009
        await bystander.ping(timeout=WAIT)  # another user's connection is untouched
        assert not bystander.closed


# -- 8. errors from the real server ------------------------------------------------------------


@pytest.mark.postgres
async def test_a_wrong_secret_is_authentication_failed_and_the_relay_keeps_the_events(
    soketi: SoketiServer, pg_url: str
) -> None:
    channel = unique_name("orders.")
    wrong = "not-the-secret"
    events = [ev(channel, n) for n in range(1, 4)]

    async with adapter_for(soketi, secret=wrong) as bad:
        for call in (
            lambda: bad.publish(events[:1]),  # /events
            lambda: bad.publish(events),  # /batch_events
            lambda: bad.trigger([channel], events[0]),
            lambda: bad.occupancy(channel),
        ):
            with pytest.raises(AuthenticationFailed) as failed:
                await call()
            assert "401" in str(failed.value) and wrong not in str(failed.value)

    async with (
        Outbox(pg_url, bridge=Bridge(adapter_for(soketi, secret=wrong))) as outbox,
        PusherSocket.connect(soketi) as ws,
    ):
        await ws.subscribe(channel)
        await enqueue_committed(pg_url, outbox, *events)
        relay = outbox.relay(base_delay=60.0)  # a retried row waits until the test makes it due
        try:
            for attempts in (1, 2):
                assert await relay.drain() == 3
                rows = await stored_rows(pg_url)
                assert [(row.state, row.attempts) for row in rows] == [("pending", attempts)] * 3
                assert all("401" in (row.last_error or "") for row in rows)
                await make_due(pg_url)
        finally:
            await relay.aclose()
        assert (relay.stats.retried, relay.stats.dead, relay.stats.published) == (6, 0, 0)
        status = await outbox.status()
        assert (status.pending, status.dead, status.sent) == (3, 0, 0)

        # The secret is fixed: the kept events go out, in order, with their seqs.
        await no_relay_connected(pg_url)
        async with Outbox(pg_url, bridge=Bridge(adapter_for(soketi))) as fixed:
            relay = fixed.relay()
            try:
                assert await relay.drain() == 3
            finally:
                await relay.aclose()
        got = await received(ws, 3)
        assert ids(got) == ids(events)
        assert [event.seq for event in got] == [1, 2, 3]
    assert {row.state for row in await stored_rows(pg_url)} == {"sent"}
