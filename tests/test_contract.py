"""The adapter contract: one behaviour suite, run against every adapter.

Each test takes the ``adapter`` fixture (``tests/conftest.py``), which is
parametrised over every adapter that has joined the suite: memory and a real
Redis today; a vendor adapter joins by adding its fixture name there. Where a
test needs to look from outside the contract (a live subscriber, entering
presence the way a client would), a small helper below knows how to do that per
adapter, and skips, naming the adapter, where no helper exists yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal, TypeVar

import pytest
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
from realtime_bridge.adapters.base import Adapter as BaseAdapter
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.adapters.redis import RedisAdapter

T = TypeVar("T")
NextEvent = Callable[[], Awaitable[Event]]
Subscriber = Callable[[str], AbstractAsyncContextManager[NextEvent]]

#: How long a bounded wait may last before the test fails. Not a timing assertion:
#: the waits below end as soon as the condition holds.
PATIENCE = 5.0


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


@pytest.fixture
def subscriber(adapter: Adapter, request: pytest.FixtureRequest) -> Subscriber:
    """``async with subscriber(channel) as next_event``: a live subscriber of ``channel``."""
    if isinstance(adapter, MemoryAdapter):

        @asynccontextmanager
        async def memory(channel: str) -> AsyncIterator[NextEvent]:
            async with adapter.subscribe(channel) as subscription:
                events = aiter(subscription)

                async def next_event() -> Event:
                    return await asyncio.wait_for(anext(events), PATIENCE)

                yield next_event

        return memory

    if isinstance(adapter, RedisAdapter):
        import redis.asyncio as aioredis

        url = request.getfixturevalue("redis_server")

        @asynccontextmanager
        async def redis(channel: str) -> AsyncIterator[NextEvent]:
            client = aioredis.Redis.from_url(url)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(adapter.keys(channel).topic)
                # Read the server's confirmation: from here on it counts us.
                confirmation = await pubsub.get_message(timeout=PATIENCE)
                assert confirmation is not None, "Redis did not confirm SUBSCRIBE"
                assert confirmation["type"] == "subscribe"

                async def next_event() -> Event:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=PATIENCE
                    )
                    assert message is not None, "no live message arrived"
                    entry, _, payload = message["data"].partition(b"\n")
                    assert entry  # the stream entry id, for resuming from history
                    return Event.decode(payload)

                yield next_event
            finally:
                await pubsub.aclose()
                await client.aclose()

        return redis

    pytest.skip(f"no live-subscriber helper for the {adapter.scheme} adapter yet")


async def enter(adapter: Adapter, channel: str, member: Member, ttl: float = 60.0) -> None:
    """Enter presence the way a connected client would on this adapter."""
    enter_presence = getattr(adapter, "enter_presence", None)
    if enter_presence is None:
        pytest.skip(f"no presence-enter helper for the {adapter.scheme} adapter yet")
    await enter_presence(channel, member, ttl=ttl)


async def leave(adapter: Adapter, channel: str, member_id: str) -> None:
    leave_presence = getattr(adapter, "leave_presence", None)
    if leave_presence is None:
        pytest.skip(f"no presence-leave helper for the {adapter.scheme} adapter yet")
    await leave_presence(channel, member_id)


# -- publishing --------------------------------------------------------------------


async def test_publish_one_event(adapter: Adapter) -> None:
    event = ev(n=1)
    result = await adapter.publish([event])
    assert result == PublishResult(published=1, duplicates=())
    page = await adapter.history("orders.1")
    assert ids(page) == [event.id]


async def test_publish_a_batch(adapter: Adapter) -> None:
    events = [ev(n=i) for i in range(10)]
    result = await adapter.publish(events)
    assert result.published == 10
    assert result.duplicates == ()
    assert ids(await adapter.history("orders.1")) == ids(events)


async def test_a_batch_at_the_adapters_batch_limit_is_accepted(adapter: Adapter) -> None:
    size = adapter.limits.max_events_per_batch
    assert size >= 1
    events = [ev("bulk.1", n=i) for i in range(size)]
    result = await adapter.publish(events)
    assert result.published == size


async def test_an_empty_batch_is_a_no_op(adapter: Adapter) -> None:
    assert await adapter.publish([]) == PublishResult(published=0)


async def test_the_same_event_twice_in_one_batch_is_published_once(adapter: Adapter) -> None:
    first, second = ev(n=1), ev(n=2)
    result = await adapter.publish([first, second, first])
    assert result.published == 2
    assert result.duplicates == (first.id,)
    assert ids(await adapter.history("orders.1")) == [first.id, second.id]


async def test_an_event_published_again_later_is_dropped(adapter: Adapter) -> None:
    first, second, third = ev(n=1), ev(n=2), ev(n=3)
    await adapter.publish([first, second])
    result = await adapter.publish([second, third, first])
    assert result.published == 1
    assert result.duplicates == (second.id, first.id)
    assert ids(await adapter.history("orders.1")) == [first.id, second.id, third.id]


async def test_duplicates_are_recognised_by_id_not_by_content(adapter: Adapter) -> None:
    original = ev(id="order-1:v1", data={"status": "paid"})
    retry_with_new_content = ev(id="order-1:v1", data={"status": "changed"})
    await adapter.publish([original])
    result = await adapter.publish([retry_with_new_content])
    assert result.duplicates == ("order-1:v1",)
    page = await adapter.history("orders.1")
    assert [event.data for event in page] == [{"status": "paid"}]


async def test_per_channel_order_is_kept(adapter: Adapter) -> None:
    events = [ev(f"room.{i % 3}", n=i) for i in range(60)]
    await adapter.publish(events[:25])
    await adapter.publish(events[25:])
    for room in ("room.0", "room.1", "room.2"):
        expected = [event.id for event in events if event.channel == room]
        page = await adapter.history(room, limit=100)
        assert ids(page) == expected
        assert [event.data["n"] for event in page] == sorted(event.data["n"] for event in page)


async def test_live_subscribers_get_each_event_once(
    adapter: Adapter, subscriber: Subscriber
) -> None:
    first, second = ev("live.1", n=1), ev("live.1", n=2)
    other = ev("live.2", n=3)
    async with subscriber("live.1") as next_event:
        await adapter.publish([first, other, first])
        await adapter.publish([first, second])
        assert await next_event() == first
        assert await next_event() == second  # never the duplicates, nor other channels


# -- history ---------------------------------------------------------------------------


async def test_history_of_an_empty_channel(adapter: Adapter) -> None:
    page = await adapter.history("never.used")
    assert isinstance(page, HistoryPage)
    assert page.events == ()
    assert page.has_more is False


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


@pytest.mark.parametrize("direction", ["before", "after"])
async def test_an_unknown_cursor_is_cursor_not_found(adapter: Adapter, direction: str) -> None:
    await adapter.publish([ev(n=1)])
    with pytest.raises(CursorNotFound) as caught:
        await adapter.history("orders.1", **{direction: new_event_id()})
    assert isinstance(caught.value, PermanentError)


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


async def test_history_is_capped(adapter: Adapter) -> None:
    cap = 100  # the fixtures build every adapter with history=100
    events = await _publish_past_the_cap(adapter, "capped.1", 4 * cap)
    page = await adapter.history("capped.1", limit=1000)
    assert page.has_more is False
    # At least the newest ``cap`` are kept, in order; far fewer than all of them.
    assert cap <= len(page) < len(events)
    assert ids(page) == ids(events[-len(page) :])


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


async def test_events_round_trip_unchanged_through_history(adapter: Adapter) -> None:
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
    await adapter.publish([typed, plain, bare])
    page = await adapter.history("orders.7")
    assert [event.encode() for event in page] == [typed.encode(), plain.encode(), bare.encode()]
    assert list(page)[1:] == [plain, bare]
    assert all(isinstance(event, Event) for event in page)
    assert OrderUpdated.decode(page.events[0].encode()) == typed
    assert [event.seq for event in page] == [41, 42, None]
    assert page.events[1].ts == plain.ts
    assert page.events[1].ts is not None and page.events[1].ts.utcoffset() == timedelta(hours=2)


# -- presence and occupancy -------------------------------------------------------------


async def test_presence_enter_refresh_leave(adapter: Adapter) -> None:
    channel = "presence-room.1"
    assert await adapter.presence(channel) == []
    await enter(adapter, channel, Member("u2", {"name": "Bo"}))
    await enter(adapter, channel, Member("u1", {"name": "Ann", "tags": ["a", 1]}))
    assert await adapter.presence(channel) == [
        Member("u1", {"name": "Ann", "tags": ["a", 1]}),
        Member("u2", {"name": "Bo"}),
    ]
    await enter(adapter, channel, Member("u1", {"name": "Ann", "away": True}))  # refresh
    assert await adapter.presence(channel) == [
        Member("u1", {"name": "Ann", "away": True}),
        Member("u2", {"name": "Bo"}),
    ]
    await leave(adapter, channel, "u2")
    assert await adapter.presence(channel) == [Member("u1", {"name": "Ann", "away": True})]
    await leave(adapter, channel, "nobody")  # leaving twice, or never there, is fine
    assert [m.id for m in await adapter.presence(channel)] == ["u1"]
    assert await adapter.presence("presence-room.2") == []


async def test_presence_members_expire_without_a_heartbeat(adapter: Adapter) -> None:
    channel = "presence-room.3"
    await enter(adapter, channel, Member("stays"), ttl=60)
    await enter(adapter, channel, Member("lapses"), ttl=0.2)
    members = await eventually(
        lambda: adapter.presence(channel),
        lambda found: [m.id for m in found] == ["stays"],
        "the member without a heartbeat to expire",
    )
    assert members == [Member("stays")]


async def test_a_refresh_extends_a_members_ttl(adapter: Adapter) -> None:
    channel = "presence-room.4"
    await enter(adapter, channel, Member("refreshed"), ttl=0.2)
    await enter(adapter, channel, Member("refreshed"), ttl=60)
    # Entered after "refreshed" with the same short ttl: without the refresh,
    # "refreshed" would expire no later than "witness".
    await enter(adapter, channel, Member("witness"), ttl=0.2)
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


async def test_occupancy_of_a_quiet_channel(adapter: Adapter) -> None:
    occupancy = await adapter.occupancy("quiet.1")
    assert occupancy == Occupancy("quiet.1", subscribers=0, members=0)


async def test_occupancy_counts_members(adapter: Adapter) -> None:
    channel = "presence-room.5"
    await enter(adapter, channel, Member("a"))
    await enter(adapter, channel, Member("b"))
    await enter(adapter, channel, Member("a"))
    occupancy = await adapter.occupancy(channel)
    assert occupancy.channel == channel
    assert occupancy.members == 2


async def test_occupancy_counts_subscribers(adapter: Adapter, subscriber: Subscriber) -> None:
    async with subscriber("watched.1"):
        occupancy = await adapter.occupancy("watched.1")
        assert occupancy.subscribers == 1
        assert (await adapter.occupancy("watched.2")).subscribers == 0
    await eventually(
        lambda: adapter.occupancy("watched.1"),
        lambda found: found.subscribers == 0,
        "the subscriber count to drop after unsubscribing",
    )


# -- capabilities and limits ------------------------------------------------------------

_OPTIONAL = {
    Capability.PRESENCE: ("presence", ("presence-room.1",), {}),
    Capability.HISTORY: ("history", ("orders.1",), {}),
    Capability.OCCUPANCY: ("occupancy", ("orders.1",), {}),
}


async def test_capabilities_match_the_methods(adapter: Adapter) -> None:
    assert Capability.PUBLISH in adapter.capabilities
    for capability in Capability:
        assert adapter.supports(capability) == (capability in adapter.capabilities)
    for capability, (method, args, kwargs) in _OPTIONAL.items():
        implemented = getattr(type(adapter), method) is not getattr(BaseAdapter, method)
        if capability in adapter.capabilities:
            assert implemented, f"{adapter.name} declares {capability} without {method}()"
            adapter.require(capability)
            await getattr(adapter, method)(*args, **kwargs)
        else:
            with pytest.raises(CapabilityNotSupported):
                adapter.require(capability)
            with pytest.raises(CapabilityNotSupported):
                await getattr(adapter, method)(*args, **kwargs)


class _PublishOnly(BaseAdapter):
    scheme = "publish-only"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.PUBLISH})

    async def publish(self, events: Any) -> PublishResult:
        return PublishResult(published=len(events))


async def test_undeclared_capabilities_raise_capability_not_supported() -> None:
    adapter = _PublishOnly()
    for capability, (method, args, kwargs) in _OPTIONAL.items():
        assert not adapter.supports(capability)
        with pytest.raises(CapabilityNotSupported) as caught:
            await getattr(adapter, method)(*args, **kwargs)
        assert caught.value.capability == method
        assert "publish-only" in str(caught.value)
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
