"""The Ably adapter's requests and error mapping, against ``httpx.MockTransport``.

What Ably does with the requests is checked against the emulator (held to
Ably's own SDK) in ``test_ably_emulated.py``; here each test pins one thing the
adapter itself decides: the URL, the wire form of a message and its stable id,
how batches are split, which host is tried next, when a token is renewed, and
which library error each Ably error becomes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from realtime_bridge import (
    AuthenticationFailed,
    Bridge,
    ConfigurationError,
    CursorNotFound,
    Event,
    Member,
    PayloadTooLarge,
    PublishRejected,
    RateLimited,
    VendorUnavailable,
)
from realtime_bridge.adapters.ably import AblyAdapter, message_id

KEY = "app.key"
SECRET = "s3cret-never-shown"
Handler = Callable[[httpx.Request], httpx.Response]


def ev(channel: str = "orders.1", n: int = 0, **data: Any) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n, **data})


def adapter(handler: Handler, url: str = f"ably://{KEY}:{SECRET}@", **options: Any) -> AblyAdapter:
    return AblyAdapter.from_url(url, transport=httpx.MockTransport(handler), **options)


def ably_error(status: int, code: int, message: str = "refused", **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "statusCode": status, "message": message}}
    return httpx.Response(status, json=body, headers=headers)


class Recorder:
    """A transport handler answering from a list, recording every request."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(201, json={})
        return answer(request) if callable(answer) else answer


# -- the URL ------------------------------------------------------------------------


def test_url_defaults_to_ably_main_endpoint_over_tls_with_basic_auth() -> None:
    recorder = Recorder()
    ably = adapter(recorder)
    assert ably.name == f"ably://{KEY}:***@main.realtime.ably.net"
    assert SECRET not in repr(ably)


async def test_basic_auth_carries_the_key_over_tls() -> None:
    recorder = Recorder()
    async with adapter(recorder) as ably:
        await ably.publish([ev()])
    request = recorder.requests[0]
    assert request.url.scheme == "https"
    assert request.url.host == "main.realtime.ably.net"
    expected = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["x-ably-version"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ably://@", "API key"),
        ("ably://app.key@", "API key"),
        (f"ably://{KEY}:{SECRET}@127.0.0.1:8080?tls=false&auth=basic", "40103"),
        (f"ably://{KEY}:{SECRET}@?colour=blue", "colour"),
        (f"ably://{KEY}:{SECRET}@?max_message_size=0", "max_message_size"),
        (f"ably://{KEY}:{SECRET}@?client_auth=cookie", "client_auth"),
    ],
)
def test_bad_urls_are_named_without_the_secret(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AblyAdapter.from_url(url)
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value)


def test_bridge_builds_it_from_its_scheme() -> None:
    bridge = Bridge.from_url(f"ably://{KEY}:{SECRET}@127.0.0.1:8080?tls=false")
    assert isinstance(bridge.primary, AblyAdapter)
    assert bridge.primary.name == f"ably://{KEY}:***@127.0.0.1:8080?tls=false"


# -- the wire form -------------------------------------------------------------------


async def test_one_event_is_one_message_with_a_stable_id() -> None:
    recorder = Recorder()
    event = ev(n=1)
    async with adapter(recorder) as ably:
        await ably.publish([event])
        await ably.publish([event])  # a retry: the same id, for Ably to drop
    first, second = (json.loads(r.content) for r in recorder.requests)
    assert recorder.requests[0].url.path == "/channels/orders.1/messages"
    assert first == second
    assert first == {
        "id": f"{event.id}:0",
        "name": "order.updated",
        "data": event.encode().decode(),
        "encoding": "json",
    }
    assert message_id(event) == f"{event.id}:0"


async def test_a_batch_is_one_request_of_one_spec_per_event() -> None:
    recorder = Recorder(httpx.Response(200, json=[]))
    events = [ev("orders.1", 1), ev("orders.2", 2), ev("orders.1", 3)]
    async with adapter(recorder) as ably:
        await ably.publish(events)
    [request] = recorder.requests
    assert request.url.path == "/messages"
    specs = json.loads(request.content)
    assert [spec["channels"] for spec in specs] == ["orders.1", "orders.2", "orders.1"]
    assert [spec["messages"]["id"] for spec in specs] == [message_id(e) for e in events]


async def test_batches_stay_under_two_mebibytes_per_request() -> None:
    recorder = Recorder()
    big = "x" * 60_000
    events = [ev(n=i, blob=big) for i in range(100)]  # about 6 MB in all
    async with adapter(recorder) as ably:
        await ably.publish(events)
    sizes = [len(request.content) for request in recorder.requests]
    assert len(sizes) >= 3
    assert all(size < 2 * 1024 * 1024 for size in sizes)
    assert [message_id_of(body) for r in recorder.requests for body in bodies(r)] == [
        message_id(e) for e in events
    ]  # all of them, in order


def bodies(request: httpx.Request) -> list[Any]:
    """The messages of one request: a batch's specs, or one channel's message."""
    body = json.loads(request.content)
    return body if isinstance(body, list) else [body]


def message_id_of(body: dict[str, Any]) -> str:
    return str(body["messages"]["id"] if "messages" in body else body["id"])


def test_size_is_name_plus_data_and_the_limit_is_configurable() -> None:
    ably = adapter(Recorder(), url=f"ably://{KEY}:{SECRET}@?max_message_size=1000")
    small = ev(n=1)
    assert ably.payload_size(small) == len(b"order.updated") + len(small.encode())
    ably.check(small)
    with pytest.raises(PayloadTooLarge) as caught:
        ably.check(ev(blob="y" * 1000))
    assert "1000" in str(caught.value)


# -- hosts, tokens, errors -----------------------------------------------------------


async def test_a_server_error_moves_on_to_a_fallback_host() -> None:
    recorder = Recorder(ably_error(503, 50300), httpx.Response(201, json={}))
    async with adapter(recorder) as ably:
        await ably.publish([ev()])
    hosts = [request.url.host for request in recorder.requests]
    assert hosts[0] == "main.realtime.ably.net"
    assert hosts[1].endswith(".fallback.ably-realtime.com")


async def test_every_host_down_is_vendor_unavailable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    recorder = Recorder(*[down] * 6)
    async with adapter(recorder) as ably:
        with pytest.raises(VendorUnavailable):
            await ably.publish([ev()])
    assert len(recorder.requests) == 6  # the primary and five fallbacks


async def test_an_explicit_host_has_no_fallbacks() -> None:
    recorder = Recorder(ably_error(503, 50300))
    url = f"ably://{KEY}:{SECRET}@ably.internal.example:8443"
    async with adapter(recorder, url=url) as ably:
        with pytest.raises(VendorUnavailable):
            await ably.publish([ev()])
    assert [r.url.host for r in recorder.requests] == ["ably.internal.example"]


def token(value: str, expires_ms: float = 4e12) -> httpx.Response:
    return httpx.Response(200, json={"token": value, "expires": expires_ms, "keyName": KEY})


async def test_without_tls_a_signed_token_request_buys_a_bearer_token() -> None:
    recorder = Recorder(token("t-1"), httpx.Response(201, json={}))
    url = f"ably://{KEY}:{SECRET}@127.0.0.1:8080?tls=false"
    async with adapter(recorder, url=url) as ably:
        await ably.publish([ev()])
    token_request, publish = recorder.requests
    assert token_request.url.path == f"/keys/{KEY}/requestToken"
    assert "authorization" not in token_request.headers
    signed = json.loads(token_request.content)
    assert (
        signed["keyName"] == KEY and signed["mac"] and SECRET not in token_request.content.decode()
    )
    assert publish.headers["authorization"] == "Bearer " + base64.b64encode(b"t-1").decode()


async def test_an_expired_token_is_renewed_once() -> None:
    recorder = Recorder(
        token("t-1"), ably_error(401, 40142, "token expired"), token("t-2"), httpx.Response(201)
    )
    url = f"ably://{KEY}:{SECRET}@127.0.0.1:8080?tls=false"
    async with adapter(recorder, url=url) as ably:
        await ably.publish([ev()])
    assert (
        recorder.requests[-1].headers["authorization"].endswith(base64.b64encode(b"t-2").decode())
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (ably_error(401, 40101, "invalid credentials"), AuthenticationFailed),
        (ably_error(401, 40160, "capability denied"), AuthenticationFailed),
        (ably_error(400, 40010, "invalid channel name"), PublishRejected),
        (ably_error(400, 40009, "message too large"), PayloadTooLarge),
        (ably_error(429, 42910, "rate limit", **{"retry-after": "3"}), RateLimited),
        (ably_error(400, 40112, "account limit"), RateLimited),
    ],
)
async def test_ably_errors_map_to_the_library_errors(
    answer: httpx.Response, error: type[Exception]
) -> None:
    event = ev()
    async with adapter(Recorder(answer)) as ably:
        with pytest.raises(error) as caught:
            await ably.publish([event])
    text = str(caught.value)
    assert SECRET not in text
    assert "Ably error" in text or "bytes" in text
    if isinstance(caught.value, RateLimited) and answer.status_code == 429:
        assert caught.value.retry_after == 3.0
    if error in (PublishRejected, PayloadTooLarge):
        assert getattr(caught.value, "event_id", None) == event.id  # the relay isolates it


async def test_a_partly_refused_batch_names_the_refused_event() -> None:
    events = [ev("orders.1", 1), ev("orders.2", 2), ev("orders.3", 3)]
    body = {
        "error": {"code": 40020, "statusCode": 400, "message": "Batched response includes errors"},
        "batchResponse": [
            {"channel": "orders.1", "messageId": message_id(events[0])},
            {"channel": "orders.2", "error": {"code": 40010, "statusCode": 400, "message": "no"}},
            {"channel": "orders.3", "messageId": message_id(events[2])},
        ],
    }
    async with adapter(Recorder(httpx.Response(400, json=body))) as ably:
        with pytest.raises(PublishRejected) as caught:
            await ably.publish(events)
    assert caught.value.event_id == events[1].id
    assert "40010" in str(caught.value)


async def test_a_channel_the_key_may_not_use_in_a_batch_is_authentication_failed() -> None:
    """As for the same event alone: a setup problem the relay retries, naming the event so
    the relay holds only its channel."""
    events = [ev("orders.1", 1), ev("audit.1", 2)]
    body = {
        "error": {"code": 40020, "statusCode": 400, "message": "partial"},
        "batchResponse": [
            {"channel": "orders.1", "messageId": message_id(events[0])},
            {"channel": "audit.1", "error": {"code": 40160, "statusCode": 401, "message": "no"}},
        ],
    }
    async with adapter(Recorder(httpx.Response(400, json=body))) as ably:
        with pytest.raises(AuthenticationFailed) as caught:
            await ably.publish(events)
    assert caught.value.event_id == events[1].id


async def test_a_transient_refusal_in_a_batch_is_transient() -> None:
    events = [ev("orders.1", 1), ev("orders.2", 2)]
    body = {
        "error": {"code": 40020, "statusCode": 400, "message": "partial"},
        "batchResponse": [
            {"channel": "orders.1", "messageId": message_id(events[0])},
            {"channel": "orders.2", "error": {"code": 50000, "statusCode": 500, "message": "x"}},
        ],
    }
    async with adapter(Recorder(httpx.Response(400, json=body))) as ably:
        with pytest.raises(VendorUnavailable):
            await ably.publish(events)


# -- reading -------------------------------------------------------------------------


def history_answer(*events: Event, next_link: str | None = None) -> httpx.Response:
    messages = [
        {"id": message_id(e), "name": e.type, "data": e.encode().decode(), "encoding": "json"}
        for e in events
    ]
    headers = {"link": f'<{next_link}>; rel="next"'} if next_link else {}
    return httpx.Response(200, json=messages, headers=headers)


async def test_history_follows_link_pages_and_returns_oldest_first() -> None:
    events = [ev(n=i) for i in range(5)]
    newest_first = events[::-1]
    recorder = Recorder(
        history_answer(*newest_first[:2], next_link="./messages?page=2"),
        history_answer(*newest_first[2:]),
    )
    async with adapter(recorder) as ably:
        page = await ably.history("orders.1", limit=10)
    assert [e.id for e in page] == [e.id for e in events]
    assert not page.has_more
    assert recorder.requests[1].url.path == "/channels/orders.1/messages"
    assert recorder.requests[1].url.params["page"] == "2"


async def test_history_cursors_are_event_ids() -> None:
    events = [ev(n=i) for i in range(6)]
    newest_first = events[::-1]
    async with adapter(Recorder(history_answer(*newest_first))) as ably:
        before = await ably.history("orders.1", limit=2, before=events[3].id)
    assert [e.id for e in before] == [events[1].id, events[2].id]
    assert before.has_more
    async with adapter(Recorder(history_answer(*newest_first))) as ably:
        after = await ably.history("orders.1", limit=2, after=events[1].id)
    assert [e.id for e in after] == [events[2].id, events[3].id]
    assert after.has_more
    async with adapter(Recorder(history_answer(*newest_first))) as ably:
        with pytest.raises(CursorNotFound):
            await ably.history("orders.1", before="not-there")


async def test_presence_and_occupancy() -> None:
    members = [
        {"clientId": "u-1", "data": json.dumps({"name": "Ada"}), "encoding": "json"},
        {"clientId": "u-2", "data": None},
    ]
    status = {
        "channelId": "room.1",
        "status": {
            "isActive": True,
            "occupancy": {"metrics": {"subscribers": 3, "presenceMembers": 2}},
        },
    }
    recorder = Recorder(httpx.Response(200, json=members), httpx.Response(200, json=status))
    async with adapter(recorder) as ably:
        assert await ably.presence("room.1") == [Member("u-1", {"name": "Ada"}), Member("u-2")]
        occupancy = await ably.occupancy("room.1")
    assert (occupancy.subscribers, occupancy.members) == (3, 2)
    assert [r.url.path for r in recorder.requests] == [
        "/channels/room.1/presence",
        "/channels/room.1",
    ]


def test_authorize_gives_a_signed_token_request_limited_to_the_channel() -> None:
    ably = adapter(Recorder())
    body = ably.authorize("room.1", user=Member("u-1"))
    assert body["keyName"] == KEY and body["clientId"] == "u-1" and body["mac"]
    assert json.loads(body["capability"]) == {"room.1": ["history", "presence", "subscribe"]}
    assert SECRET not in json.dumps(body)
