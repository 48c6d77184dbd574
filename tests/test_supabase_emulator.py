"""The Supabase Realtime emulator, held to Supabase's own Python client (``realtime`` 2.x).

Most tests drive the emulator with ``AsyncRealtimeClient`` pointed at it as
Supabase points it at a local project (``{url}/realtime/v1`` and a key):
what the client sends and parses is the check, written by someone else.
REST calls are plain httpx, as realtime_bridge makes them; the raw wire
format (V1 JSON frames) is pinned with a bare ``websockets`` client. No test
sleeps to assert: events are awaited with timeouts, and time moves through a
``ManualClock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
import websockets
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime._async.channel import AsyncRealtimeChannel
from realtime.exceptions import RealtimeHTTPError
from realtime.types import RealtimeAcknowledgementStatus

from realtime_bridge.testing.supabase import (
    DEFAULT_JWT_SECRET,
    ManualClock,
    SupabaseEmulator,
    serve,
)

TIMEOUT = 5.0
SUBSCRIBED = RealtimeSubscribeStates.SUBSCRIBED
CHANNEL_ERROR = RealtimeSubscribeStates.CHANNEL_ERROR
CLOSED = RealtimeSubscribeStates.CLOSED


# -- fixtures and helpers ----------------------------------------------------------------


class Recorder:
    """A callback that keeps what it is called with; ``wait`` until a condition holds."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, *args: Any) -> None:
        self.items.append(args[0] if len(args) == 1 else args)
        self._changed.set()

    async def wait(
        self, condition: Callable[[list[Any]], bool] = bool, within: float = TIMEOUT
    ) -> list[Any]:
        async with asyncio.timeout(within):
            while not condition(self.items):
                self._changed.clear()
                await self._changed.wait()
        return self.items


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator(clock: ManualClock) -> SupabaseEmulator:
    return SupabaseEmulator(clock=clock)


@pytest.fixture
async def base_url(emulator: SupabaseEmulator) -> AsyncIterator[str]:
    async with serve(emulator) as url:
        yield url


@pytest.fixture
async def http(base_url: str, emulator: SupabaseEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """REST as a backend calls it: the service key, as ``apikey`` and Bearer."""
    headers = {"apikey": emulator.service_key, "Authorization": f"Bearer {emulator.service_key}"}
    async with httpx.AsyncClient(base_url=f"{base_url}/realtime/v1", headers=headers) as client:
        yield client


@pytest.fixture
async def clients(base_url: str, emulator: SupabaseEmulator) -> AsyncIterator[Clients]:
    opened = Clients(base_url, emulator)
    try:
        yield opened
    finally:
        await opened.close()


class Clients:
    """Supabase's client, as many as a test wants, all closed at the end."""

    def __init__(self, base_url: str, emulator: SupabaseEmulator) -> None:
        self.base_url = base_url
        self.emulator = emulator
        self.opened: list[AsyncRealtimeClient] = []

    def new(self, token: str | None = None, **options: Any) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(
            f"{self.base_url}/realtime/v1", token=token or self.emulator.anon_key, **options
        )
        self.opened.append(client)
        return client

    async def close(self) -> None:
        for client in self.opened:
            await client.remove_all_channels()


async def subscribed(
    channel: AsyncRealtimeChannel, states: Recorder | None = None
) -> AsyncRealtimeChannel:
    """Subscribe and insist on SUBSCRIBED."""
    states = states or Recorder()
    await channel.subscribe(states)
    assert states.items and states.items[-1][0] == SUBSCRIBED, states.items
    return channel


async def round_trip(channel: AsyncRealtimeChannel) -> None:
    """A push the server answers: what the socket sent before it has been handled."""
    replies = Recorder()
    push = await channel.push("presence", {})  # no "event": the server just says ok
    push.receive(RealtimeAcknowledgementStatus.Ok, replies)
    await replies.wait()


def presence_of(channel: AsyncRealtimeChannel) -> dict[str, list[dict[str, Any]]]:
    """The client's presence state without the refs."""
    return {
        key: [{k: v for k, v in entry.items() if k != "presence_ref"} for entry in entries]
        for key, entries in channel.presence_state().items()
    }


async def presence_becomes(
    channel: AsyncRealtimeChannel, syncs: Recorder, expected: dict[str, Any]
) -> None:
    await syncs.wait(lambda _: presence_of(channel) == expected)


def options(**config: Any) -> Any:
    """Channel options, ``{"config": {...}}`` (realtime-py's TypedDicts want every key)."""
    return {"config": config}


def batch(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(messages)}


def message(topic: str = "room-1", event: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"topic": topic, "event": event, "payload": fields.pop("payload", {"n": 1}), **fields}


# -- the client against the emulator -------------------------------------------------------


async def test_subscribed_clients_receive_a_rest_batch_broadcast(
    clients: Clients, http: httpx.AsyncClient, emulator: SupabaseEmulator
) -> None:
    received, states = Recorder(), Recorder()
    config = options(presence={"key": "u1"}, broadcast={"self": True})
    channel = clients.new().channel("room-1", config)
    await (
        channel.on_broadcast("order.updated", received)
        .on_presence_sync(Recorder())
        .subscribe(states)
    )
    assert states.items == [(SUBSCRIBED, None)]
    assert emulator.subscribers("room-1") == 1 and emulator.connections == 1

    message_id = str(uuid.uuid4())
    body = batch(
        message(event="ignored.event"),
        message(event="order.updated", payload={"status": "paid"}, id=message_id),
    )
    response = await http.post("/api/broadcast", json=body)

    assert response.status_code == 202 and response.content == b""
    [payload] = await received.wait()
    assert payload == {
        "event": "order.updated",
        "payload": {"status": "paid"},
        "meta": {"id": message_id},
    }
    accepted = emulator.broadcasts("room-1")
    assert [(b.event, b.payload, b.id, b.source) for b in accepted] == [
        ("ignored.event", {"n": 1}, None, "rest"),
        ("order.updated", {"status": "paid"}, message_id, "rest"),
    ]


async def test_track_shows_presence_to_others_and_untrack_and_leave_remove_it(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    alice = clients.new().channel("room-1", options(presence={"key": "u1"}))
    bob_syncs, joins, leaves = Recorder(), Recorder(), Recorder()
    bob = clients.new().channel("room-1", options(presence={"key": "u2"}))
    bob.on_presence_sync(lambda: bob_syncs("sync")).on_presence_join(joins)
    bob.on_presence_leave(leaves)
    await subscribed(alice.on_presence_sync(lambda: None))
    await subscribed(bob)

    await alice.track({"name": "alice"})
    await presence_becomes(bob, bob_syncs, {"u1": [{"name": "alice"}]})
    assert emulator.presence("room-1") == {"u1": [{"name": "alice"}]}
    key, current, new = joins.items[-1]
    assert key == "u1" and current == [] and new[0]["name"] == "alice"
    assert new[0]["presence_ref"]  # the server's phx_ref, renamed by the client

    await alice.track({"name": "alice", "status": "away"})  # an update: one entry still
    await presence_becomes(bob, bob_syncs, {"u1": [{"name": "alice", "status": "away"}]})

    late_syncs = Recorder()
    late = clients.new().channel("room-1", options(presence={"key": "u3"}))
    await subscribed(late.on_presence_sync(lambda: late_syncs("sync")))
    await presence_becomes(late, late_syncs, {"u1": [{"name": "alice", "status": "away"}]})

    await alice.untrack()
    await presence_becomes(bob, bob_syncs, {})
    assert leaves.items[-1][0] == "u1" and emulator.presence("room-1") == {}

    await alice.track({"name": "alice"})
    await presence_becomes(bob, bob_syncs, {"u1": [{"name": "alice"}]})
    await alice.unsubscribe()  # leaving the channel leaves presence too
    await presence_becomes(bob, bob_syncs, {})
    assert emulator.subscribers("room-1") == 2


async def test_socket_broadcasts_reach_the_others_and_the_sender_only_with_self(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    to_self, to_other = Recorder(), Recorder()
    config = options(broadcast={"self": True})
    sender = clients.new().channel("room-1", config)
    await subscribed(sender.on_broadcast("*", to_self))
    other = clients.new().channel("room-1")
    await subscribed(other.on_broadcast("typing", to_other))

    await sender.send_broadcast("typing", {"who": "alice"})
    await to_other.wait()
    await to_self.wait()
    assert to_other.items == to_self.items == [{"event": "typing", "payload": {"who": "alice"}}]

    await other.send_broadcast("typing", {"who": "bob"})  # "self" is off for this one
    await to_self.wait(lambda items: len(items) == 2)
    assert to_self.items[1]["payload"] == {"who": "bob"}
    assert [(b.payload, b.delivered) for b in emulator.broadcasts("room-1")] == [
        ({"who": "alice"}, 2),
        ({"who": "bob"}, 1),
    ]
    assert len(to_other.items) == 1


async def test_http_send_is_realtime_pys_rest_path(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    received = Recorder()
    listener = clients.new().channel("room-1")
    await subscribed(listener.on_broadcast("*", received))
    sender = clients.new(token=emulator.service_key).channel("room-1")  # never subscribed

    await sender.http_send("note", {"text": "hi"})
    await sender.http_send("list", [1, 2])  # not an object: Plug puts it under "_json"
    await received.wait(lambda items: len(items) == 2)
    assert received.items == [
        {"event": "note", "payload": {"text": "hi"}},
        {"event": "list", "payload": {"_json": [1, 2]}},
    ]
    await sender.http_send("raw", b"\x00\x01")  # accepted; a vsn 1.0.0 socket cannot get it
    raw = emulator.broadcasts("room-1")[-1]
    assert (raw.payload, raw.delivered, raw.source) == (b"\x00\x01", 0, "rest-single")
    assert emulator.requests["POST /api/broadcast/{topic}/events/{event}"] == 3


async def test_private_join_needs_a_select_policy(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    user = emulator.user_token("user-1")
    private = options(private=True)
    client = clients.new()
    await client.set_auth(user)
    states = Recorder()
    await client.channel("secret-room", private).subscribe(states)
    state, error = states.items[0]
    assert state == CHANNEL_ERROR
    assert json.loads(str(error)) == {
        "reason": "Unauthorized: You do not have permissions to read from this Channel "
        "topic: secret-room"
    }
    assert emulator.subscribers("secret-room") == 0
    await client.remove_all_channels()  # or it would rejoin by itself, a second later

    emulator.allow("secret-*", role="authenticated", sub="user-1", insert=False)
    allowed = clients.new()
    await allowed.set_auth(user)
    await subscribed(allowed.channel("secret-room", private))
    assert emulator.subscribers("secret-room", private=True) == 1

    other = clients.new()
    await other.set_auth(emulator.user_token("user-2"))  # the policy is for user-1
    refused = Recorder()
    await other.channel("secret-room", private).subscribe(refused)
    assert refused.items[0][0] == CHANNEL_ERROR

    admin = clients.new(token=emulator.service_key)  # service_role bypasses RLS
    await subscribed(admin.channel("secret-room", private))


async def test_private_batch_message_without_insert_is_dropped_silently(
    clients: Clients, base_url: str, emulator: SupabaseEmulator
) -> None:
    emulator.allow("vault", role="authenticated", insert=False)  # members may only read
    received, public = Recorder(), Recorder()
    client = clients.new()
    await client.set_auth(emulator.user_token("reader"))
    await subscribed(client.channel("vault", options(private=True)).on_broadcast("*", received))
    await subscribed(clients.new().channel("vault").on_broadcast("*", public))

    anon = {"apikey": emulator.anon_key}
    async with httpx.AsyncClient(base_url=f"{base_url}/realtime/v1", headers=anon) as http:
        dropped = await http.post("/api/broadcast", json=batch(message("vault", private=True)))
        assert dropped.status_code == 202  # ...and nothing is sent
        emulator.allow("vault", role="anon", select=False, extension="broadcast")
        sent = await http.post(
            "/api/broadcast", json=batch(message("vault", "second", private=True))
        )
        assert sent.status_code == 202
        await http.post("/api/broadcast", json=batch(message("vault", "public")))

    await received.wait()
    await public.wait()
    assert [p["event"] for p in received.items] == ["second"]  # the first never came
    assert [p["event"] for p in public.items] == ["public"]  # private and public are apart
    [drop] = emulator.dropped
    assert (drop.topic, drop.event, drop.role, drop.source) == ("vault", "hi", "anon", "rest")
    assert [b.event for b in emulator.broadcasts("vault")] == ["second", "public"]


async def test_private_sockets_need_insert_to_send_and_track(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    emulator.allow("club", role="authenticated", sub="member", insert=False)
    emulator.allow("club", role="authenticated", sub="writer")
    received = Recorder()
    config = options(private=True, presence={"key": "m"})
    member_client = clients.new()
    await member_client.set_auth(emulator.user_token("member"))
    member = member_client.channel("club", config)
    await subscribed(member.on_broadcast("*", received))
    writer_client = clients.new()
    await writer_client.set_auth(emulator.user_token("writer"))
    writer_syncs = Recorder()
    writer = writer_client.channel("club", options(private=True))
    await subscribed(writer.on_presence_sync(lambda: writer_syncs("sync")))

    await member.send_broadcast("denied", {})  # no INSERT: ignored without a word
    await writer.send_broadcast("allowed", {})
    await received.wait()
    assert [p["event"] for p in received.items] == ["allowed"]
    assert [d.event for d in emulator.dropped] == ["denied"]

    push = await member.push("presence", {"event": "track", "payload": {"x": 1}})
    replies = Recorder()
    push.receive(RealtimeAcknowledgementStatus.Error, replies)
    await replies.wait()  # refused: no INSERT on presence
    assert emulator.presence("club", private=True) == {}
    await writer.track({"w": 1})
    await writer_syncs.wait(lambda _: bool(writer.presence_state()))
    assert list(emulator.presence("club", private=True).values()) == [[{"w": 1}]]


async def test_jwt_errors_are_401_on_rest(
    http: httpx.AsyncClient, emulator: SupabaseEmulator, clock: ManualClock
) -> None:
    body = batch(message())
    forged = jwt.encode({"role": "anon", "exp": int(clock()) + 60}, "x" * 40, algorithm="HS256")
    expired = emulator.user_token("u", exp=clock() - 10)
    no_role = emulator.token({"exp": int(clock()) + 60})
    for token in (forged, expired, no_role, "not-a-jwt"):
        response = await http.post(
            "/api/broadcast", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
        assert response.headers["x-rate-limit"] == "100"
    apikey_only = {"Authorization": "", "apikey": emulator.anon_key}
    assert (await http.post("/api/broadcast", json=body, headers=apikey_only)).status_code == 202
    signed_by_pyjwt = jwt.encode(
        {"role": "service_role", "exp": int(clock()) + 60}, DEFAULT_JWT_SECRET, algorithm="HS256"
    )
    for token in (signed_by_pyjwt, emulator.token({"role": "anon", "exp": 2**40}, "HS512")):
        bearer = {"Authorization": f"bearer {token}"}
        assert (await http.post("/api/broadcast", json=body, headers=bearer)).status_code == 202


async def test_jwt_errors_refuse_the_socket_and_the_join(
    clients: Clients, base_url: str, emulator: SupabaseEmulator, clock: ManualClock
) -> None:
    forged = jwt.encode({"role": "anon", "exp": int(clock()) + 60}, "y" * 40, algorithm="HS256")
    bad = clients.new(token=forged, auto_reconnect=False)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await bad.connect()
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"") == {
        "error": "Failed to validate JWT signature"
    }

    reasons = {
        emulator.user_token("u", exp=clock() - 10): "InvalidJWTToken: Token has expired 10 "
        "seconds ago",
        forged: "JwtSignatureError: Failed to validate JWT signature",
        "not.a.jwt": "MalformedJWT: The token provided is not a valid JWT",
    }
    for token, reason in reasons.items():
        client = clients.new()
        await client.set_auth(token)
        states = Recorder()
        await client.channel("room-1").subscribe(states)
        state, error = states.items[0]
        assert (state, json.loads(str(error))) == (CHANNEL_ERROR, {"reason": reason})


async def test_a_new_access_token_is_checked_and_an_expired_one_closes_the_channel(
    clients: Clients, emulator: SupabaseEmulator, clock: ManualClock
) -> None:
    client = clients.new()
    await client.set_auth(emulator.user_token("u", exp=clock() + 60))
    states = Recorder()
    channel = client.channel("room-1")
    await subscribed(channel, states)
    await client.set_auth(emulator.user_token("u", exp=clock() + 3600))  # accepted quietly
    await round_trip(channel)
    clock.advance(120)
    assert emulator.check_tokens() == 0  # the new token still holds
    await client.set_auth(emulator.user_token("u", exp=clock() - 5))
    await states.wait(lambda items: items[-1][0] == CLOSED)
    assert [s for s, _ in states.items] == [SUBSCRIBED, CHANNEL_ERROR, CLOSED]
    assert "Token has expired 5 seconds ago" in str(states.items[1][1])
    assert emulator.subscribers("room-1") == 0

    other = clients.new()
    await other.set_auth(emulator.user_token("v", exp=clock() + 30))
    other_states = Recorder()
    await subscribed(other.channel("room-2"), other_states)
    clock.advance(31)
    assert emulator.check_tokens() == 1  # the server's periodic check, run now
    await other_states.wait(lambda items: items[-1][0] == CLOSED)


async def test_invalid_payloads_are_422(http: httpx.AsyncClient) -> None:
    cases = [
        (batch(message(payload=[1, 2])), {"messages": [{"payload": ["is invalid"]}]}),
        (batch(message(payload="text")), {"messages": [{"payload": ["is invalid"]}]}),
        (
            batch(message(), {"topic": "t", "payload": {}}),
            {"messages": [{}, {"event": ["can't be blank"]}]},
        ),
        (batch(message(id="not-a-uuid")), {"messages": [{"id": ["is invalid"]}]}),
        (batch(message(private="maybe")), {"messages": [{"private": ["is invalid"]}]}),
        ({"messages": []}, {"messages": ["can't be blank"]}),
        ({}, {"messages": ["can't be blank"]}),
        ({"messages": "x"}, {"messages": ["is invalid"]}),
    ]
    for body, errors in cases:
        response = await http.post("/api/broadcast", json=body)
        assert (response.status_code, response.json()) == (422, {"errors": errors}), body


async def test_payloads_over_the_tenant_limit_are_422() -> None:
    small = SupabaseEmulator(max_payload_kb=1)  # 1,000 bytes + the server's 500 of padding
    async with serve(small) as url:
        headers = {"apikey": small.service_key}
        async with httpx.AsyncClient(base_url=f"{url}/realtime/v1", headers=headers) as http:
            fits = await http.post("/api/broadcast", json=batch(message(payload={"s": "x" * 1400})))
            too_big = batch(message(payload={"s": "x" * 1500}))
            refused = await http.post("/api/broadcast", json=too_big)
            single = await http.post("/api/broadcast/room-1/events/big", json={"s": "x" * 1500})
    assert fits.status_code == 202
    expected = {"errors": {"messages": [{"payload": ["Payload size exceeds tenant limit"]}]}}
    assert (refused.status_code, refused.json()) == (422, expected)
    assert single.status_code == 422
    assert single.json() == {"errors": {"payload": ["Payload size exceeds tenant limit"]}}
    assert len(small.broadcasts()) == 1


async def test_the_messages_per_second_quota_is_429_with_rate_headers(
    clock: ManualClock,
) -> None:
    emulator = SupabaseEmulator(messages_per_second=3, clock=clock)
    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"apikey": emulator.service_key}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://project.test/realtime/v1", headers=headers
    ) as http:
        four = await http.post("/api/broadcast", json=batch(*[message()] * 4))
        assert four.status_code == 429
        assert four.json() == {
            "message": "Too many messages to broadcast, please reduce the batch size"
        }
        assert (await http.post("/api/broadcast", json=batch(*[message()] * 3))).status_code == 202
        limited = await http.post("/api/broadcast", json=batch(message()))
        assert (limited.status_code, limited.json()) == (429, {"message": "Too many requests"})
        rate = {k: v for k, v in limited.headers.items() if k.startswith("x-rate")}
        assert rate == {"x-rate-rolling": "3", "x-rate-limit": "3", "x-rate-limit-remaining": "0"}
        single = await http.post("/api/broadcast/room-1/events/e", json={})
        assert single.status_code == 429
        clock.advance(1)  # a new second: the quota is fresh
        again = await http.post("/api/broadcast", json=batch(message()))
        assert again.status_code == 202 and again.headers["x-rate-rolling"] == "0"
    assert len(emulator.broadcasts()) == 4


async def test_deliveries_count_toward_the_quota(clients: Clients) -> None:
    emulator = clients.emulator
    emulator.messages_per_second = 5
    for _ in range(2):
        await subscribed(clients.new().channel("room-1"))
    sender = clients.new().channel("room-1")
    await sender.http_send("e", {})  # 1 sent + 2 delivered
    assert emulator.rate.count == 3
    await sender.http_send("e", {})  # under 5 when asked; 6 after
    with pytest.raises(RealtimeHTTPError) as limited:
        await sender.http_send("e", {})
    assert (limited.value.status, limited.value.message) == (429, "Too many requests")


async def test_a_suspended_tenant_is_403() -> None:
    emulator = SupabaseEmulator()
    emulator.suspended = True
    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"apikey": emulator.service_key}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://project.test/realtime/v1", headers=headers
    ) as suspended:
        response = await suspended.post("/api/broadcast", json=batch(message()))
        assert (response.status_code, response.json()) == (403, {"message": "Tenant is suspended"})
        single = await suspended.post("/api/broadcast/room-1/events/e", json={})
        assert single.status_code == 403
        unauthenticated = await suspended.post(
            "/api/broadcast", json=batch(message()), headers={"apikey": "nope"}
        )
        assert unauthenticated.status_code == 401  # authentication comes first
    assert not emulator.broadcasts()


async def test_a_suspended_tenant_refuses_sockets(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    emulator.suspended = True
    client = clients.new(auto_reconnect=False)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await client.connect()
    assert refused.value.response.status_code == 403


async def test_injected_failures(
    http: httpx.AsyncClient, clients: Clients, emulator: SupabaseEmulator
) -> None:
    received = Recorder()
    await subscribed(clients.new().channel("room-1").on_broadcast("*", received))
    emulator.fail_next(2, status=503)
    for _ in range(2):
        failed = await http.post("/api/broadcast", json=batch(message()))
        assert (failed.status_code, failed.json()) == (503, {"message": "Service Unavailable"})
    assert (await http.post("/api/broadcast", json=batch(message(event="ok")))).status_code == 202

    emulator.fail_next(1, status=429, retry_after=2)
    limited = await http.post("/api/broadcast", json=batch(message()))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.headers["x-rate-limit"] == "100"

    emulator.fail_next(1, status=502, applied=True)  # it happened; only the answer is lost
    lost = await http.post("/api/broadcast", json=batch(message(event="lost-answer")))
    assert lost.status_code == 502
    await received.wait(lambda items: len(items) == 2)
    assert [p["event"] for p in received.items] == ["ok", "lost-answer"]

    emulator.fail_next(1, status=500, path="/realtime/v1/api/broadcast/")
    with pytest.raises(RealtimeHTTPError) as error:
        await clients.new().channel("room-1").http_send("e", {})
    assert error.value.status == 500
    emulator.latency = 0.001
    assert (await http.post("/api/broadcast", json=batch(message()))).status_code == 202
    emulator.clear_faults()
    assert emulator.latency == 0 and not emulator.faults.pending
    assert sum(entry.fault for entry in emulator.request_log) == 5


async def test_the_client_reconnects_and_rejoins_when_sockets_drop(
    clients: Clients, http: httpx.AsyncClient, emulator: SupabaseEmulator
) -> None:
    states, received = Recorder(), Recorder()
    channel = clients.new(initial_backoff=0.01).channel("room-1")
    await subscribed(channel.on_broadcast("*", received), states)
    assert emulator.disconnect_all() == 1
    await states.wait(lambda items: items[-1][0] == SUBSCRIBED and len(items) >= 3)
    assert [s for s, _ in states.items] == [SUBSCRIBED, CHANNEL_ERROR, SUBSCRIBED]
    await http.post("/api/broadcast", json=batch(message()))
    await received.wait()


# -- the wire, frame by frame ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_socket(base_url: str, token: str) -> AsyncIterator[Any]:
    url = base_url.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={token}&vsn=1.0.0"
    async with websockets.connect(url) as ws:
        yield ws


async def exchange(ws: Any, topic: str, event: str, payload: Any, ref: str | None) -> Any:
    frame = {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": ref}
    await ws.send(json.dumps(frame))


async def next_frame(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def test_v1_frames_as_phoenix_writes_them(
    base_url: str, http: httpx.AsyncClient, emulator: SupabaseEmulator
) -> None:
    async with raw_socket(base_url, emulator.anon_key) as ws:
        await exchange(ws, "phoenix", "heartbeat", {}, "1")
        assert await next_frame(ws) == {
            "topic": "phoenix",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": {}},
            "ref": "1",
        }
        config = {"presence": {"key": "k", "enabled": True}, "broadcast": {"ack": True}}
        await exchange(ws, "realtime:room-1", "phx_join", {"config": config}, "2")
        reply = await next_frame(ws)
        assert reply["payload"] == {"status": "ok", "response": {"postgres_changes": []}}
        state = await next_frame(ws)
        assert (state["event"], state["payload"], state["ref"]) == ("presence_state", {}, None)

        track = {"event": "track", "payload": {"name": "zed"}}
        await exchange(ws, "realtime:room-1", "presence", track, "3")
        assert (await next_frame(ws))["payload"] == {"status": "ok", "response": {}}
        diff = await next_frame(ws)  # the tracking socket gets its own join too
        assert diff["event"] == "presence_diff" and diff["payload"]["leaves"] == {}
        [meta] = diff["payload"]["joins"]["k"]["metas"]
        assert meta["name"] == "zed" and isinstance(meta["phx_ref"], str)

        send = {"type": "broadcast", "event": "typing", "payload": {"a": 1}}
        await exchange(ws, "realtime:room-1", "broadcast", send, "4")
        assert (await next_frame(ws))["payload"] == {"status": "ok", "response": {}}  # ack

        await http.post("/api/broadcast", json=batch(message(payload={"b": 2})))
        assert await next_frame(ws) == {
            "topic": "realtime:room-1",
            "event": "broadcast",
            "payload": {"payload": {"b": 2}, "event": "hi", "type": "broadcast"},
            "ref": None,
        }
        await exchange(ws, "realtime:elsewhere", "broadcast", send, "5")
        unmatched = await next_frame(ws)
        assert unmatched["payload"] == {
            "status": "error",
            "response": {"reason": "unmatched topic"},
        }

        await exchange(ws, "realtime:room-1", "phx_leave", {}, "6")
        assert (await next_frame(ws))["payload"] == {"status": "ok", "response": {}}
        assert await next_frame(ws) == {
            "topic": "realtime:room-1",
            "event": "phx_close",
            "payload": {},
            "ref": "2",
        }
        await exchange(ws, "realtime:", "phx_join", {}, "7")
        empty = await next_frame(ws)
        assert empty["payload"]["response"] == {
            "reason": "TopicNameRequired: You must provide a topic name"
        }
    assert emulator.presence("room-1") == {}


async def test_oversize_socket_broadcasts_and_the_presence_call_limit(clock: ManualClock) -> None:
    emulator = SupabaseEmulator(max_payload_kb=1, clock=clock)
    big = {"type": "broadcast", "event": "big", "payload": {"s": "x" * 1500}}
    async with serve(emulator) as url, raw_socket(url, emulator.anon_key) as ws:
        acked = {"config": {"broadcast": {"ack": True}}}
        await exchange(ws, "realtime:acked", "phx_join", acked, "1")
        await exchange(ws, "realtime:quiet", "phx_join", {}, "2")
        assert [(await next_frame(ws))["ref"] for _ in range(2)] == ["1", "2"]
        await exchange(ws, "realtime:acked", "broadcast", big, "3")
        # the server's reply carries a bare atom, which realtime-py cannot parse
        assert (await next_frame(ws))["payload"] == {
            "status": "error",
            "response": "payload_size_exceeded",
        }
        await exchange(ws, "realtime:quiet", "broadcast", big, "4")  # no ack: no word
        for n in range(5):  # five presence calls in 30 s are allowed...
            await exchange(ws, "realtime:quiet", "presence", {"event": "untrack"}, f"p{n}")
            assert (await next_frame(ws))["ref"] == f"p{n}"
        await exchange(ws, "realtime:quiet", "presence", {"event": "untrack"}, "p5")
        system = await next_frame(ws)  # ...the sixth shuts the channel down
        assert system["event"] == "system" and system["payload"] == {
            "extension": "system",
            "status": "error",
            "message": "Client presence rate limit exceeded",
            "channel": "quiet",
        }
        assert (await next_frame(ws))["event"] == "phx_close"
    assert [(d.event, d.reason) for d in emulator.dropped] == [
        ("big", "payload size exceeds tenant limit")
    ]
    assert not emulator.broadcasts()


async def test_private_only_and_database_broadcasts(
    clients: Clients, emulator: SupabaseEmulator
) -> None:
    received = Recorder()
    await subscribed(clients.new().channel("room-1").on_broadcast("*", received))
    message_id = str(uuid.uuid4())
    assert emulator.send("room-1", "row.inserted", {"id": 7}, id=message_id) == 1
    [payload] = await received.wait()
    assert payload == {"event": "row.inserted", "payload": {"id": 7}, "meta": {"id": message_id}}

    emulator.private_only = True  # "Allow public access" turned off
    states = Recorder()
    await clients.new().channel("room-2").subscribe(states)
    assert json.loads(str(states.items[0][1])) == {
        "reason": "PrivateOnly: This project only allows private channels"
    }
    admin = clients.new(token=emulator.service_key)
    await subscribed(admin.channel("room-2", options(private=True)))


async def test_a_frame_phoenix_cannot_decode_closes_the_socket(
    base_url: str, emulator: SupabaseEmulator
) -> None:
    async with raw_socket(base_url, emulator.anon_key) as ws:
        await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat"}))  # no payload, ref
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_handshake_refusals(base_url: str, emulator: SupabaseEmulator) -> None:
    ws_url = base_url.replace("http://", "ws://")
    cases = [
        ("/realtime/v1/websocket?vsn=1.0.0", 401, {"error": "API key is missing"}),
        (
            "/realtime/v1/websocket?apikey=abc&vsn=1.0.0",
            401,
            {"error": "The token provided is not a valid JWT"},
        ),
        (f"/realtime/v1/websocket?apikey={emulator.anon_key}&vsn=2.0.0", 403, None),
        ("/realtime/v1/elsewhere", 404, None),
    ]
    for path, status, body in cases:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url + path):
                pass
        assert refused.value.response.status_code == status, path
        if body is not None:
            assert json.loads(refused.value.response.body or b"") == body


async def test_the_bare_server_paths_work_too(base_url: str, emulator: SupabaseEmulator) -> None:
    ws_url = base_url.replace("http://", "ws://") + f"/socket/websocket?apikey={emulator.anon_key}"
    async with websockets.connect(ws_url) as ws:
        await exchange(ws, "phoenix", "heartbeat", {}, "1")
        assert (await next_frame(ws))["event"] == "phx_reply"
    async with httpx.AsyncClient(base_url=base_url) as http:
        headers = {"apikey": emulator.service_key}
        response = await http.post("/api/broadcast", json=batch(message()), headers=headers)
        assert response.status_code == 202
        missing = await http.post("/rest/v1/anything", headers=headers)
        assert missing.status_code == 404


async def test_single_endpoint_content_types_and_private_refusal(
    http: httpx.AsyncClient, emulator: SupabaseEmulator
) -> None:
    path = "/api/broadcast/room%2F1/events/e%20v"
    text = await http.post(path, content=b"hi", headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "x-rate-limit" not in text.headers
    malformed = await http.post(path, content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert (await http.post(path, json={"a": 1})).status_code == 202
    assert (emulator.broadcasts()[-1].topic, emulator.broadcasts()[-1].event) == ("room/1", "e v")

    anon = {"apikey": emulator.anon_key, "Authorization": ""}
    refused = await http.post(path, json={}, params={"private": "true"}, headers=anon)
    assert (refused.status_code, refused.json()) == (403, {"message": "Unauthorized"})
    assert (await http.post(path, json={}, params={"private": "true"})).status_code == 202


# -- the Python API and the control API ---------------------------------------------------------


def test_python_api_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="32 characters"):
        SupabaseEmulator("short")
    with pytest.raises(ValueError, match="not a JWT signed"):
        SupabaseEmulator(anon_key=jwt.encode({"role": "anon"}, "z" * 40, algorithm="HS256"))
    emulator = SupabaseEmulator()
    with pytest.raises(ValueError, match="extension"):
        emulator.allow("room", extension="postgres_changes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        emulator.fail_next(1, status=200)
    with pytest.raises(ValueError):
        emulator.latency = -1
    assert SupabaseEmulator().service_key == emulator.service_key  # a secret, one set of keys
    assert emulator.verify(emulator.service_key)["role"] == "service_role"
    assert jwt.decode(emulator.anon_key, DEFAULT_JWT_SECRET, algorithms=["HS256"])["role"] == "anon"


async def test_control_api(emulator: SupabaseEmulator) -> None:
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://project.test") as http:
        policy = await http.post("/_emulator/policies", json={"topic": "a-*", "role": "anon"})
        assert policy.status_code == 201 and emulator.policies[0].topic == "a-*"
        faults = await http.post("/_emulator/faults", json={"fail_next": 1, "status": 503})
        assert faults.json() == {"pending": 1, "latency": 0.0}
        token = (await http.post("/_emulator/tokens", json={"sub": "s"})).json()["token"]
        assert emulator.verify(token)["sub"] == "s"
        headers = {"apikey": token}
        assert (
            await http.post("/realtime/v1/api/broadcast", json=batch(message()), headers=headers)
        ).status_code == 503
        await http.post("/realtime/v1/api/broadcast", json=batch(message()), headers=headers)
        sent = (await http.get("/_emulator/broadcasts", params={"topic": "room-1"})).json()
        assert [b["event"] for b in sent] == ["hi"]
        assert (await http.get("/_emulator/requests")).json() == {"POST /api/broadcast": 2}
        tenant = await http.post("/_emulator/tenant", json={"suspended": True})
        assert tenant.json()["suspended"] is True and emulator.suspended
        assert (await http.get("/_emulator/presence", params={"topic": "x"})).json() == {}
        await http.post("/_emulator/reset")
        assert not emulator.broadcasts() and emulator.policies  # policies are kept
        assert (await http.post("/_emulator/policies", json={})).status_code == 400
