"""The Liveblocks adapter in isolation: URLs, what goes on the wire, and every error mapped.

Each test gives the adapter an ``httpx.MockTransport`` that records the requests and
answers as Liveblocks does (204 for a broadcast, ``{"data": [...]}`` for active users,
``{"error", "message", "suggestion"}`` for errors), so nothing here opens a socket. What
the emulator and the official SDK say about the same calls is in
``test_liveblocks_emulator.py`` and ``test_liveblocks_emulated.py``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from realtime_bridge import Bridge, Event, Member, Occupancy, PublishResult
from realtime_bridge.adapters.base import Capability
from realtime_bridge.adapters.liveblocks import LiveblocksAdapter
from realtime_bridge.errors import (
    AuthenticationFailed,
    CapabilityNotSupported,
    ConfigurationError,
    InvalidChannel,
    PayloadTooLarge,
    PublishRejected,
    RateLimited,
    VendorUnavailable,
)
from realtime_bridge.settings import adapter_from_url, redact_url

SECRET = "sk_dev_0123456789abcdef"
TYPE = "order.updated"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def ev(channel: str = "orders.1", n: int = 0, **data: Any) -> Event:
    return Event(channel=channel, type=TYPE, data={"n": n, **data})


class Wire:
    """A MockTransport recording every request; ``answer`` decides each response."""

    def __init__(self, answer: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(204))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        outcome = self.answer(request)
        return await outcome if isinstance(outcome, Awaitable) else outcome

    def adapter(self, url: str = f"liveblocks://{SECRET}@", **options: Any) -> LiveblocksAdapter:
        return LiveblocksAdapter.from_url(
            url, transport=httpx.MockTransport(self.handle), **options
        )

    @property
    def paths(self) -> list[str]:
        return [request.url.raw_path.decode() for request in self.requests]


def liveblocks_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": code, "message": message, "suggestion": "Try again.", "docs": ""}
    return httpx.Response(status, json=body, headers=headers)


def room_not_found() -> httpx.Response:
    return liveblocks_error(404, "ROOM_NOT_FOUND", "Room not found.")


# -- the URL ------------------------------------------------------------------------------------


def test_the_default_host_is_liveblocks_api_over_tls() -> None:
    adapter = LiveblocksAdapter.from_url(f"liveblocks://{SECRET}@")
    assert adapter.name == "liveblocks://***@api.liveblocks.io"
    assert adapter.limits.max_payload_bytes == 1_000_000
    assert adapter.limits.max_events_per_batch == 100


async def test_a_host_port_and_path_are_used_as_given() -> None:
    wire = Wire()
    adapter = wire.adapter(f"liveblocks://{SECRET}@127.0.0.1:8081/base?tls=false&timeout=3")
    assert adapter.name == "liveblocks://***@127.0.0.1:8081/base?tls=false"
    await adapter.publish([ev()])
    assert (
        str(wire.requests[0].url) == "http://127.0.0.1:8081/base/v2/rooms/orders.1/broadcast_event"
    )
    tls = Wire()
    await tls.adapter(f"liveblocks://{SECRET}@lb.example.com").publish([ev()])
    assert str(tls.requests[0].url).startswith("https://lb.example.com/v2/rooms/")


def test_options_are_read_and_checked() -> None:
    adapter = LiveblocksAdapter.from_url(
        f"liveblocks://{SECRET}@?max_message_size=32000000&concurrency=3"
    )
    assert adapter.limits.max_payload_bytes == 32_000_000
    with pytest.raises(ConfigurationError, match=r"unknown option\(s\) \['colour'\]"):
        LiveblocksAdapter.from_url(f"liveblocks://{SECRET}@?colour=blue")
    with pytest.raises(ConfigurationError, match=r"'concurrency'.*>= 1"):
        LiveblocksAdapter.from_url(f"liveblocks://{SECRET}@?concurrency=0")
    with pytest.raises(ConfigurationError, match="port is not a number"):
        LiveblocksAdapter.from_url(f"liveblocks://{SECRET}@host:http")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("liveblocks://@api.liveblocks.io", "missing the secret key"),
        ("liveblocks://pk_prod_abc@", "public key"),
        ("liveblocks://token123@", "must start with 'sk_'"),
        ("liveblocks://sk_a%2Fb@", "must start with 'sk_'"),
        ("liveblocks://sk_a:sk_b@", "whole user part"),
    ],
)
def test_a_bad_secret_is_refused_without_echoing_it(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        LiveblocksAdapter.from_url(url)
    for secret in ("pk_prod_abc", "token123", "sk_a/b", "sk_b"):
        assert secret not in str(caught.value)


def test_the_scheme_is_registered_and_the_secret_never_shown() -> None:
    url = f"liveblocks://{SECRET}@127.0.0.1:8081?tls=false"
    adapter = adapter_from_url(url)
    assert isinstance(adapter, LiveblocksAdapter)
    bridge = Bridge.from_url(url)
    for shown in (repr(adapter), adapter.name, redact_url(url), repr(bridge)):
        assert SECRET not in shown
    assert redact_url(url) == "liveblocks://***@127.0.0.1:8081?tls=false"


# -- what is declared ----------------------------------------------------------------------------


def test_capabilities_are_what_liveblocks_offers_over_rest() -> None:
    adapter = LiveblocksAdapter.from_url(f"liveblocks://{SECRET}@")
    assert adapter.capabilities == {
        Capability.PUBLISH,
        Capability.BATCH,
        Capability.PRESENCE,
        Capability.OCCUPANCY,
    }


def test_sync_authorize_is_refused_naming_the_coroutine_that_gives_a_token() -> None:
    adapter = LiveblocksAdapter.from_url(f"liveblocks://{SECRET}@")
    for refuse in (
        lambda: adapter.authorize("room.1", user=Member("u1")),
        lambda: adapter.require(Capability.CLIENT_AUTH),
        lambda: Bridge(adapter).authorize("room.1", user=Member("u1")),
    ):
        with pytest.raises(CapabilityNotSupported, match="authorize_room") as caught:
            refuse()
        assert caught.value.capability == "client_auth"
    adapter.require(Capability.PRESENCE)  # what it declares passes
    with pytest.raises(CapabilityNotSupported):
        adapter.require(Capability.HISTORY)


async def test_a_room_id_over_128_characters_is_refused_before_any_io() -> None:
    wire = Wire()
    adapter = wire.adapter()
    longest = "r" * 128
    await adapter.publish([ev(longest)])
    too_long = "r" * 129
    with pytest.raises(InvalidChannel, match="at most 128"):
        await adapter.publish([ev("orders.1"), ev(too_long)])
    with pytest.raises(InvalidChannel):
        Bridge(adapter).validate([ev(too_long)])
    with pytest.raises(InvalidChannel):
        await adapter.presence(too_long)
    assert wire.paths == [f"/v2/rooms/{longest}/broadcast_event"]


async def test_an_event_over_the_size_limit_is_refused_before_any_io() -> None:
    wire = Wire()
    adapter = wire.adapter(f"liveblocks://{SECRET}@?max_message_size=200")
    small, big = ev(n=1), ev(n=2, blob="x" * 200)
    assert adapter.payload_size(small) == len(small.encode()) <= 200
    with pytest.raises(PayloadTooLarge) as caught:
        await adapter.publish([small, big])
    assert caught.value.event_id == big.id and wire.requests == []


# -- publishing ------------------------------------------------------------------------------


async def test_each_event_is_one_broadcast_of_the_whole_envelope() -> None:
    wire = Wire()
    adapter = wire.adapter()
    event = ev("orders=1@a,b;c", 7, note="caf\u00e9")
    assert await adapter.publish([event]) == PublishResult(published=1)
    [request] = wire.requests
    assert request.method == "POST"
    assert request.url.raw_path == b"/v2/rooms/orders%3D1%40a%2Cb%3Bc/broadcast_event"
    assert request.content == event.encode()
    assert Event.decode(request.content) == event
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["content-type"] == "application/json"


async def test_a_rooms_events_go_in_order_and_rooms_side_by_side_within_the_concurrency() -> None:
    in_flight, most = 0, 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)  # let the other rooms' requests start
        in_flight -= 1
        return httpx.Response(204)

    wire = Wire(answer)
    adapter = wire.adapter(f"liveblocks://{SECRET}@?concurrency=2")
    events = [ev(f"room.{n % 5}", n) for n in range(20)]
    assert await adapter.publish(events) == PublishResult(published=20)
    assert most == 2
    for room in range(5):
        sent = [Event.decode(r.content) for r in wire.requests if f"/room.{room}/" in r.url.path]
        assert sent == [event for event in events if event.channel == f"room.{room}"]


async def test_a_room_nobody_entered_counts_as_sent() -> None:
    wire = Wire(lambda request: room_not_found())
    assert await wire.adapter().publish([ev(n=1), ev(n=2)]) == PublishResult(published=2)
    assert len(wire.requests) == 2


async def test_a_404_that_is_not_a_missing_room_means_a_wrong_base_url() -> None:
    wire = Wire(lambda request: httpx.Response(404, text="<html>Not Found</html>"))
    with pytest.raises(
        ConfigurationError, match=re.escape("is http://127.0.0.1:9/x Liveblocks' API")
    ):
        await wire.adapter(f"liveblocks://{SECRET}@127.0.0.1:9/x?tls=false").publish([ev()])


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, "MISSING_SECRET_KEY", AuthenticationFailed),
        (401, "WRONG_KEY_USED", AuthenticationFailed),
        (403, "INVALID_SECRET_KEY", AuthenticationFailed),
        (408, "REQUEST_TIMEOUT", VendorUnavailable),
        (500, "INTERNAL_SERVER_ERROR", VendorUnavailable),
        (502, "BAD_GATEWAY", VendorUnavailable),
        (503, "SERVICE_UNAVAILABLE", VendorUnavailable),
        (400, "BAD_REQUEST", PublishRejected),
        (409, "CONFLICT", PublishRejected),
    ],
)
async def test_errors_are_mapped_once(status: int, code: str, error: type[Exception]) -> None:
    wire = Wire(lambda request: liveblocks_error(status, code, "It went wrong."))
    with pytest.raises(error) as caught:
        await wire.adapter().publish([ev()])
    text = str(caught.value)
    assert type(caught.value) is error
    assert f"answered {status} ({code}: It went wrong. Try again.)" in text
    assert "liveblocks://***@api.liveblocks.io" in text and SECRET not in text


async def test_a_429_is_rate_limited_for_the_retry_after() -> None:
    wire = Wire(
        lambda request: liveblocks_error(
            429, "TOO_MANY_REQUESTS", "Slow down.", **{"Retry-After": "7"}
        )
    )
    with pytest.raises(RateLimited) as caught:
        await wire.adapter().publish([ev()])
    assert caught.value.retry_after == 7.0
    later = email.utils.formatdate(email.utils.mktime_tz((2099, 1, 1, 0, 0, 0, 0, 1, -1, 0)))
    dated = Wire(lambda request: httpx.Response(429, headers={"Retry-After": later}))
    with pytest.raises(RateLimited) as caught:
        await dated.adapter().publish([ev()])
    assert caught.value.retry_after is not None and caught.value.retry_after > 3600
    bare = Wire(lambda request: httpx.Response(429, headers={"Retry-After": "soon"}))
    with pytest.raises(RateLimited) as caught:
        await bare.adapter().publish([ev()])
    assert caught.value.retry_after is None


async def test_a_413_is_payload_too_large_naming_the_event() -> None:
    wire = Wire(lambda request: liveblocks_error(413, "PAYLOAD_TOO_LARGE", "Too big."))
    event = ev()
    with pytest.raises(PayloadTooLarge) as caught:
        await wire.adapter().publish([event])
    assert caught.value.event_id == event.id
    assert f"{len(event.encode())} bytes" in str(caught.value) and "Too big." in str(caught.value)


async def test_a_422_names_the_refused_event() -> None:
    wire = Wire(lambda request: liveblocks_error(422, "UNPROCESSABLE_ENTITY", "Bad JSON."))
    event = ev()
    with pytest.raises(PublishRejected) as caught:
        await wire.adapter().publish([event])
    assert type(caught.value) is PublishRejected and caught.value.event_id == event.id
    assert f"event {event.id} refused" in str(caught.value)


async def test_network_failures_and_timeouts_are_vendor_unavailable_without_the_secret() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.headers['authorization']}")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    with pytest.raises(VendorUnavailable) as caught:
        await Wire(refuse).adapter().publish([ev()])
    assert "ConnectError" in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(VendorUnavailable, match=r"timed out after 10s \(ReadTimeout\)"):
        await Wire(slow).adapter().publish([ev()])


async def test_a_failed_batch_raises_the_failure_most_worth_acting_on_with_what_went() -> None:
    """Room a: its 2nd event is refused (422): its 3rd is never sent. Room b: 503 at once.
    Room c: all sent. The 503 wins (a retry can help); the note counts what Liveblocks took."""
    a = [ev("a", n) for n in range(3)]
    b, c = ev("b", 0), [ev("c", n) for n in range(2)]

    def answer(request: httpx.Request) -> httpx.Response:
        event = Event.decode(request.content)
        if event.id == a[1].id:
            return liveblocks_error(422, "UNPROCESSABLE_ENTITY", "No.")
        if event.channel == "b":
            return liveblocks_error(503, "SERVICE_UNAVAILABLE", "Down.")
        return httpx.Response(204)

    wire = Wire(answer)
    with pytest.raises(VendorUnavailable) as caught:
        await wire.adapter().publish([a[0], b, a[1], c[0], a[2], c[1]])
    assert "3 of 6 events were broadcast by Liveblocks" in "".join(caught.value.__notes__)
    assert a[2].id not in [Event.decode(r.content).id for r in wire.requests]

    only_refused = Wire(answer)
    with pytest.raises(PublishRejected) as refused:
        await only_refused.adapter().publish([a[0], a[1], a[2], c[0]])
    assert refused.value.event_id == a[1].id


async def test_a_rate_limit_wins_over_other_failures_in_a_batch() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "/a/" in request.url.path:
            return liveblocks_error(503, "SERVICE_UNAVAILABLE", "Down.")
        return liveblocks_error(429, "TOO_MANY_REQUESTS", "Slow.", **{"Retry-After": "2"})

    with pytest.raises(RateLimited) as caught:
        await Wire(answer).adapter().publish([ev("a"), ev("b")])
    assert caught.value.retry_after == 2.0
    assert not getattr(caught.value, "__notes__", [])  # nothing went


async def test_an_empty_batch_sends_nothing() -> None:
    wire = Wire()
    assert await wire.adapter().publish([]) == PublishResult(published=0)
    assert wire.requests == []


# -- presence and occupancy --------------------------------------------------------------------


def active_users(*users: tuple[str | None, int, dict[str, Any]]) -> httpx.Response:
    data = [{"type": "user", "id": i, "connectionId": c, "info": info} for i, c, info in users]
    return httpx.Response(200, json={"data": data})


async def test_presence_is_one_member_per_user_sorted_without_anonymous_connections() -> None:
    wire = Wire(
        lambda request: active_users(
            ("bob", 1, {"name": "Bob"}),
            (None, 2, {}),
            ("alice", 3, {"name": "Alice", "tab": 1}),
            ("alice", 4, {"name": "Alice", "tab": 2}),
        )
    )
    adapter = wire.adapter()
    assert await adapter.presence("presence-room.1") == [
        Member("alice", {"name": "Alice", "tab": 1}),
        Member("bob", {"name": "Bob"}),
    ]
    assert await adapter.occupancy("presence-room.1") == Occupancy(
        "presence-room.1", subscribers=4, members=2
    )
    assert wire.paths == ["/v2/rooms/presence-room.1/active_users"] * 2
    assert {request.method for request in wire.requests} == {"GET"}


async def test_a_room_that_does_not_exist_is_empty() -> None:
    adapter = Wire(lambda request: room_not_found()).adapter()
    assert await adapter.presence("quiet.1") == []
    assert await adapter.occupancy("quiet.1") == Occupancy("quiet.1", subscribers=0, members=0)


async def test_reading_presence_maps_errors_too() -> None:
    adapter = Wire(lambda request: liveblocks_error(403, "INVALID_SECRET_KEY", "No.")).adapter()
    with pytest.raises(AuthenticationFailed, match=re.escape("GET /v2/rooms/room.1/active_users")):
        await adapter.presence("room.1")
    adapter = Wire(lambda request: httpx.Response(503)).adapter()
    with pytest.raises(VendorUnavailable):
        await adapter.occupancy("room.1")


async def test_ping_reads_one_room_with_the_key() -> None:
    wire = Wire(lambda request: httpx.Response(200, json={"nextCursor": None, "data": []}))
    await wire.adapter().ping()
    assert str(wire.requests[0].url) == "https://api.liveblocks.io/v2/rooms?limit=1"
    failing = Wire(lambda request: liveblocks_error(401, "MISSING_SECRET_KEY", "No key."))
    with pytest.raises(AuthenticationFailed, match="check the secret key"):
        await failing.adapter().ping()


# -- browser tokens -----------------------------------------------------------------------------


def token_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"token": f"signed-for-{json.loads(request.content)['userId']}"}
    )


async def test_authorize_room_asks_liveblocks_for_an_access_token() -> None:
    wire = Wire(token_answer)
    adapter = wire.adapter()
    grant = await adapter.authorize_room("orders.42", user=Member("user-7", {"name": "Ada"}))
    assert grant == {"token": "signed-for-user-7"}
    [request] = wire.requests
    assert (request.method, request.url.path) == ("POST", "/v2/authorize-user")
    assert json.loads(request.content) == {
        "userId": "user-7",
        "userInfo": {"name": "Ada"},
        "permissions": {"orders.42": ["room:read", "room:presence:write"]},
    }


async def test_token_bodies_for_patterns_several_rooms_and_id_tokens() -> None:
    wire = Wire(token_answer)
    adapter = wire.adapter()
    await adapter.authorize_room("orders.*", user=Member("u1"), permissions=["room:write"])
    rooms = {"a": ["room:read"], "b*": ["*:write", "*:write"]}
    await adapter.authorize_rooms(rooms, user=Member("u1"), organization_id="acme")
    await adapter.identify_user(Member("u1", {"n": 1}), groups=["eng", "ops"])
    bodies = [json.loads(request.content) for request in wire.requests]
    assert bodies == [
        {"userId": "u1", "permissions": {"orders.*": ["room:write"]}},
        {
            "userId": "u1",
            "permissions": {"a": ["room:read"], "b*": ["*:write"]},
            "organizationId": "acme",
        },
        {"userId": "u1", "groupIds": ["eng", "ops"], "userInfo": {"n": 1}},
    ]
    assert [request.url.path for request in wire.requests][-1] == "/v2/identify-user"


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda a: a.authorize_room("r", user=Member("u" * 129)), "1 to 128 characters"),
        (lambda a: a.authorize_room("r", user=Member("u", {"x": "y" * 1100})), "over Liveblocks"),
        (lambda a: a.authorize_room("r", user=Member("u"), permissions=["room:fly"]), "room:fly"),
        (lambda a: a.authorize_room("r", user=Member("u"), permissions=[]), "non-empty"),
        (lambda a: a.authorize_room("a*b", user=Member("u")), r"'\*' at position 1"),
        (
            lambda a: a.authorize_rooms(
                {f"r{n}": ["room:read"] for n in range(11)}, user=Member("u")
            ),
            "at most 10",
        ),
        (lambda a: a.identify_user(Member("u"), groups="eng"), "list of non-empty group ids"),
    ],
)
async def test_token_requests_liveblocks_would_refuse_are_refused_before_any_io(
    call: Callable[[LiveblocksAdapter], Awaitable[Any]], says: str
) -> None:
    wire = Wire(token_answer)
    with pytest.raises(ValueError, match=says):
        await call(wire.adapter())
    assert wire.requests == []


async def test_a_refused_token_request_is_mapped_and_a_missing_token_noticed() -> None:
    refused = Wire(lambda request: liveblocks_error(422, "UNPROCESSABLE_ENTITY", "Bad userId."))
    with pytest.raises(PublishRejected, match="Bad userId"):
        await refused.adapter().authorize_room("r", user=Member("u"))
    empty = Wire(lambda request: httpx.Response(200, json={}))
    with pytest.raises(PublishRejected, match="without a token"):
        await empty.adapter().identify_user(Member("u"))


async def test_aclose_twice_and_before_any_call_is_safe() -> None:
    adapter = Wire().adapter()
    await adapter.aclose()
    await adapter.publish([ev()])
    await adapter.aclose()
    await adapter.aclose()


async def test_a_retry_through_the_same_adapter_sends_only_what_did_not_go() -> None:
    """Liveblocks cannot drop a repeat (no message ids); the adapter remembers what it took."""
    first, second, third = ev(n=1), ev(n=2), ev("other", 3)
    down = {second.id}

    def answer(request: httpx.Request) -> httpx.Response:
        if Event.decode(request.content).id in down:
            return liveblocks_error(503, "SERVICE_UNAVAILABLE", "Down.")
        return httpx.Response(204)

    wire = Wire(answer)
    adapter = wire.adapter()
    with pytest.raises(VendorUnavailable):
        await adapter.publish([first, second, third])
    down.clear()
    result = await adapter.publish([first, second, third])
    assert result == PublishResult(published=1, duplicates=(first.id, third.id))
    sent = [Event.decode(request.content).id for request in wire.requests]
    assert sent.count(first.id) == 1 and sent.count(third.id) == 1 and sent.count(second.id) == 2
    retried = Event(id=first.id, channel=first.channel, type=TYPE, data={"n": 4})
    again = await adapter.publish([ev(n=4), retried])
    assert again.duplicates == (first.id,)
    other = Wire()  # another process remembers nothing: the repeat goes (browsers drop it)
    assert await other.adapter().publish([first]) == PublishResult(published=1)


def test_the_memory_of_sent_ids_is_bounded() -> None:
    from realtime_bridge.adapters.liveblocks import _Acknowledged

    memory = _Acknowledged(3)
    for event_id in ("a", "b", "c"):
        memory.add(event_id)
    memory.add("a")  # seen again: now the most recent
    memory.add("d")
    assert [event_id in memory for event_id in "abcd"] == [True, False, True, True]
