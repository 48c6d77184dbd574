"""The gateway's failure modes, each done for real: slow consumers, several gateways,
restarts, a lost link to Redis, a shutdown with clients connected.

Waits are for conditions (``eventually``, or the next event), bounded by
``PATIENCE``; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from test_gateway_clients import (
    GatewayEnv,
    RawSse,
    SseStream,
    eventually,
    open_sse,
    open_ws,
    request_sse,
    sse_client,
)

from realtime_bridge import Event
from realtime_bridge.gateway import serve_gateway


@pytest.fixture
async def env(redis_server: str, redis_prefix: str) -> AsyncIterator[GatewayEnv]:
    environment = GatewayEnv.create(redis_server, redis_prefix, history="1000")
    yield environment
    await environment.aclose()


def ids(events: list[Event]) -> list[str]:
    return [event.id for event in events]


async def health(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{base_url}/healthz")).json()
    assert isinstance(body, dict)
    return body


async def slow_consumers(base_url: str) -> int:
    """How many connections this gateway has cut off for falling behind."""
    return int((await health(base_url))["totals"].get("slow_consumers", 0))


BLOB = "x" * 32_768  # big events fill the socket buffers between gateway and client sooner


# -- slow consumers -------------------------------------------------------------------------


async def test_slow_consumer_is_reset_and_cut_off_while_a_fast_one_keeps_receiving(
    env: GatewayEnv,
) -> None:
    """A client that stops reading fills its socket, then its bounded buffer, then is cut off.

    Publishing goes on, one event at a time, until the gateway reports the slow
    consumer; the fast client on the same channel must still get every event.
    """
    token = env.token("feed.1")
    async with serve_gateway(env.settings(buffer=32, send_timeout=120)) as url:
        slow = await RawSse.connect(url, token, "feed.1")
        try:
            await slow.read_until("ready")
            async with open_sse(url, token, ["feed.1"]) as fast:
                fast_received: list[Event] = []
                reading = asyncio.create_task(_read_forever(fast, fast_received))
                try:
                    while await slow_consumers(url) == 0:
                        assert len(env.published) < 2000, "the slow consumer was never cut off"
                        await env.publish("feed.1", blob=BLOB)
                    await eventually(
                        lambda: _count(fast_received),
                        lambda n: n == len(env.published),
                        "the fast client to receive every event",
                    )
                finally:
                    reading.cancel()
                    await asyncio.gather(reading, return_exceptions=True)
            assert ids(fast_received) == ids(env.published)
            rest = await slow.read_to_end()  # reading again: what was in flight, then the end
        finally:
            await slow.aclose()
    data = [event for event in rest if event.name == "message"]
    assert rest[-1].name == "reset", [event.name for event in rest[-3:]]
    assert rest[-1].json()["reason"] == "slow_consumer"
    assert [event.name for event in rest[len(data) :]] == ["reset"]
    received = [event.envelope().id for event in data]
    assert received == ids(env.published)[: len(received)], "a prefix, in order, no gaps"
    assert len(received) < len(env.published)
    # The reset's id moves the client past what it missed: resuming from it skips them.
    assert rest[-1].json()["id"] == rest[-1].id.split(":", 1)[1]


async def _read_forever(stream: SseStream, into: list[Event]) -> None:
    while True:
        event = await stream.next()
        if event is None:
            return
        if event.name == "message":
            into.append(event.envelope())


async def _count(items: list[Event]) -> int:
    return len(items)


async def test_a_slow_websocket_gets_reset_and_close_code_4408(env: GatewayEnv) -> None:
    """The same on a WebSocket: the client stops reading (a one-message queue, never read).

    Without compression: the repetitive test events would shrink to nothing on the wire.
    """
    token = env.token("feed.2")
    async with (
        serve_gateway(env.settings(buffer=8, send_timeout=120)) as url,
        open_ws(url, token, max_queue=1, compression=None) as ws,
    ):
        await ws.subscribe("feed.2")
        while await slow_consumers(url) == 0:
            assert len(env.published) < 2000, "the slow consumer was never cut off"
            await env.publish("feed.2", blob=BLOB)
        events, reset = [], None
        while reset is None:  # reading again: what was in flight, then reset
            message = await ws.recv()
            if message["type"] == "event":
                events.append(message["event"]["id"])
            else:
                assert message["type"] == "reset", message
                reset = message
        assert (reset["channel"], reset["reason"]) == ("feed.2", "slow_consumer")
        assert events == ids(env.published)[: len(events)]
        assert len(events) < len(env.published)
        assert await ws.closed() == (4408, "slow_consumer")


# -- several gateways -----------------------------------------------------------------------


async def test_two_gateways_on_one_redis_both_deliver_every_event(env: GatewayEnv) -> None:
    token = env.token("orders.1")
    async with (
        serve_gateway(env.settings()) as first,
        serve_gateway(env.settings()) as second,
        open_sse(first, token) as on_first,
        open_sse(first, token) as also_on_first,
        open_ws(second, token) as on_second,
    ):
        await on_second.subscribe("orders.1")
        sent = await env.publish("orders.1", 30)
        assert ids(await on_first.envelopes(30)) == ids(sent)
        assert ids(await also_on_first.envelopes(30)) == ids(sent)
        received = await on_second.events(30)
        assert [message["event"]["id"] for message in received] == ids(sent)
        # One Redis subscription per gateway process, however many clients each has.
        occupancy = await env.publisher.occupancy("orders.1")
        assert occupancy.subscribers == 2


async def test_a_client_can_resume_on_another_gateway(env: GatewayEnv) -> None:
    """No sticky sessions: the cursor is Redis's, so any process can resume it."""
    token = env.token("orders.1")
    async with serve_gateway(env.settings()) as first, serve_gateway(env.settings()) as second:
        async with open_sse(first, token) as sse:
            await env.publish("orders.1", 3)
            await sse.envelopes(3)
            last_id = sse.last_id
        missed = await env.publish("orders.1", 4)
        async with open_sse(second, token, last_event_id=last_id) as resumed:
            assert [event.envelope().id for event in resumed.caught_up] == ids(missed)


# -- restarts and shutdowns -----------------------------------------------------------------


async def test_gateway_restart_a_reconnecting_client_misses_nothing(env: GatewayEnv) -> None:
    token = env.token("orders.1")
    async with sse_client() as client, AsyncExitStack() as server:
        url = await server.enter_async_context(serve_gateway(env.settings()))
        sse = await request_sse(client, url, token)
        try:
            seen = await env.publish("orders.1", 3)
            assert ids(await sse.envelopes(3)) == ids(seen)
            await server.aclose()  # the gateway stops while the client is connected
            assert await sse.rest() == [], "the stream just ends"
        finally:
            await sse.response.aclose()
    missed = await env.publish("orders.1", 5)  # while no gateway runs
    restarted = serve_gateway(env.settings(), port=urlsplit(url).port)
    async with restarted as url, open_sse(url, token, last_event_id=sse.last_id) as resumed:
        assert [event.envelope().id for event in resumed.caught_up] == ids(missed)
        live = await env.publish("orders.1", 2)
        assert ids(await resumed.envelopes(2)) == ids(live)


async def test_shutdown_closes_websockets_with_service_restart(env: GatewayEnv) -> None:
    async with AsyncExitStack() as server:
        url = await server.enter_async_context(serve_gateway(env.settings()))
        async with open_ws(url, env.token("orders.1")) as ws:
            await ws.subscribe("orders.1")
            await server.aclose()
            assert await ws.closed() == (1012, "shutdown")


# -- the link to Redis ----------------------------------------------------------------------


async def test_a_lost_pubsub_link_ends_streams_and_clients_resume_without_loss(
    env: GatewayEnv, redis_prefix: str
) -> None:
    token = env.token("orders.1")
    async with serve_gateway(env.settings()) as url:
        async with open_sse(url, token) as sse:
            await env.publish("orders.1", 2)
            await sse.envelopes(2)
            last_id = sse.last_id
            killed = await _kill_gateway_pubsub(env, redis_prefix)
            assert killed == 1
            missed = await env.publish("orders.1", 3)  # while no one listens live
            tail = await sse.rest()
        assert all(event.name != "message" for event in tail), tail
        assert (await health(url))["redis_lost"] == 1
        async with open_sse(url, token, last_event_id=last_id) as resumed:
            assert [event.envelope().id for event in resumed.caught_up] == ids(missed)
            live = await env.publish("orders.1")
            assert ids(await resumed.envelopes(1)) == ids(live)


async def _kill_gateway_pubsub(env: GatewayEnv, prefix: str) -> int:
    """Kill this test's gateway pub/sub connection (named ``rb-gateway:<prefix>``) in Redis."""
    client = aioredis.Redis.from_url(env.redis_url.split("?")[0])
    try:
        killed = 0
        for entry in await client.client_list(_type="pubsub"):
            if entry.get("name") == f"rb-gateway:{prefix}":
                killed += await client.client_kill_filter(_id=entry["id"])
        return killed
    finally:
        await client.aclose()
