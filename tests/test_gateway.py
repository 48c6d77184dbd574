"""The gateway over a real Redis, through real HTTP, SSE and WebSocket on loopback.

Events are published by the Redis adapter (or a Bridge on it), as the relay
would, and read by clients of ``test_gateway_clients``: httpx streaming for
SSE (the event stream parsed there), ``websockets`` for WebSocket. Failure
modes (slow consumers, several gateways, restarts, a lost Redis link) are in
``test_gateway_failures.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from test_gateway_clients import (
    SECRET,
    GatewayEnv,
    eventually,
    open_sse,
    open_ws,
)

from realtime_bridge import Bridge, Event, Member
from realtime_bridge.gateway import create_app, issue_token, serve_gateway, verify_token
from realtime_bridge.gateway.entries import Page

ROOM = "presence-room.7"


@pytest.fixture
async def env(redis_server: str, redis_prefix: str) -> AsyncIterator[GatewayEnv]:
    environment = GatewayEnv.create(redis_server, redis_prefix, history="50")
    yield environment
    await environment.aclose()


@pytest.fixture
async def gateway(env: GatewayEnv) -> AsyncIterator[str]:
    """A gateway's base URL, with short heartbeats so the tests see them."""
    async with serve_gateway(env.settings(heartbeat=0.3)) as url:
        yield url


def ids(events: list[Event]) -> list[str]:
    return [event.id for event in events]


# -- delivery -------------------------------------------------------------------------------


async def test_events_reach_sse_and_websocket_clients_in_order(
    env: GatewayEnv, gateway: str
) -> None:
    token = env.token("orders.1")
    async with open_sse(gateway, token) as sse, open_ws(gateway, token) as ws:
        await ws.subscribe("orders.1")
        sent = await env.publish("orders.1", 20)
        assert ids(await sse.envelopes(20)) == ids(sent)
        received = await ws.events(20)
    assert [message["event"]["id"] for message in received] == ids(sent)
    assert all(message["channel"] == "orders.1" for message in received)
    assert [message["event"]["data"]["n"] for message in received] == list(range(20))


async def test_a_bridge_publishes_and_authorizes_for_the_gateway(
    env: GatewayEnv, gateway: str
) -> None:
    async with Bridge.from_url(env.redis_url) as bridge:
        grant = bridge.authorize("orders.2")
        assert grant["channels"] == ["orders.2"] and grant["presence"] is False
        assert grant["expires_at"] - time.time() == pytest.approx(3600, abs=5)
        async with open_sse(gateway, grant["token"]) as sse:
            events = [
                Event(channel="orders.2", type="order.updated", data={"n": n}) for n in range(5)
            ]
            await bridge.publish_many(events)
            assert ids(await sse.envelopes(5)) == ids(events)


async def test_one_sse_stream_carries_several_channels_with_a_position_for_each(
    env: GatewayEnv, gateway: str
) -> None:
    token = env.token("a.1", "b.1")
    async with open_sse(gateway, token) as sse:
        assert sse.ready is not None
        assert sse.ready.json()["channels"] == ["a.1", "b.1"]
        first = (await env.publish("a.1"))[0]
        second = (await env.publish("b.1"))[0]
        assert ids(await sse.envelopes(2)) == [first.id, second.id]
    positions = dict(item.rsplit(":", 1) for item in sse.last_id.split("|"))
    assert set(positions) == {"a.1", "b.1"}


# -- tokens ---------------------------------------------------------------------------------


def expired_token(*channels: str) -> str:
    return issue_token(SECRET, channels=channels, now=time.time() - 7200, ttl=3600)


def forged_token(*channels: str) -> str:
    return issue_token("not-the-gateway-secret-" + "x" * 20, channels=channels, now=time.time())


@pytest.mark.parametrize(
    ("make_token", "status", "reason"),
    [
        (lambda env: None, 401, "missing_token"),
        (lambda env: expired_token("orders.1"), 401, "token_expired"),
        (lambda env: forged_token("orders.1"), 401, "bad_signature"),
        (lambda env: "not.a-token", 401, "malformed_token"),
        (lambda env: env.token("orders.2"), 403, "channel_not_granted"),
    ],
    ids=["missing", "expired", "forged", "malformed", "other-channel"],
)
async def test_sse_refuses_bad_tokens_with_a_json_reason(
    env: GatewayEnv, gateway: str, make_token: Any, status: int, reason: str
) -> None:
    params = {"channel": "orders.1"}
    token = make_token(env)
    if token is not None:
        params["token"] = token
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway}/sse", params=params)
    assert response.status_code == status
    assert response.json()["error"] == reason
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_bearer_header_works_as_well_as_the_query(env: GatewayEnv, gateway: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{gateway}/channels/orders.1/events",
            headers={"Authorization": f"Bearer {env.token('orders.1')}"},
        )
    assert response.status_code == 200


async def test_a_token_for_one_channel_never_opens_another(env: GatewayEnv, gateway: str) -> None:
    token = env.token("orders.1")
    async with httpx.AsyncClient() as client:
        for path, params in (
            ("/sse", {"channel": "orders.10", "token": token}),
            ("/channels/orders.10/events", {"token": token}),
        ):
            response = await client.get(f"{gateway}{path}", params=params)
            assert (response.status_code, response.json()["error"]) == (403, "channel_not_granted")
    async with open_ws(gateway, token) as ws:
        await ws.send(type="subscribe", channel="orders.10")
        error, _ = await ws.until("error")
        assert error["error"] == "channel_not_granted"
        assert await ws.closed() == (4403, "channel_not_granted")


async def test_websocket_refuses_an_expired_or_forged_token_with_a_close_code(
    env: GatewayEnv, gateway: str
) -> None:
    for token, reason in (
        (expired_token("orders.1"), "token_expired"),
        (forged_token("orders.1"), "bad_signature"),
    ):
        async with open_ws(gateway, token, welcome=False) as ws:
            error = await ws.recv()
            assert (error["type"], error["error"]) == ("error", reason)
            assert await ws.closed() == (4401, reason)


async def test_presence_is_refused_to_a_token_that_does_not_allow_it(
    env: GatewayEnv, gateway: str
) -> None:
    async with open_ws(gateway, env.token(ROOM)) as ws:
        await ws.subscribe(ROOM)  # subscribing is fine; by default it does not enter
        assert ws.subscribed["presence"] is False
        await ws.send(type="subscribe", channel=ROOM, presence=True)
        error, _ = await ws.until("error")
        assert error["error"] == "presence_not_granted"
        assert await ws.closed() == (4403, "presence_not_granted")
    assert await env.publisher.presence(ROOM) == []


def expiring_soon(*channels: str) -> str:
    """A token with about two seconds left."""
    return issue_token(SECRET, channels=channels, now=time.time() - 3600 + 2, ttl=3600)


async def test_a_connection_ends_when_its_token_expires(env: GatewayEnv, gateway: str) -> None:
    async with open_sse(gateway, expiring_soon("orders.1"), ["orders.1"]) as sse:
        expired = await sse.until("expired")
        assert expired.json() == {"error": "token_expired"}
        assert await sse.next() is None
    async with open_ws(gateway, expiring_soon("orders.1")) as ws:
        error, _ = await ws.until("error")
        assert error["error"] == "token_expired"
        assert await ws.closed() == (4401, "token_expired")


async def test_a_websocket_stays_with_a_renewed_token(env: GatewayEnv, gateway: str) -> None:
    soon = expiring_soon("orders.1")
    async with open_ws(gateway, soon) as ws:
        await ws.subscribe("orders.1")
        await ws.send(type="auth", token=env.token("orders.1"))
        authorized, _ = await ws.until("authorized")
        assert authorized["expires_at"] > time.time() + 3000
        first_expiry = verify_token(soon, SECRET, now=time.time()).expires_at
        while time.time() <= first_expiry:  # paced by the heartbeats, 0.3 s apart
            await ws.until("heartbeat")
        sent = await env.publish("orders.1")
        assert [message["event"]["id"] for message in await ws.events(1)] == ids(sent)


# -- resume ---------------------------------------------------------------------------------


async def test_last_event_id_replays_exactly_the_missed_events(
    env: GatewayEnv, gateway: str
) -> None:
    token = env.token("orders.1")
    before = await env.publish("orders.1", 3)
    async with open_sse(gateway, token) as sse:
        seen = await env.publish("orders.1", 2)
        assert ids(await sse.envelopes(2)) == ids(seen)
        last_id = sse.last_id
    missed = await env.publish("orders.1", 5)
    async with open_sse(gateway, token, last_event_id=last_id) as sse:
        assert [event.envelope().id for event in sse.caught_up] == ids(missed)
        later = await env.publish("orders.1", 2)
        assert ids(await sse.envelopes(2)) == ids(later)
    assert not set(ids(before)) & {event.envelope().id for event in sse.caught_up}


async def test_every_sse_id_names_every_channel_even_while_catching_up(
    env: GatewayEnv, gateway: str
) -> None:
    """A drop mid-catch-up must not make the channels not caught up yet look fresh."""
    token = env.token("a.1", "b.1")
    async with open_sse(gateway, token) as sse:
        pass
    missed = [*await env.publish("a.1", 2), *await env.publish("b.1", 2)]
    async with open_sse(gateway, token, last_event_id=sse.last_id) as resumed:
        assert [event.envelope().id for event in resumed.caught_up] == ids(missed)
        for event in resumed.caught_up:
            assert {item.split(":")[0] for item in event.id.split("|")} == {"a.1", "b.1"}


async def test_a_cursor_from_before_a_channel_had_events_still_resumes(
    env: GatewayEnv, gateway: str
) -> None:
    """A fresh channel's position is a time, not an entry; nothing published after it is lost."""
    token = env.token("new.1")
    async with open_sse(gateway, token) as sse:
        pass
    missed = await env.publish("new.1", 3)
    async with open_sse(gateway, token, last_event_id=sse.last_id) as resumed:
        assert [event.envelope().id for event in resumed.caught_up] == ids(missed)


async def test_events_published_between_subscribe_and_history_read_arrive_once(
    env: GatewayEnv,
) -> None:
    """The window the merge is for: one event in both live and history, one in live only."""
    app = create_app(env.settings(heartbeat=0.3))
    reader = app.state.gateway.reader
    original = reader.after
    window: list[Event] = []

    async def read_in_the_window(channel: str, cursor: str | None, limit: int) -> Page:
        if not window:  # once: between the hub's SUBSCRIBE confirmation and the stream read
            window.extend(await env.publish("orders.1"))  # in the stream and live
            page = await original(channel, cursor, limit)
            window.extend(await env.publish("orders.1"))  # live only: after the read
            return page
        return await original(channel, cursor, limit)

    reader.after = read_in_the_window
    before = await env.publish("orders.1", 2)
    cursor = f"orders.1:{(await _entry_ids(env, 'orders.1'))[0]}"
    async with (
        serve_gateway(app=app) as url,
        open_sse(url, env.token("orders.1"), last_event_id=cursor) as sse,
    ):
        caught_up = [event.envelope().id for event in sse.caught_up]
        assert caught_up == [before[1].id, window[0].id]
        after = await env.publish("orders.1")
        assert ids(await sse.envelopes(2)) == [window[1].id, after[0].id]


async def _entry_ids(env: GatewayEnv, channel: str) -> list[str]:
    client = aioredis.Redis.from_url(env.redis_url.split("?")[0])
    try:
        entries = await client.xrange(env.publisher.keys(channel).stream)
    finally:
        await client.aclose()
    return [entry_id.decode() for entry_id, _ in entries]


async def test_a_cursor_older_than_the_kept_history_gets_reset_then_live_events(
    redis_server: str, redis_prefix: str
) -> None:
    env = GatewayEnv.create(redis_server, redis_prefix, history="5", exact="true")
    try:
        first = await env.publish("orders.1")
        old_cursor = f"orders.1:{(await _entry_ids(env, 'orders.1'))[0]}"
        await env.publish("orders.1", 10)  # trims the first away (exactly: history=5)
        token = env.token("orders.1")
        async with serve_gateway(env.settings()) as url:
            async with open_sse(url, token, last_event_id=old_cursor) as sse:
                [reset] = sse.caught_up
                assert reset.name == "reset"
                assert reset.json()["reason"] == "gap"
                assert reset.json()["id"] == (await _entry_ids(env, "orders.1"))[-1]
                assert reset.id == f"orders.1:{reset.json()['id']}"
                live = await env.publish("orders.1")
                assert ids(await sse.envelopes(1)) == ids(live)
            async with open_ws(url, token) as ws:
                [reset_message] = await ws.subscribe("orders.1", last_id=old_cursor.split(":")[1])
                assert (reset_message["type"], reset_message["reason"]) == ("reset", "gap")
        assert first[0].id not in {event.id for event in await env.publisher.history("orders.1")}
    finally:
        await env.aclose()


async def test_websocket_resumes_from_a_last_id(env: GatewayEnv, gateway: str) -> None:
    token = env.token("orders.1")
    async with open_ws(gateway, token) as ws:
        await ws.subscribe("orders.1")
        await env.publish("orders.1", 2)
        last_id = (await ws.events(2))[-1]["id"]
    missed = await env.publish("orders.1", 4)
    async with open_ws(gateway, token) as ws:
        caught_up = await ws.subscribe("orders.1", last_id=last_id)
        assert [message["event"]["id"] for message in caught_up] == ids(missed)
        assert ws.subscribed["id"] == caught_up[-1]["id"]


# -- heartbeats -----------------------------------------------------------------------------


async def test_heartbeats_arrive_on_quiet_connections(env: GatewayEnv, gateway: str) -> None:
    token = env.token("quiet.1")
    async with open_sse(gateway, token) as sse:
        heartbeat = await sse.until("heartbeat")
        assert heartbeat.json() == {}
        assert sse.parser.retry is not None and 1000 <= sse.parser.retry <= 2000
    async with open_ws(gateway, token) as ws:
        assert ws.hello["heartbeat"] == pytest.approx(0.3)
        await ws.until("heartbeat")
        await ws.send(type="ping")
        await ws.until("pong")


async def test_the_gateway_notices_clients_that_went_away(env: GatewayEnv, gateway: str) -> None:
    async def connections() -> dict[str, int]:
        async with httpx.AsyncClient() as client:
            return dict((await client.get(f"{gateway}/healthz")).json()["connections"])

    token = env.token("orders.1")
    async with open_sse(gateway, token), open_ws(gateway, token):
        assert await connections() == {"sse": 1, "ws": 1}
    await eventually(connections, lambda now: now == {"sse": 0, "ws": 0}, "both connections to end")


# -- presence -------------------------------------------------------------------------------


async def test_websocket_presence_is_what_bridge_presence_reads(
    env: GatewayEnv, gateway: str
) -> None:
    ann = Member("u-ann", {"name": "Ann"})
    async with Bridge.from_url(env.redis_url) as bridge:
        async with open_ws(gateway, env.token(ROOM, user=ann)) as ws:
            await ws.subscribe(ROOM)
            assert ws.subscribed["presence"] is True
            assert await bridge.presence(ROOM) == [ann]
            occupancy = await bridge.occupancy(ROOM)
            assert (occupancy.members, occupancy.subscribers) == (1, 1)
            await ws.send(type="unsubscribe", channel=ROOM)
            await ws.until("unsubscribed")
            assert await bridge.presence(ROOM) == []
            await ws.subscribe(ROOM)
            assert await bridge.presence(ROOM) == [ann]
        await eventually(lambda: bridge.presence(ROOM), lambda members: members == [], "leave")
        await eventually(
            lambda: bridge.occupancy(ROOM),
            lambda occupancy: (occupancy.members, occupancy.subscribers) == (0, 0),
            "the channel to be empty",
        )


async def test_two_tabs_of_one_user_are_one_member_until_both_close(
    env: GatewayEnv, gateway: str
) -> None:
    ann = Member("u-ann", {"name": "Ann"})
    token = env.token(ROOM, user=ann)
    async with open_ws(gateway, token) as first:
        await first.subscribe(ROOM)
        async with open_ws(gateway, token) as second:
            await second.subscribe(ROOM)
            assert await env.publisher.presence(ROOM) == [ann]
        assert await env.publisher.presence(ROOM) == [ann]
    await eventually(lambda: env.publisher.presence(ROOM), lambda members: members == [], "leave")


async def test_presence_is_refreshed_before_it_expires(env: GatewayEnv) -> None:
    ann = Member("u-ann")
    settings = env.settings(presence_ttl=0.6)
    async with serve_gateway(settings) as url, open_ws(url, env.token(ROOM, user=ann)) as ws:
        await ws.subscribe(ROOM)
        client = aioredis.Redis.from_url(env.redis_url.split("?")[0])
        try:
            zset = env.publisher.keys(ROOM).presence
            first = await client.zscore(zset, "u-ann")
            assert first is not None
            await eventually(
                lambda: client.zscore(zset, "u-ann"),
                lambda score: score is not None and score > first,
                "the member's expiry to move forward",
            )
        finally:
            await client.aclose()
        assert await env.publisher.presence(ROOM) == [ann]


# -- catch-up -------------------------------------------------------------------------------


async def test_catch_up_pages_with_after_and_limit(env: GatewayEnv, gateway: str) -> None:
    sent = await env.publish("orders.1", 5)
    token = env.token("orders.1")
    pages = []
    async with httpx.AsyncClient(base_url=gateway, params={"token": token}) as client:
        newest = await client.get("/channels/orders.1/events", params={"limit": 2})
        assert [item["event"]["id"] for item in newest.json()["events"]] == ids(sent[-2:])
        assert newest.json()["has_more"] is True
        after = (await _entry_ids(env, "orders.1"))[0]
        while True:
            response = await client.get(
                "/channels/orders.1/events", params={"after": after, "limit": 2}
            )
            assert response.status_code == 200
            pages.append(response)
            after = response.json()["next"]
            if not response.json()["has_more"]:
                break
    assert [item["event"]["id"] for page in pages for item in page.json()["events"]] == ids(
        sent[1:]
    )
    assert [len(page.json()["events"]) for page in pages] == [2, 2]
    assert pages[-1].json()["next"] == (await _entry_ids(env, "orders.1"))[-1]


async def test_catch_up_pages_are_cacheable(env: GatewayEnv, gateway: str) -> None:
    await env.publish("orders.1", 3)
    first = (await _entry_ids(env, "orders.1"))[0]
    async with httpx.AsyncClient(
        base_url=gateway, params={"token": env.token("orders.1")}
    ) as client:
        full = await client.get("/channels/orders.1/events", params={"after": first, "limit": 2})
        assert full.headers["cache-control"] == "private, max-age=3600, immutable"
        tail = await client.get("/channels/orders.1/events", params={"after": first, "limit": 5})
        assert tail.headers["cache-control"] == "private, max-age=2"
        assert tail.headers["vary"] == "Authorization"
        etag = tail.headers["etag"]
        again = await client.get(
            "/channels/orders.1/events",
            params={"after": first, "limit": 5},
            headers={"If-None-Match": etag},
        )
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        await env.publish("orders.1")
        changed = await client.get(
            "/channels/orders.1/events",
            params={"after": first, "limit": 5},
            headers={"If-None-Match": etag},
        )
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert len(changed.json()["events"]) == 3


async def test_catch_up_refuses_bad_requests_and_old_cursors(
    redis_server: str, redis_prefix: str
) -> None:
    env = GatewayEnv.create(redis_server, redis_prefix, history="2", exact="true")
    try:
        await env.publish("orders.1", 4)
        async with (
            serve_gateway(env.settings()) as url,
            httpx.AsyncClient(base_url=url, params={"token": env.token("orders.1")}) as client,
        ):
            gone = await client.get("/channels/orders.1/events", params={"after": "1-0"})
            assert gone.status_code == 410
            assert gone.json()["error"] == "cursor_too_old"
            assert gone.json()["next"] == (await _entry_ids(env, "orders.1"))[-1]
            for params in ({"limit": "0"}, {"limit": "many"}, {"after": "yesterday"}):
                bad = await client.get("/channels/orders.1/events", params=params)
                assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")
            bad_channel = await client.get("/channels/no%20spaces/events")
            assert bad_channel.status_code == 400
    finally:
        await env.aclose()


async def test_healthz_answers_for_load_balancers(env: GatewayEnv, gateway: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["connections"] == {"sse": 0, "ws": 0}
