"""The gateway serving a memory adapter of the same process (``MemoryFeed``).

The embedded demo and one-process apps publish to ``memory://``. These tests
hold the memory feed to what the Redis feed promises: live events after
``ready``, resuming from a position without loss (also across a restart of
the gateway *server* on the same feed), ``reset`` when the position is older
than what is kept or from an earlier process, presence and occupancy read
back through the Bridge, and tokens minted by ``bridge.authorize()``.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager

import pytest
from pydantic import SecretStr
from test_gateway_clients import SECRET, eventually, open_sse, open_ws

from realtime_bridge import Bridge, Event, Member
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.errors import CapabilityNotSupported, ConfigurationError, VendorUnavailable
from realtime_bridge.gateway import GatewaySettings, MemoryFeed, serve_gateway
from realtime_bridge.gateway.entries import Page

CHANNEL = "orders.7"


def memory(**options: str) -> MemoryAdapter:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return MemoryAdapter.from_url(f"memory://?gateway_secret={SECRET}&{query}")


def settings() -> GatewaySettings:
    return GatewaySettings(port=0, heartbeat=5)


def served(adapter: MemoryAdapter) -> AbstractAsyncContextManager[str]:
    return serve_gateway(settings(), feed=MemoryFeed(adapter))


def events(count: int, start: int = 0) -> list[Event]:
    return [
        Event(channel=CHANNEL, type="order.updated", data={"n": n}, seq=n + 1)
        for n in range(start, start + count)
    ]


# -- the adapter's positions ------------------------------------------------------------------


async def test_positions_grow_and_a_trimmed_or_foreign_cursor_is_a_gap() -> None:
    adapter = MemoryAdapter(history=3)
    await adapter.publish(events(5))
    kept, newest, gap = adapter.read_after(CHANNEL, None, 10)
    assert (kept, gap) == ([], False)

    stream, _ = adapter.read_latest(CHANNEL, 10)
    positions = [stored.position for stored in stream]
    assert [stored.event.data["n"] for stored in stream] == [2, 3, 4]
    assert positions == sorted(positions, key=lambda p: tuple(map(int, p.split("-"))))
    assert newest == positions[-1]

    after, position, gap = adapter.read_after(CHANNEL, positions[0], 10)
    assert [s.event.data["n"] for s in after] == [3, 4] and position == positions[-1] and not gap
    # The two oldest events were trimmed: a cursor before them may have missed them.
    assert adapter.read_after(CHANNEL, "1-0", 10)[2] is True  # before this adapter was born
    future = f"{int(time.time() * 1000) + 60_000}-0"
    assert adapter.read_after(CHANNEL, future, 10)[2] is True


def test_a_memory_feed_refuses_any_other_adapter() -> None:
    with pytest.raises(ConfigurationError, match="serves a memory:// adapter of this process"):
        MemoryFeed(Bridge.from_url("redis://127.0.0.1:6379/0").primary)


async def test_without_a_gateway_secret_memory_offers_no_client_auth() -> None:
    adapter = MemoryAdapter()
    async with Bridge(adapter) as bridge:
        with pytest.raises(CapabilityNotSupported, match="client_auth"):
            bridge.authorize(CHANNEL)
    with pytest.raises(CapabilityNotSupported, match=r"\?gateway_secret= .* memory:// URL"):
        adapter.authorize(CHANNEL)


# -- the gateway on a memory feed -------------------------------------------------------------


async def test_sse_receives_live_events_and_resumes_across_a_server_restart() -> None:
    adapter = memory()
    feed = MemoryFeed(adapter)
    async with Bridge(adapter) as bridge:
        token = bridge.authorize(CHANNEL)["token"]
        async with serve_gateway(settings(), feed=feed) as url, open_sse(url, token) as stream:
            first = events(3)
            await bridge.publish_many(first)
            assert [e.id for e in await stream.envelopes(3)] == [e.id for e in first]
            last_id = stream.last_id
        # The server is gone; the adapter and its history are not.
        missed = events(4, start=3)
        await bridge.publish_many(missed)
        async with (
            serve_gateway(settings(), feed=feed) as url,
            open_sse(url, token, last_event_id=last_id) as stream,
        ):
            assert [e.envelope().id for e in stream.caught_up] == [e.id for e in missed]
            later = events(1, start=7)
            await bridge.publish_many(later)
            assert [e.id for e in await stream.envelopes(1)] == [later[0].id]


async def test_a_cursor_older_than_the_kept_history_gets_reset() -> None:
    adapter = memory(history="2")
    async with (
        Bridge(adapter) as bridge,
        serve_gateway(settings(), feed=MemoryFeed(adapter)) as url,
    ):
        token = bridge.authorize(CHANNEL)["token"]
        await bridge.publish_many(events(1))
        async with open_sse(url, token) as stream:
            await bridge.publish_many(events(1, start=1))
            await stream.envelopes(1)
            cursor = stream.last_id
        await bridge.publish_many(events(3, start=2))
        async with open_sse(url, token, last_event_id=cursor) as stream:
            assert [event.name for event in stream.caught_up] == ["reset"]
            assert stream.caught_up[0].json()["reason"] == "gap"


async def test_a_position_from_an_earlier_process_gets_reset() -> None:
    earlier = memory()
    await earlier.publish(events(1))
    (stored,), _ = earlier.read_latest(CHANNEL, 1)
    adapter = memory()  # the process restarted: nothing survived
    async with (
        Bridge(adapter) as bridge,
        serve_gateway(settings(), feed=MemoryFeed(adapter)) as url,
    ):
        token = bridge.authorize(CHANNEL)["token"]
        # A position older than this adapter's birth cannot be trusted.
        cursor = f"{CHANNEL}:{int(stored.position.split('-')[0]) - 1}-0"
        async with open_sse(url, token, last_event_id=cursor) as stream:
            assert [event.name for event in stream.caught_up] == ["reset"]


async def test_websocket_presence_and_occupancy_read_back_through_the_bridge() -> None:
    adapter = memory()
    alice = Member(id="alice", info={"name": "Alice"})
    async with (
        Bridge(adapter) as bridge,
        serve_gateway(settings(), feed=MemoryFeed(adapter)) as url,
    ):
        token = bridge.authorize(CHANNEL, user=alice)["token"]
        async with open_ws(url, token) as ws:
            await ws.subscribe(CHANNEL)
            assert [m.id for m in await bridge.presence(CHANNEL)] == ["alice"]
            occupancy = await bridge.occupancy(CHANNEL)
            assert (occupancy.subscribers, occupancy.members) == (1, 1)
            published = events(2)
            await bridge.publish_many(published)
            received = await ws.events(2)
            assert [m["event"]["id"] for m in received] == [e.id for e in published]
        await eventually(
            lambda: bridge.presence(CHANNEL), lambda members: members == [], "alice to leave"
        )
        assert (await bridge.occupancy(CHANNEL)).subscribers == 0


async def test_catch_up_pages_come_from_the_memory_stream() -> None:
    adapter = memory()
    async with Bridge(adapter) as bridge:
        gateway_settings = GatewaySettings(port=0, secret=SecretStr(SECRET))
        async with serve_gateway(gateway_settings, feed=MemoryFeed(adapter)) as url:
            token = bridge.authorize(CHANNEL)["token"]
            published = events(5)
            await bridge.publish_many(published)
            import httpx

            async with httpx.AsyncClient() as client:
                page = await client.get(
                    f"{url}/channels/{CHANNEL}/events", params={"token": token, "limit": 2}
                )
                body = page.json()
                assert [e["event"]["data"]["n"] for e in body["events"]] == [3, 4]
                assert body["has_more"] is True


class FailingReader:
    """A store that cannot be read: what a Redis outage looks like to a session."""

    async def after(self, channel: str, cursor: str | None, limit: int) -> Page:
        raise VendorUnavailable("the store is down", adapter="test")

    async def latest(self, channel: str, limit: int) -> Page:
        raise VendorUnavailable("the store is down", adapter="test")


async def test_an_sse_stream_that_cannot_read_its_channels_says_so_before_ending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = memory()
    feed = MemoryFeed(adapter)
    feed.reader = FailingReader()  # type: ignore[assignment]
    token = adapter.authorize(CHANNEL)["token"]
    async with serve_gateway(settings(), feed=feed) as url, open_sse(url, token, ready=False) as s:
        events = await s.rest()
    unavailable = [event for event in events if event.name == "unavailable"]
    assert [event.json()["error"] for event in unavailable] == ["redis_unavailable"]
    assert "could not be read: test: the store is down" in caplog.text


async def test_a_websocket_that_cannot_read_its_channel_is_closed_1013_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = memory()
    feed = MemoryFeed(adapter)
    feed.reader = FailingReader()  # type: ignore[assignment]
    token = adapter.authorize(CHANNEL)["token"]
    async with serve_gateway(settings(), feed=feed) as url, open_ws(url, token) as ws:
        await ws.send(type="subscribe", channel=CHANNEL)
        error = await ws.recv()
        assert (error["type"], error["error"]) == ("error", "redis_unavailable")
        assert (await ws.closed())[0] == 1013
    assert "a WebSocket closed, the channels could not be read" in caplog.text
