"""The adapter contract: one behaviour suite, run against every adapter.

Each test takes the ``adapter`` fixture (``tests/conftest.py``), which is
parametrised over every adapter that has joined the suite: memory, a real Redis,
Pusher (against a real soketi, a Pusher-protocol server), Ably (against the Ably
emulator of ``realtime_bridge.testing.ably``, served over HTTP, or against real Ably
with ``REALTIME_BRIDGE_TEST_ABLY_URL``: see ``test_ably_live.py``) and Supabase (against
the Supabase emulator of ``realtime_bridge.testing.supabase``, or a real project with
``REALTIME_BRIDGE_TEST_SUPABASE_URL``: see ``test_supabase_live.py``). A test that needs
an optional capability is marked ``@pytest.mark.needs(Capability.X)`` and is
generated only for the adapters that declare it (Pusher has no history and no
idempotent publish, so it has no history or dedupe tests at all, rather than
skipped ones); ``test_capabilities_match_the_methods`` checks on every adapter
that what it does not declare is refused before any I/O. Where adapters declaring
the same capability differ as the contract allows, ``@pytest.mark.trait(...)``
selects those that have the trait: a history capped at N events (memory, Redis;
Ably keeps history for a time instead, tested in ``test_ably_emulated.py``), and
duplicates reported in ``PublishResult.duplicates`` (memory, Redis; Ably drops them
silently). What every idempotent adapter must do, each event in history once, is
asserted for all of them.

Where a test needs to look from outside the contract (a live subscriber, entering
presence the way a client would), the ``clients`` fixture gives this adapter's
``Clients``: a small helper per adapter that knows how its clients do that (for
Pusher: real WebSocket clients on soketi, authorised by ``adapter.authorize``; for
Ably: the emulator's view of what Ably received and its presence set; for Supabase:
Supabase's own realtime client, subscribed and tracking presence). An adapter
that joins the suite without such a helper has those tests skipped, naming it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import pytest
from conftest_ably import EmulatorControl, live_ably_url
from conftest_liveblocks import LiveblocksClients, liveblocks_clients_for_suite
from conftest_nats import NatsClients
from conftest_supabase import Project, RealtimeClients, live_supabase_url
from pusher_ws import PusherSocket
from pydantic import BaseModel

from realtime_bridge import (
    Adapter,
    Capability,
    CapabilityNotSupported,
    CursorNotFound,
    Event,
    HistoryPage,
    InvalidEvent,
    Member,
    Occupancy,
    PayloadTooLarge,
    PermanentError,
    PublishResult,
    new_event_id,
)
from realtime_bridge.adapters.ably import AblyAdapter
from realtime_bridge.adapters.base import Adapter as BaseAdapter
from realtime_bridge.adapters.liveblocks import LiveblocksAdapter
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.adapters.nats import NatsAdapter
from realtime_bridge.adapters.pusher import PusherAdapter
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.adapters.supabase import SupabaseAdapter
from realtime_bridge.events import channel_kind

if TYPE_CHECKING:
    from soketi_server import SoketiServer

T = TypeVar("T")
NextEvent = Callable[[], Awaitable[Event]]

#: How long a bounded wait may last before the test fails. Not a timing assertion:
#: the waits below end as soon as the condition holds.
PATIENCE = 5.0

needs = pytest.mark.needs
trait = pytest.mark.trait


def ev(channel: str = "orders.1", n: int = 0, **fields: Any) -> Event:
    fields.setdefault("data", {"n": n})
    return Event(channel=channel, type="order.updated", **fields)


def ids(events: HistoryPage | list[Event] | tuple[Event, ...]) -> list[str]:
    return [event.id for event in events]


async def publish_in_batches(adapter: Adapter, events: list[Event], size: int = 100) -> None:
    size = min(size, adapter.limits.max_events_per_batch)
    for start in range(0, len(events), size):
        await adapter.publish(events[start : start + size])


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Poll ``probe`` until ``done(result)``; fail after ``PATIENCE`` seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}; last saw {result!r}")
        await asyncio.sleep(0.02)


# -- per-adapter helpers: looking from outside the contract ---------------------------


class Clients:
    """What an adapter's clients do, done the way they would do it on that adapter.

    ``subscriber(channel)`` is a live subscriber (``async with ... as next_event``);
    ``enter``/``leave`` put a member on a presence channel and take it off again.
    Entering a member that is already there refreshes it (new info, new ``ttl``);
    a member not refreshed within ``ttl`` seconds lapses, as a client that stops
    heartbeating does.
    """

    #: Whether ``adapter.presence()`` reports what the app said about each member.
    shows_member_info: ClassVar[bool] = True

    def subscriber(self, channel: str) -> AbstractAsyncContextManager[NextEvent]:
        raise NotImplementedError

    async def enter(self, channel: str, member: Member, ttl: float = 60.0) -> None:
        raise NotImplementedError

    async def leave(self, channel: str, member_id: str) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Disconnect whatever is still connected."""

    def listed(self, members: list[Member]) -> list[Member]:
        """``members`` as ``adapter.presence()`` lists them on this adapter."""
        return members if self.shows_member_info else [Member(member.id) for member in members]


class SelfHostedClients(Clients):
    """Memory and Redis: the gateway enters its clients through the adapter's own API."""

    def __init__(self, adapter: MemoryAdapter | RedisAdapter) -> None:
        self.adapter = adapter

    async def enter(self, channel: str, member: Member, ttl: float = 60.0) -> None:
        await self.adapter.enter_presence(channel, member, ttl=ttl)

    async def leave(self, channel: str, member_id: str) -> None:
        await self.adapter.leave_presence(channel, member_id)


class MemoryClients(SelfHostedClients):
    adapter: MemoryAdapter

    @asynccontextmanager
    async def subscriber(self, channel: str) -> AsyncIterator[NextEvent]:
        async with self.adapter.subscribe(channel) as subscription:
            events = aiter(subscription)

            async def next_event() -> Event:
                return await asyncio.wait_for(anext(events), PATIENCE)

            yield next_event


class RedisClients(SelfHostedClients):
    adapter: RedisAdapter

    def __init__(self, adapter: RedisAdapter, url: str) -> None:
        super().__init__(adapter)
        self.url = url

    @asynccontextmanager
    async def subscriber(self, channel: str) -> AsyncIterator[NextEvent]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.adapter.keys(channel).topic)
            # Read the server's confirmation: from here on it counts us.
            confirmation = await pubsub.get_message(timeout=PATIENCE)
            assert confirmation is not None, "Redis did not confirm SUBSCRIBE"
            assert confirmation["type"] == "subscribe"

            async def next_event() -> Event:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PATIENCE)
                assert message is not None, "no live message arrived"
                entry, _, payload = message["data"].partition(b"\n")
                assert entry  # the stream entry id, for resuming from history
                return Event.decode(payload)

            yield next_event
        finally:
            await pubsub.aclose()
            await client.aclose()


@dataclass
class _Connection:
    """One browser-like connection on a presence channel."""

    socket: PusherSocket
    stack: AsyncExitStack  # holds PusherSocket.connect(...) open
    lapse: asyncio.Task[None] | None = None


class PusherClients(Clients):
    """Browsers on soketi: ``PusherSocket`` connections, authorised by ``adapter.authorize``.

    A member is one connection subscribed to the presence channel. Refreshing opens
    a new connection before closing the old one (Pusher lists a user while any of
    its connections is subscribed); leaving unsubscribes, as ``pusher.unsubscribe``
    does. Pusher has no per-member ttl: a member lapses when its connection ends,
    so a lapsing member's connection is closed ``ttl`` seconds after it entered.
    """

    shows_member_info = False  # Pusher's REST API lists member ids, not their info

    def __init__(self, adapter: PusherAdapter, server: SoketiServer) -> None:
        self.adapter = adapter
        self.server = server
        self._present: dict[tuple[str, str], _Connection] = {}
        self._lapses: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def subscriber(self, channel: str) -> AsyncIterator[NextEvent]:
        async with PusherSocket.connect(self.server) as socket:
            auth = None
            if channel_kind(channel) == "private":
                auth = self.adapter.authorize(channel, socket_id=socket.socket_id)["auth"]
            await socket.subscribe(channel, auth=auth, timeout=PATIENCE)

            async def next_event() -> Event:
                message = await socket.next_event(timeout=PATIENCE)
                # Pusher's data is the envelope as a JSON string; PusherSocket hands it
                # over parsed, so it is serialised again for Event.decode.
                event = Event.decode(json.dumps(message["data"]))
                assert (message["event"], message["channel"]) == (event.type, event.channel)
                return event

            yield next_event

    async def enter(self, channel: str, member: Member, ttl: float = 60.0) -> None:
        stack = AsyncExitStack()
        try:
            socket = await stack.enter_async_context(PusherSocket.connect(self.server))
            auth = self.adapter.authorize(channel, user=member, socket_id=socket.socket_id)
            await socket.subscribe(
                channel, auth=auth["auth"], channel_data=auth["channel_data"], timeout=PATIENCE
            )
        except BaseException:
            await stack.aclose()
            raise
        connection = _Connection(socket, stack)
        connection.lapse = asyncio.create_task(self._lapse(channel, member.id, connection, ttl))
        self._lapses.add(connection.lapse)
        connection.lapse.add_done_callback(self._lapses.discard)
        previous = self._present.pop((channel, member.id), None)
        self._present[channel, member.id] = connection
        if previous is not None:  # a refresh: the old connection goes once the new one is in
            await self._unsubscribe(channel, previous)

    async def leave(self, channel: str, member_id: str) -> None:
        connection = self._present.pop((channel, member_id), None)
        if connection is not None:
            await self._unsubscribe(channel, connection)

    async def _unsubscribe(self, channel: str, connection: _Connection) -> None:
        if connection.lapse is not None:
            connection.lapse.cancel()
        await connection.socket.unsubscribe(channel)
        # Pusher does not confirm an unsubscribe. soketi handles one connection's
        # messages in order, so once the pong is back the member has left.
        await connection.socket.ping(timeout=PATIENCE)
        await connection.stack.aclose()

    async def _lapse(
        self, channel: str, member_id: str, connection: _Connection, ttl: float
    ) -> None:
        await asyncio.sleep(ttl)  # no heartbeat: the connection ends
        if self._present.get((channel, member_id)) is connection:
            del self._present[channel, member_id]
        await connection.stack.aclose()

    async def aclose(self) -> None:
        connections, self._present = list(self._present.values()), {}
        for connection in connections:  # still present: their lapse has not begun
            if connection.lapse is not None:
                connection.lapse.cancel()
        await asyncio.gather(*self._lapses, return_exceptions=True)  # those closing finish
        for connection in connections:
            await connection.stack.aclose()


class AblyClients(Clients):
    """Ably's clients, as the emulator sees them: what reached Ably, and its presence set.

    The emulator speaks Ably's REST API only, not the realtime protocol, so no real
    subscriber can connect. ``subscriber(channel)`` therefore reads what Ably
    *received*: the messages the emulator stored on the channel after the subscriber
    attached, in Ably's order, each message's data decoded to an ``Event`` with
    ``Event.decode`` (its name and id checked against the event: the type, and
    ``<event id>:0``). That checks what Ably got and in which order, which is what
    Ably fans out to its realtime subscribers; the fan-out itself is Ably's. While
    attached, the subscriber is counted in the channel's occupancy, as a realtime
    attachment would be (``set_subscribers``).

    A member is one realtime connection on the channel: ``enter`` enters it
    (``enter_presence``: clientId the member id, data its info), entering again
    updates it on the same connection, ``leave`` removes it. Ably presence has no
    ttl a REST client sets: a member goes when its connection does (when its client
    stops heartbeating, Ably closes the connection). So a member's connection is
    ended ``ttl`` seconds after it last entered (a timer, restarted by each enter),
    and the member leaves then, as when the connection closes.
    """

    def __init__(self, adapter: AblyAdapter, control: EmulatorControl) -> None:
        self.adapter = adapter
        self.control = control
        self._attached: dict[str, int] = {}
        self._connections: dict[tuple[str, str], str] = {}
        self._lapses: dict[tuple[str, str], asyncio.Task[None]] = {}

    @asynccontextmanager
    async def subscriber(self, channel: str) -> AsyncIterator[NextEvent]:
        seen = len(await self.control.messages(channel))  # from here on, as a live subscriber
        self._attached[channel] = self._attached.get(channel, 0) + 1
        await self.control.set_subscribers(channel, self._attached[channel])
        stored: list[dict[str, Any]] = []

        async def next_event() -> Event:
            nonlocal seen, stored
            if seen >= len(stored):
                stored = await eventually(
                    lambda: self.control.messages(channel),
                    lambda found: len(found) > seen,
                    f"a message on {channel} in Ably",
                )
            message = stored[seen]
            seen += 1
            assert message.get("encoding") == "json", message  # browsers get an object
            event = Event.decode(message["data"])
            assert (message["name"], message["id"]) == (event.type, f"{event.id}:0")
            assert event.channel == channel
            return event

        try:
            yield next_event
        finally:
            self._attached[channel] -= 1
            await self.control.set_subscribers(channel, self._attached[channel])

    async def enter(self, channel: str, member: Member, ttl: float = 60.0) -> None:
        key = (channel, member.id)
        lapse = self._lapses.pop(key, None)
        if lapse is not None:
            lapse.cancel()
        connection = await self.control.enter(
            channel, member.id, member.info, connection_id=self._connections.get(key)
        )
        self._connections[key] = connection
        self._lapses[key] = asyncio.create_task(self._lapse(channel, member.id, connection, ttl))

    async def leave(self, channel: str, member_id: str) -> None:
        key = (channel, member_id)
        lapse = self._lapses.pop(key, None)
        if lapse is not None:
            lapse.cancel()
        connection = self._connections.pop(key, None)
        await self.control.leave(channel, member_id, connection)

    async def _lapse(self, channel: str, member_id: str, connection: str, ttl: float) -> None:
        await asyncio.sleep(ttl)  # no heartbeat: the connection ends, and the member with it
        if self._connections.get((channel, member_id)) == connection:
            del self._connections[channel, member_id]
            self._lapses.pop((channel, member_id), None)
        await self.control.leave(channel, member_id, connection)

    async def aclose(self) -> None:
        lapses, self._lapses = list(self._lapses.values()), {}
        for lapse in lapses:
            lapse.cancel()
        await asyncio.gather(*lapses, return_exceptions=True)
        await self.control.aclose()


class SupabaseClients(RealtimeClients, Clients):
    """Browsers on Supabase: its realtime client, as ``RealtimeClients`` (conftest_supabase)
    says. On the emulator they open with the anon key and join private channels with the
    token ``adapter.authorize`` gives (the shared emulator's policies let signed-in users
    receive there and track on ``presence-`` channels); on a live project, with its key."""

    @classmethod
    def for_suite(cls, adapter: SupabaseAdapter, request: pytest.FixtureRequest) -> Clients:
        live = live_supabase_url()
        if live is not None:
            return cls.with_key(adapter, Project.of(live))
        shared = request.getfixturevalue("shared_supabase")
        return cls.as_browsers(adapter, shared.url, shared.emulator.anon_key)


class LiveblocksSuiteClients(LiveblocksClients, Clients):
    """Browsers in Liveblocks rooms: the emulator's connections, as ``LiveblocksClients``
    (conftest_liveblocks) says."""


@pytest.fixture
async def clients(adapter: Adapter, request: pytest.FixtureRequest) -> AsyncIterator[Clients]:
    """This adapter's ``Clients``; whatever they left connected is closed afterwards."""
    made: Clients
    if isinstance(adapter, MemoryAdapter):
        made = MemoryClients(adapter)
    elif isinstance(adapter, RedisAdapter):
        made = RedisClients(adapter, request.getfixturevalue("redis_server"))
    elif isinstance(adapter, PusherAdapter):
        made = PusherClients(adapter, request.getfixturevalue("soketi"))
    elif isinstance(adapter, AblyAdapter):
        if live_ably_url() is not None:
            pytest.skip(
                "live Ably: this test needs the emulator's view of Ably's clients (what was "
                "received, presence entered, attachments); see test_ably_live.py"
            )
        made = AblyClients(adapter, EmulatorControl(request.getfixturevalue("shared_ably").url))
    elif isinstance(adapter, SupabaseAdapter):
        made = SupabaseClients.for_suite(adapter, request)
    elif isinstance(adapter, LiveblocksAdapter):
        made = LiveblocksSuiteClients(liveblocks_clients_for_suite(request))
    elif isinstance(adapter, NatsAdapter):
        made = NatsClients(adapter, request.getfixturevalue("nats_server"))
    else:
        pytest.skip(f"no client helpers for the {adapter.scheme} adapter yet")
    try:
        yield made
    finally:
        await made.aclose()


# -- publishing --------------------------------------------------------------------


async def test_publish_one_event(adapter: Adapter, clients: Clients) -> None:
    event = ev(n=1)
    async with clients.subscriber("orders.1") as next_event:
        result = await adapter.publish([event])
        assert result == PublishResult(published=1, duplicates=())
        assert await next_event() == event


@needs(Capability.BATCH)
async def test_publish_a_batch(adapter: Adapter, clients: Clients) -> None:
    events = [ev(n=i) for i in range(min(10, adapter.limits.max_events_per_batch))]
    async with clients.subscriber("orders.1") as next_event:
        result = await adapter.publish(events)
        assert result.published == len(events)
        assert result.duplicates == ()
        assert [await next_event() for _ in events] == events


async def test_a_batch_at_the_adapters_batch_limit_is_accepted(adapter: Adapter) -> None:
    size = adapter.limits.max_events_per_batch
    assert size >= 1
    events = [ev("bulk.1", n=i) for i in range(size)]
    result = await adapter.publish(events)
    assert result.published == size


async def test_an_empty_batch_is_a_no_op(adapter: Adapter) -> None:
    assert await adapter.publish([]) == PublishResult(published=0)


def _counted_once(result: PublishResult, sent: int, duplicates: set[str]) -> None:
    """Every event sent is counted published or reported a duplicate, and only duplicates
    are reported (an adapter that drops them silently counts them published)."""
    assert set(result.duplicates) <= duplicates
    assert result.published + len(result.duplicates) == sent


@needs(Capability.IDEMPOTENT, Capability.HISTORY)
async def test_the_same_event_twice_in_one_batch_is_published_once(adapter: Adapter) -> None:
    first, second = ev(n=1), ev(n=2)
    result = await adapter.publish([first, second, first])
    _counted_once(result, 3, {first.id})
    assert ids(await adapter.history("orders.1")) == [first.id, second.id]


@needs(Capability.IDEMPOTENT)
@trait("reports_duplicates")
async def test_a_duplicate_in_one_batch_is_reported(adapter: Adapter) -> None:
    first, second = ev(n=1), ev(n=2)
    result = await adapter.publish([first, second, first])
    assert result == PublishResult(published=2, duplicates=(first.id,))


@needs(Capability.IDEMPOTENT, Capability.HISTORY)
async def test_an_event_published_again_later_is_dropped(adapter: Adapter) -> None:
    first, second, third = ev(n=1), ev(n=2), ev(n=3)
    await adapter.publish([first, second])
    result = await adapter.publish([second, third, first])
    _counted_once(result, 3, {first.id, second.id})
    assert ids(await adapter.history("orders.1")) == [first.id, second.id, third.id]


@needs(Capability.IDEMPOTENT)
@trait("reports_duplicates")
async def test_an_event_published_again_later_is_reported(adapter: Adapter) -> None:
    first, second, third = ev(n=1), ev(n=2), ev(n=3)
    await adapter.publish([first, second])
    result = await adapter.publish([second, third, first])
    assert result == PublishResult(published=1, duplicates=(second.id, first.id))


@needs(Capability.IDEMPOTENT, Capability.HISTORY)
async def test_duplicates_are_recognised_by_id_not_by_content(adapter: Adapter) -> None:
    original = ev(id="order-1:v1", data={"status": "paid"})
    retry_with_new_content = ev(id="order-1:v1", data={"status": "changed"})
    await adapter.publish([original])
    result = await adapter.publish([retry_with_new_content])
    _counted_once(result, 1, {"order-1:v1"})
    page = await adapter.history("orders.1")
    assert [event.data for event in page] == [{"status": "paid"}]


@needs(Capability.IDEMPOTENT)
@trait("reports_duplicates")
async def test_a_duplicate_with_new_content_is_reported(adapter: Adapter) -> None:
    await adapter.publish([ev(id="order-1:v1", data={"status": "paid"})])
    result = await adapter.publish([ev(id="order-1:v1", data={"status": "changed"})])
    assert result == PublishResult(published=0, duplicates=("order-1:v1",))


@needs(Capability.HISTORY)
async def test_per_channel_order_is_kept(adapter: Adapter) -> None:
    events = [ev(f"room.{i % 3}", n=i) for i in range(60)]
    await adapter.publish(events[:25])
    await adapter.publish(events[25:])
    for room in ("room.0", "room.1", "room.2"):
        expected = [event.id for event in events if event.channel == room]
        page = await adapter.history(room, limit=100)
        assert ids(page) == expected
        assert [event.data["n"] for event in page] == sorted(event.data["n"] for event in page)


async def test_live_subscribers_get_each_channels_events_in_order(
    adapter: Adapter, clients: Clients
) -> None:
    rooms = ("room.0", "room.1", "room.2")
    events = [ev(rooms[i % 3], n=i) for i in range(60)]
    async with AsyncExitStack() as stack:
        next_events = [await stack.enter_async_context(clients.subscriber(r)) for r in rooms]
        await publish_in_batches(adapter, events[:25], size=25)
        await publish_in_batches(adapter, events[25:], size=35)
        for room, next_event in zip(rooms, next_events, strict=True):
            expected = [event for event in events if event.channel == room]
            assert [await next_event() for _ in expected] == expected


async def test_live_subscribers_get_only_their_channels_events(
    adapter: Adapter, clients: Clients
) -> None:
    first, second = ev("live.1", n=1), ev("live.1", n=2)
    other = ev("live.2", n=3)
    async with clients.subscriber("live.1") as next_event:
        await adapter.publish([first, other])
        await adapter.publish([second])
        assert await next_event() == first
        assert await next_event() == second  # not the other channel's event between them


@needs(Capability.IDEMPOTENT)
async def test_live_subscribers_get_each_event_once(adapter: Adapter, clients: Clients) -> None:
    first, second = ev("live.3", n=1), ev("live.3", n=2)
    other = ev("live.4", n=3)
    async with clients.subscriber("live.3") as next_event:
        await adapter.publish([first, other, first])
        await adapter.publish([first, second])
        assert await next_event() == first
        assert await next_event() == second  # never the duplicates, nor other channels


# -- history ---------------------------------------------------------------------------


@needs(Capability.HISTORY)
async def test_history_of_an_empty_channel(adapter: Adapter) -> None:
    page = await adapter.history("never.used")
    assert isinstance(page, HistoryPage)
    assert page.events == ()
    assert page.has_more is False


@needs(Capability.HISTORY)
async def test_history_is_the_newest_n_oldest_first(adapter: Adapter) -> None:
    events = [ev(n=i) for i in range(10)]
    await adapter.publish(events)
    page = await adapter.history("orders.1", limit=3)
    assert ids(page) == ids(events[7:])
    assert page.has_more is True
    assert len(page) == 3
    assert list(page) == list(page.events)
    exact = await adapter.history("orders.1", limit=10)
    assert ids(exact) == ids(events)
    assert exact.has_more is False
    more_than_kept = await adapter.history("orders.1", limit=50)
    assert ids(more_than_kept) == ids(events)
    assert more_than_kept.has_more is False


@needs(Capability.HISTORY)
async def test_history_before_a_cursor(adapter: Adapter) -> None:
    events = [ev(n=i) for i in range(10)]
    await adapter.publish(events)
    page = await adapter.history("orders.1", limit=3, before=events[6].id)
    assert ids(page) == ids(events[3:6])
    assert page.has_more is True
    rest = await adapter.history("orders.1", limit=3, before=events[3].id)
    assert ids(rest) == ids(events[0:3])
    assert rest.has_more is False
    assert (await adapter.history("orders.1", before=events[0].id)).events == ()


@needs(Capability.HISTORY)
async def test_history_after_a_cursor(adapter: Adapter) -> None:
    events = [ev(n=i) for i in range(10)]
    await adapter.publish(events)
    page = await adapter.history("orders.1", limit=3, after=events[2].id)
    assert ids(page) == ids(events[3:6])
    assert page.has_more is True
    rest = await adapter.history("orders.1", limit=4, after=events[5].id)
    assert ids(rest) == ids(events[6:10])
    assert rest.has_more is False
    newest = await adapter.history("orders.1", after=events[9].id)
    assert newest.events == ()
    assert newest.has_more is False


@needs(Capability.HISTORY)
async def test_paging_backwards_then_forwards_visits_every_event_once(adapter: Adapter) -> None:
    events = [ev(n=i) for i in range(23)]
    await adapter.publish(events)
    seen: list[str] = []
    page = await adapter.history("orders.1", limit=5)
    seen = ids(page)
    while page.has_more:
        page = await adapter.history("orders.1", limit=5, before=page.events[0].id)
        seen = ids(page) + seen
    assert seen == ids(events)
    forward: list[str] = []
    cursor = events[0].id
    while True:
        page = await adapter.history("orders.1", limit=4, after=cursor)
        forward += ids(page)
        if not page.has_more:
            break
        cursor = page.events[-1].id
    assert forward == ids(events[1:])


@needs(Capability.HISTORY)
@pytest.mark.parametrize("direction", ["before", "after"])
async def test_an_unknown_cursor_is_cursor_not_found(adapter: Adapter, direction: str) -> None:
    await adapter.publish([ev(n=1)])
    with pytest.raises(CursorNotFound) as caught:
        await adapter.history("orders.1", **{direction: new_event_id()})
    assert isinstance(caught.value, PermanentError)


@needs(Capability.HISTORY)
@pytest.mark.parametrize("direction", ["before", "after"])
async def test_a_cursor_from_another_channel_is_not_found(adapter: Adapter, direction: str) -> None:
    elsewhere = ev("orders.2")
    await adapter.publish([ev("orders.1"), elsewhere])
    with pytest.raises(CursorNotFound):
        await adapter.history("orders.1", **{direction: elsewhere.id})


async def _publish_past_the_cap(adapter: Adapter, channel: str, count: int) -> list[Event]:
    events = [ev(channel, n=i) for i in range(count)]
    await publish_in_batches(adapter, events)
    return events


@needs(Capability.HISTORY)
@trait("capped_history")
async def test_history_is_capped(adapter: Adapter) -> None:
    cap = 100  # the fixtures build every adapter with history=100
    events = await _publish_past_the_cap(adapter, "capped.1", 4 * cap)
    page = await adapter.history("capped.1", limit=1000)
    assert page.has_more is False
    # At least the newest ``cap`` are kept, in order; far fewer than all of them.
    assert cap <= len(page) < len(events)
    assert ids(page) == ids(events[-len(page) :])


@needs(Capability.HISTORY)
@trait("capped_history")
@pytest.mark.parametrize("direction", ["before", "after"])
async def test_a_trimmed_cursor_is_cursor_not_found(adapter: Adapter, direction: str) -> None:
    events = await _publish_past_the_cap(adapter, "capped.2", 400)
    assert events[0].id not in ids(await adapter.history("capped.2", limit=1000))
    with pytest.raises(CursorNotFound):
        await adapter.history("capped.2", **{direction: events[0].id})


async def test_memory_history_is_capped_exactly() -> None:
    adapter = MemoryAdapter(history=100)
    events = await _publish_past_the_cap(adapter, "capped.1", 400)
    page = await adapter.history("capped.1", limit=1000)
    assert ids(page) == ids(events[-100:])


async def test_redis_history_is_capped_exactly_with_exact_true(
    redis_server: str, redis_prefix: str
) -> None:
    adapter = RedisAdapter.from_url(f"{redis_server}?prefix={redis_prefix}&history=100&exact=true")
    try:
        events = await _publish_past_the_cap(adapter, "capped.1", 400)
        page = await adapter.history("capped.1", limit=1000)
        assert ids(page) == ids(events[-100:])
        assert page.has_more is False
    finally:
        await adapter.aclose()


class OrderData(BaseModel):
    order_id: int
    status: Literal["new", "paid"]
    lines: list[dict[str, int]]


class OrderUpdated(Event):
    type: Literal["order.updated"] = "order.updated"
    data: OrderData


def _samples() -> tuple[OrderUpdated, Event, Event]:
    """A typed event, one with awkward JSON, one with no data: all on ``orders.7``."""
    typed = OrderUpdated(
        channel="orders.7",
        data=OrderData(order_id=7, status="paid", lines=[{"sku": 1, "qty": 2}]),
        seq=41,
        ts=datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
    )
    plain = Event(
        channel="orders.7",
        type="order.noted",
        data={
            "text": 'caf\u00e9 \u2603 "quoted" \\ \n',
            "n": [0, -1, 2**53, 1.5, True, None],
            "nested": {"deep": {"list": [{}], "empty": []}},
        },
        seq=42,
        ts=datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    bare = Event(channel="orders.7", type="order.bare")
    return typed, plain, bare


def _assert_round_tripped(received: list[Event], sent: tuple[OrderUpdated, Event, Event]) -> None:
    typed, plain, bare = sent
    assert [event.encode() for event in received] == [event.encode() for event in sent]
    assert received[1:] == [plain, bare]
    assert all(isinstance(event, Event) for event in received)
    assert OrderUpdated.decode(received[0].encode()) == typed
    assert [event.seq for event in received] == [41, 42, None]
    assert received[1].ts == plain.ts
    assert received[1].ts is not None and received[1].ts.utcoffset() == timedelta(hours=2)


@needs(Capability.HISTORY)
async def test_events_round_trip_unchanged_through_history(adapter: Adapter) -> None:
    sent = _samples()
    await adapter.publish(list(sent))
    _assert_round_tripped(list(await adapter.history("orders.7")), sent)


async def test_events_reach_live_subscribers_unchanged(adapter: Adapter, clients: Clients) -> None:
    sent = _samples()
    async with clients.subscriber("orders.7") as next_event:
        await adapter.publish(list(sent))
        _assert_round_tripped([await next_event() for _ in sent], sent)


# -- presence and occupancy -------------------------------------------------------------


@needs(Capability.PRESENCE)
async def test_presence_enter_refresh_leave(adapter: Adapter, clients: Clients) -> None:
    channel = "presence-room.1"
    assert await adapter.presence(channel) == []
    await clients.enter(channel, Member("u2", {"name": "Bo"}))
    await clients.enter(channel, Member("u1", {"name": "Ann", "tags": ["a", 1]}))
    assert await adapter.presence(channel) == clients.listed(
        [Member("u1", {"name": "Ann", "tags": ["a", 1]}), Member("u2", {"name": "Bo"})]
    )
    await clients.enter(channel, Member("u1", {"name": "Ann", "away": True}))  # refresh
    assert await adapter.presence(channel) == clients.listed(
        [Member("u1", {"name": "Ann", "away": True}), Member("u2", {"name": "Bo"})]
    )
    await clients.leave(channel, "u2")
    assert await adapter.presence(channel) == clients.listed(
        [Member("u1", {"name": "Ann", "away": True})]
    )
    await clients.leave(channel, "nobody")  # leaving twice, or never there, is fine
    assert [m.id for m in await adapter.presence(channel)] == ["u1"]
    assert await adapter.presence("presence-room.2") == []


@needs(Capability.PRESENCE)
async def test_presence_members_expire_without_a_heartbeat(
    adapter: Adapter, clients: Clients
) -> None:
    channel = "presence-room.3"
    await clients.enter(channel, Member("stays"), ttl=60)
    await clients.enter(channel, Member("lapses"), ttl=0.2)
    members = await eventually(
        lambda: adapter.presence(channel),
        lambda found: [m.id for m in found] == ["stays"],
        "the member without a heartbeat to expire",
    )
    assert members == [Member("stays")]


@needs(Capability.PRESENCE)
async def test_a_refresh_extends_a_members_ttl(adapter: Adapter, clients: Clients) -> None:
    channel = "presence-room.4"
    await clients.enter(channel, Member("refreshed"), ttl=0.2)
    await clients.enter(channel, Member("refreshed"), ttl=60)
    # Entered after "refreshed" with the same short ttl: without the refresh,
    # "refreshed" would expire no later than "witness".
    await clients.enter(channel, Member("witness"), ttl=0.2)
    await eventually(
        lambda: adapter.presence(channel),
        lambda found: "witness" not in [m.id for m in found],
        "the witness to expire",
    )
    assert [m.id for m in await adapter.presence(channel)] == ["refreshed"]


async def test_memory_presence_expiry_by_an_injected_clock() -> None:
    now = [1000.0]
    adapter = MemoryAdapter(clock=lambda: now[0])
    await adapter.enter_presence("presence-x", Member("a"), ttl=10)
    await adapter.enter_presence("presence-x", Member("b"), ttl=10)
    now[0] = 1005.0
    await adapter.enter_presence("presence-x", Member("a"), ttl=10)  # heartbeat
    now[0] = 1009.999
    assert [m.id for m in await adapter.presence("presence-x")] == ["a", "b"]
    now[0] = 1010.0
    assert [m.id for m in await adapter.presence("presence-x")] == ["a"]
    assert (await adapter.occupancy("presence-x")).members == 1
    now[0] = 1015.0
    assert await adapter.presence("presence-x") == []


@needs(Capability.OCCUPANCY)
@trait("counts_subscribers")
async def test_occupancy_of_a_quiet_channel(adapter: Adapter) -> None:
    occupancy = await adapter.occupancy("quiet.1")
    assert occupancy == Occupancy("quiet.1", subscribers=0, members=0)


@needs(Capability.OCCUPANCY, Capability.PRESENCE)
async def test_occupancy_counts_members(adapter: Adapter, clients: Clients) -> None:
    channel = "presence-room.5"
    await clients.enter(channel, Member("a"))
    await clients.enter(channel, Member("b"))
    await clients.enter(channel, Member("a"))
    occupancy = await adapter.occupancy(channel)
    assert occupancy.channel == channel
    assert occupancy.members == 2


@needs(Capability.OCCUPANCY)
@trait("counts_subscribers")
async def test_occupancy_counts_subscribers(adapter: Adapter, clients: Clients) -> None:
    async with clients.subscriber("watched.1"):
        occupancy = await adapter.occupancy("watched.1")
        assert occupancy.subscribers == 1
        assert (await adapter.occupancy("watched.2")).subscribers == 0
    await eventually(
        lambda: adapter.occupancy("watched.1"),
        lambda found: found.subscribers == 0,
        "the subscriber count to drop after unsubscribing",
    )


# -- capabilities and limits ------------------------------------------------------------

#: Each optional capability's method and one call of it (on any adapter that declares it).
_OPTIONAL: dict[Capability, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    Capability.PRESENCE: ("presence", ("presence-room.1",), {}),
    Capability.HISTORY: ("history", ("orders.1",), {}),
    Capability.OCCUPANCY: ("occupancy", ("orders.1",), {}),
    Capability.CLIENT_AUTH: ("authorize", ("private-orders.1",), {"socket_id": "1234.5678"}),
    Capability.WEBHOOKS: ("verify_webhook", ({}, b"{}"), {}),
}


def _refused_before_any_io(
    method: Callable[..., object], *args: Any, **kwargs: Any
) -> CapabilityNotSupported:
    """``method(*args, **kwargs)`` raises ``CapabilityNotSupported`` before it first suspends.

    An async method is run by hand up to its first suspension: one that had
    awaited any I/O would have suspended before it could refuse.
    """
    what = f"{getattr(method, '__self__', '')!r} {method.__name__}()"
    try:
        outcome = method(*args, **kwargs)
        if inspect.isawaitable(outcome):
            steps = outcome.__await__()
            try:
                steps.send(None)
            except StopIteration:
                pass
            else:
                steps.close()
                pytest.fail(f"{what} suspended (awaited I/O?) instead of refusing at once")
    except CapabilityNotSupported as refused:
        return refused
    pytest.fail(f"{what} did not raise CapabilityNotSupported")


async def test_capabilities_match_the_methods(adapter: Adapter) -> None:
    """Declared capabilities work; every other one is refused before any I/O."""
    assert Capability.PUBLISH in adapter.capabilities
    for capability in Capability:
        assert adapter.supports(capability) == (capability in adapter.capabilities)
    for capability, (method, args, kwargs) in _OPTIONAL.items():
        implemented = getattr(type(adapter), method) is not getattr(BaseAdapter, method)
        if capability in adapter.capabilities:
            assert implemented, f"{adapter.name} declares {capability} without {method}()"
            adapter.require(capability)
            if capability is not Capability.WEBHOOKS:  # needs a body signed its vendor's way
                result = getattr(adapter, method)(*args, **kwargs)
                if inspect.isawaitable(result):
                    await result
        else:
            with pytest.raises(CapabilityNotSupported):
                adapter.require(capability)
            refused = _refused_before_any_io(getattr(adapter, method), *args, **kwargs)
            assert refused.capability == str(capability)


class _PublishOnly(BaseAdapter):
    scheme = "publish-only"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.PUBLISH})

    async def publish(self, events: Any) -> PublishResult:
        return PublishResult(published=len(events))


async def test_undeclared_capabilities_raise_capability_not_supported() -> None:
    adapter = _PublishOnly()
    for capability, (method, args, kwargs) in _OPTIONAL.items():
        assert not adapter.supports(capability)
        refused = _refused_before_any_io(getattr(adapter, method), *args, **kwargs)
        assert refused.capability == str(capability)
        assert "publish-only" in str(refused)
        with pytest.raises(CapabilityNotSupported, match=str(capability)):
            adapter.require(capability)


def test_declaring_a_capability_without_its_method_is_refused_at_class_definition() -> None:
    with pytest.raises(TypeError, match="declares history but does not define history"):

        class _Liar(BaseAdapter):
            scheme = "liar"
            capabilities: ClassVar[frozenset[Capability]] = frozenset(
                {Capability.PUBLISH, Capability.HISTORY}
            )

            async def publish(self, events: Any) -> PublishResult:
                return PublishResult(published=0)


def test_limits_are_declared(adapter: Adapter) -> None:
    assert adapter.limits.max_payload_bytes > 0
    assert adapter.limits.max_events_per_batch >= 1
    assert adapter.limits.max_channels_per_publish >= 1
    assert adapter.limits.payload_measure


def _sized(blob: int, text: str = "x") -> Event:
    return ev("big.1", data={"blob": text * blob})


def test_payload_size_counts_bytes_not_characters(adapter: Adapter) -> None:
    empty = adapter.payload_size(_sized(0))
    assert empty > 0
    assert adapter.payload_size(_sized(100)) == empty + 100
    assert adapter.payload_size(_sized(100, "\u00e9")) == empty + 200  # two bytes each in UTF-8
    assert adapter.payload_size(_sized(100, "\u2603")) == empty + 300


def test_check_refuses_exactly_what_is_over_the_limit(adapter: Adapter) -> None:
    limit = adapter.limits.max_payload_bytes
    overhead = adapter.payload_size(_sized(0))
    at_limit = _sized(limit - overhead)
    assert adapter.payload_size(at_limit) == limit
    adapter.check(at_limit)
    over = _sized(limit - overhead + 1)
    with pytest.raises(PayloadTooLarge) as caught:
        adapter.check(over)
    error = caught.value
    assert isinstance(error, InvalidEvent)
    assert error.size == limit + 1
    assert error.limit == limit
    assert error.event_id == over.id
    assert error.adapter == adapter.name
    message = str(error)
    assert adapter.name in message
    assert str(limit) in message
    assert str(limit + 1) in message
    assert over.id in message


async def test_an_event_at_the_payload_limit_reaches_subscribers_whole(
    adapter: Adapter, clients: Clients
) -> None:
    limit = adapter.limits.max_payload_bytes
    at_limit = _sized(limit - adapter.payload_size(_sized(0)))
    assert adapter.payload_size(at_limit) == limit
    adapter.check(at_limit)
    async with clients.subscriber("big.1") as next_event:
        assert await adapter.publish([at_limit]) == PublishResult(published=1)
        assert await next_event() == at_limit


async def test_aclose_twice_is_safe(adapter: Adapter) -> None:
    await adapter.publish([ev()])
    await adapter.aclose()
    await adapter.aclose()


async def test_adapter_is_an_async_context_manager(adapter: Adapter) -> None:
    async with adapter as entered:
        assert entered is adapter
        await adapter.publish([ev()])


def test_repr_and_name(adapter: Adapter) -> None:
    assert adapter.name
    assert adapter.name in repr(adapter)
    assert type(adapter).__name__ in repr(adapter)
