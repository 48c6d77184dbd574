"""The Pusher adapter, offline: every request goes to an ``httpx.MockTransport``.

What it sends is checked three ways: the exact JSON body, a signature
recomputed here from Pusher's documented rule, and the request the ``pusher``
SDK itself builds for the same call (captured through a custom backend, so no
network), which must be byte-identical in body, path and signed query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from realtime_bridge import (
    AuthenticationFailed,
    Bridge,
    Capability,
    ConfigurationError,
    Event,
    InvalidChannel,
    Member,
    Occupancy,
    PayloadTooLarge,
    PublishRejected,
    PublishResult,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from realtime_bridge.adapters import pusher_auth
from realtime_bridge.adapters.pusher import PusherAdapter
from realtime_bridge.settings import adapter_from_url
from realtime_bridge.webhooks import WebhookKind

# Pusher's own documented example credentials (rest-api.md).
APP_ID, KEY, SECRET = "3", "278d425bdf160c739803", "7ad3773142a6692b25b8"
NOW = 1353088179.0
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
URL = f"pusher://{KEY}:{SECRET}@api-eu.pusher.com/{APP_ID}"

Handler = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


class Recorder:
    """A mock Pusher: records every request, answers with ``handler``."""

    def __init__(self, handler: Handler = ok) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


def make(recorder: Recorder, url: str = URL, **options: Any) -> PusherAdapter:
    options.setdefault("clock", lambda: NOW)
    return PusherAdapter.from_url(url, transport=recorder.transport, **options)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def adapter(recorder: Recorder) -> AsyncIterator[PusherAdapter]:
    adapter = make(recorder)
    yield adapter
    await adapter.aclose()


def ev(channel: str = "orders.1", n: int = 0, **fields: Any) -> Event:
    fields.setdefault("data", {"n": n})
    return Event(channel=channel, type="order.updated", **fields)


def sized(total: int, channel: str = "orders.1") -> Event:
    """An event whose whole envelope (Pusher's ``data``) is exactly ``total`` bytes."""
    overhead = len(ev(channel, data={"p": ""}, id="fixed-id").encode())
    return ev(channel, data={"p": "x" * (total - overhead)}, id="fixed-id")


def query_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))


def assert_signed(request: httpx.Request) -> None:
    """Recompute Pusher's signature from its documented rule, independently of the adapter."""
    query = query_of(request)
    signature = query.pop("auth_signature")
    assert query["auth_key"] == KEY
    assert query["auth_timestamp"] == str(round(NOW))
    assert query["auth_version"] == "1.0"
    assert query["body_md5"] == hashlib.md5(request.content).hexdigest()
    canonical = "&".join(f"{k}={query[k]}" for k in sorted(query))
    string_to_sign = f"{request.method}\n{request.url.path}\n{canonical}"
    expected = hmac.new(SECRET.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert signature == expected
    resigned = pusher_auth.sign_query(
        request.method,
        request.url.path,
        {k: v for k, v in query.items() if not k.startswith(("auth_", "body_md5"))},
        request.content,
        key=KEY,
        secret=SECRET,
        timestamp=round(NOW),
    )
    assert resigned["auth_signature"] == signature


# -- configuration ----------------------------------------------------------------------


async def test_a_host_given_directly_is_used_over_https(recorder: Recorder) -> None:
    adapter = make(recorder)
    await adapter.ping()
    assert str(recorder.requests[0].url).startswith("https://api-eu.pusher.com/apps/3/channels?")
    assert recorder.requests[0].url.port is None  # 443, the default
    assert adapter.name == f"pusher://{KEY}:***@api-eu.pusher.com/3"
    await adapter.aclose()


async def test_the_cluster_names_the_host(recorder: Recorder) -> None:
    adapter = make(recorder, f"pusher://{KEY}:{SECRET}@/3?cluster=ap2")
    await adapter.ping()
    assert recorder.requests[0].url.host == "api-ap2.pusher.com"
    await adapter.aclose()


async def test_tls_false_and_a_port_for_a_local_server(recorder: Recorder) -> None:
    adapter = make(recorder, f"pusher://{KEY}:{SECRET}@127.0.0.1:6001/apps/3?tls=false")
    await adapter.ping()
    url = recorder.requests[0].url
    assert (url.scheme, url.host, url.port, url.path) == (
        "http",
        "127.0.0.1",
        6001,
        "/apps/3/channels",
    )
    assert adapter.name == f"pusher://{KEY}:***@127.0.0.1:6001/3?tls=false"
    plain = make(recorder, f"pusher://{KEY}:{SECRET}@localhost/3?tls=false")
    await plain.ping()
    assert recorder.requests[1].url.port is None  # 80, the default without TLS
    await adapter.aclose()
    await plain.aclose()


def test_the_registry_builds_it_from_a_url() -> None:
    adapter = adapter_from_url(URL + "?timeout=2.5&batch_size=4")
    assert isinstance(adapter, PusherAdapter)
    assert adapter.limits.max_events_per_batch == 4
    assert adapter.limits.max_payload_bytes == 10240


def test_capabilities_and_limits() -> None:
    adapter = PusherAdapter(app_id="3", key=KEY, secret=SECRET, cluster="eu")
    assert adapter.capabilities == {
        Capability.PUBLISH,
        Capability.BATCH,
        Capability.PRESENCE,
        Capability.OCCUPANCY,
        Capability.CLIENT_AUTH,
        Capability.WEBHOOKS,
    }
    assert not adapter.supports(Capability.HISTORY)
    assert not adapter.supports(Capability.IDEMPOTENT)
    assert adapter.limits.max_events_per_batch == 10
    assert adapter.limits.max_channels_per_publish == 100


@pytest.mark.parametrize(
    ("url", "names"),
    [
        (f"pusher://:{SECRET}@h.example/3", "app key"),
        (f"pusher://{KEY}@h.example/3", "app secret"),
        (f"pusher://{KEY}:{SECRET}@h.example", "app id"),
        (f"pusher://{KEY}:{SECRET}@h.example/", "app id"),
        (f"pusher://{KEY}:{SECRET}@h.example/app-3", "app id must be numeric"),
        (f"pusher://{KEY}:{SECRET}@/3", "missing the host"),
        (f"pusher://{KEY}:{SECRET}@api-us2.pusher.com/3?cluster=eu", "disagree"),
        (f"pusher://{KEY}:{SECRET}@/3?cluster=EU!", "cluster"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?batch_size=11", "batch_size"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?batch_size=0", "batch_size"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?tls=maybe", "tls"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?timeout=-1", "timeout"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?colour=red", "colour"),
        (f"pusher://{KEY}:{SECRET}@h.example:http/3", "port"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?encryption_master_key=c2hvcnQ=", "encryption"),
        (f"pusher://{KEY}:{SECRET}@h.example/3?encryption_master_key=!!", "encryption"),
    ],
)
def test_bad_urls_name_the_part_and_never_the_secret(url: str, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names) as caught:
        PusherAdapter.from_url(url)
    assert SECRET not in str(caught.value)
    assert "c2hvcnQ" not in str(caught.value)  # the master key is a secret too


def test_the_secret_and_master_key_never_show() -> None:
    adapter = PusherAdapter.from_url(f"{URL}?encryption_master_key={MASTER_KEY}")
    for text in (repr(adapter), adapter.name, str(adapter.limits)):
        assert SECRET not in text
        assert MASTER_KEY not in text
    with pytest.raises(ConfigurationError) as caught:
        PusherAdapter.from_url(f"{URL}?encryption_master_key={MASTER_KEY}&oops=1")
    assert MASTER_KEY not in str(caught.value)
    assert SECRET not in str(caught.value)


# -- publishing -------------------------------------------------------------------------


async def test_one_event_is_one_trigger_with_the_envelope_as_data(
    adapter: PusherAdapter, recorder: Recorder
) -> None:
    event = ev(n=1, seq=7)
    assert await adapter.publish([event]) == PublishResult(published=1)
    (request,) = recorder.requests
    assert (request.method, request.url.path) == ("POST", "/apps/3/events")
    assert request.headers["content-type"] == "application/json"
    expected = {"name": "order.updated", "channels": ["orders.1"], "data": event.encode().decode()}
    assert request.content == json.dumps(expected).encode()
    assert Event.decode(json.loads(request.content)["data"]) == event
    assert_signed(request)


async def test_a_batch_of_25_is_three_calls_of_10_10_5_in_order(
    adapter: PusherAdapter, recorder: Recorder
) -> None:
    events = [ev(f"room.{i % 3}", n=i) for i in range(25)]
    assert await adapter.publish(events) == PublishResult(published=25)
    assert [r.url.path for r in recorder.requests] == ["/apps/3/batch_events"] * 3
    batches = [body["batch"] for body in recorder.bodies()]
    assert [len(batch) for batch in batches] == [10, 10, 5]
    sent = [item for batch in batches for item in batch]
    assert [Event.decode(item["data"]).id for item in sent] == [e.id for e in events]
    assert [item["channel"] for item in sent] == [e.channel for e in events]
    assert {item["name"] for item in sent} == {"order.updated"}
    for request in recorder.requests:
        assert_signed(request)


async def test_a_failed_chunk_says_how_many_were_acknowledged() -> None:
    recorder = Recorder(lambda r: ok(r) if len(recorder.requests) == 1 else httpx.Response(503))
    adapter = make(recorder)
    with pytest.raises(VendorUnavailable) as caught:
        await adapter.publish([ev(n=i) for i in range(25)])
    assert len(recorder.requests) == 2  # the third chunk was never sent
    assert "10 of 25 events were acknowledged" in "".join(caught.value.__notes__)
    await adapter.aclose()


async def test_the_bridge_sends_pusher_sized_batches() -> None:
    recorder = Recorder()
    async with Bridge(make(recorder)) as bridge:
        receipt = await bridge.publish_many([ev(n=i) for i in range(25)])
    assert receipt.published == 25
    assert [len(body["batch"]) for body in recorder.bodies()] == [10, 10, 5]


async def test_an_empty_batch_sends_nothing(adapter: PusherAdapter, recorder: Recorder) -> None:
    assert await adapter.publish([]) == PublishResult(published=0)
    assert recorder.requests == []


async def test_10240_bytes_of_data_pass_and_10241_are_refused_before_any_request(
    adapter: PusherAdapter, recorder: Recorder
) -> None:
    at_limit, over = sized(10240), sized(10241)
    assert adapter.payload_size(at_limit) == 10240
    adapter.check(at_limit)
    with pytest.raises(PayloadTooLarge, match="10241 bytes") as caught:
        adapter.check(over)
    assert caught.value.event_id == "fixed-id"
    with pytest.raises(PayloadTooLarge):
        await adapter.publish([at_limit, over])
    assert recorder.requests == []
    await adapter.publish([at_limit])
    assert len(json.loads(recorder.requests[0].content)["data"].encode()) == 10240


def test_size_is_utf8_bytes_of_the_data_string(adapter: PusherAdapter) -> None:
    ascii_event = ev(data={"s": "e" * 100}, id="same")
    accented = ev(data={"s": "é" * 100}, id="same")
    assert adapter.payload_size(accented) == adapter.payload_size(ascii_event) + 100


async def test_the_bridge_refuses_an_oversized_event_before_any_request() -> None:
    recorder = Recorder()
    async with Bridge(make(recorder)) as bridge:
        with pytest.raises(PayloadTooLarge):
            await bridge.publish(sized(10241))
    assert recorder.requests == []


async def test_trigger_to_many_channels_excluding_a_socket(
    adapter: PusherAdapter, recorder: Recorder
) -> None:
    event = ev()
    result = await adapter.trigger(["orders.1", "orders.2"], event, socket_id="123.456")
    assert result == PublishResult(published=1)
    body = recorder.bodies()[0]
    assert body == {
        "name": "order.updated",
        "channels": ["orders.1", "orders.2"],
        "data": event.encode().decode(),
        "socket_id": "123.456",
    }
    assert_signed(recorder.requests[0])


@pytest.mark.parametrize(
    ("channels", "socket_id", "error"),
    [
        ([f"c.{i}" for i in range(101)], None, ValueError),
        ([], None, ValueError),
        (["orders.1"], "not-a-socket", ValueError),
        (["private-encrypted-a", "orders.1"], None, ValueError),
        (["bad channel"], None, InvalidChannel),
    ],
)
async def test_trigger_refuses_misuse_before_any_request(
    adapter: PusherAdapter,
    recorder: Recorder,
    channels: list[str],
    socket_id: str | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await adapter.trigger(channels, ev(), socket_id=socket_id)
    assert recorder.requests == []


async def test_trigger_to_100_channels_is_fine(adapter: PusherAdapter, recorder: Recorder) -> None:
    await adapter.trigger([f"c.{i}" for i in range(100)], ev())
    assert len(recorder.bodies()[0]["channels"]) == 100


async def test_an_encrypted_channel_without_a_master_key_is_refused_before_any_io(
    adapter: PusherAdapter, recorder: Recorder
) -> None:
    event = ev("private-encrypted-orders.1")
    with pytest.raises(ConfigurationError, match="encryption_master_key"):
        adapter.check(event)
    with pytest.raises(ConfigurationError):
        await adapter.publish([event])
    async with Bridge(make(recorder)) as bridge:
        with pytest.raises(ConfigurationError):
            await bridge.publish(event)
    assert recorder.requests == []


async def test_an_encrypted_channel_gets_data_only_its_subscribers_can_read(
    recorder: Recorder,
) -> None:
    import nacl.secret

    adapter = make(recorder, f"{URL}?encryption_master_key={MASTER_KEY}")
    event = ev("private-encrypted-orders.1", n=5)
    await adapter.publish([event])
    data = recorder.bodies()[0]["data"]
    assert adapter.payload_size(event) == len(data.encode())
    sealed = json.loads(data)
    channel_key = hashlib.sha256(event.channel.encode() + base64.b64decode(MASTER_KEY)).digest()
    plain = nacl.secret.SecretBox(channel_key).decrypt(
        base64.b64decode(sealed["ciphertext"]), base64.b64decode(sealed["nonce"])
    )
    assert Event.decode(plain) == event
    await adapter.aclose()


# -- the SDK as the reference ------------------------------------------------------------


class _CaptureBackend:
    """A ``pusher`` SDK backend that keeps each request instead of sending it."""

    def __init__(self, client: Any, **options: Any) -> None:
        self.requests: list[Any] = []

    def send_request(self, request: Any) -> Any:
        self.requests.append(request)
        return {}


def _sdk(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Any:
    pusher = pytest.importorskip("pusher")
    sdk_http = pytest.importorskip("pusher.http")
    monkeypatch.setattr(sdk_http, "time", SimpleNamespace(time=lambda: NOW))
    return pusher.Pusher(
        app_id=APP_ID, key=KEY, secret=SECRET, cluster="eu", backend=_CaptureBackend, **options
    )


def _same_request(ours: httpx.Request, theirs: Any) -> None:
    assert ours.method == theirs.method
    assert ours.url.path == theirs.path
    assert ours.content == theirs.body
    assert query_of(ours) == theirs.query_params
    assert ours.url.query.decode() == theirs.query_string
    assert str(ours.url).replace(":443", "") == theirs.url.replace(":443", "")


async def test_trigger_is_byte_identical_to_the_sdk(
    adapter: PusherAdapter, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = _sdk(monkeypatch)
    event = ev(data={"text": 'héllo "world" ✓', "n": [1, 2]}, seq=3)
    await adapter.trigger(["orders.1", "orders.2"], event, socket_id="1234.5678")
    sdk.trigger(["orders.1", "orders.2"], "order.updated", event.encode().decode(), "1234.5678")
    _same_request(recorder.requests[0], sdk._pusher_client.http.requests[0])


async def test_publish_of_one_event_is_byte_identical_to_the_sdk(
    adapter: PusherAdapter, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = _sdk(monkeypatch)
    event = ev(n=1)
    await adapter.publish([event])
    sdk.trigger("orders.1", "order.updated", event.encode().decode())
    _same_request(recorder.requests[0], sdk._pusher_client.http.requests[0])


async def test_a_batch_is_byte_identical_to_the_sdk(
    adapter: PusherAdapter, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = _sdk(monkeypatch)
    events = [ev(f"room.{i}", n=i) for i in range(3)]
    await adapter.publish(events)
    sdk.trigger_batch(
        [{"name": e.type, "channel": e.channel, "data": e.encode().decode()} for e in events]
    )
    _same_request(recorder.requests[0], sdk._pusher_client.http.requests[0])


async def test_reads_are_byte_identical_to_the_sdk(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder.handler = lambda r: httpx.Response(200, json={"users": [], "occupied": True})
    adapter = make(recorder)
    sdk = _sdk(monkeypatch)
    await adapter.presence("presence-room.1")
    await adapter.occupancy("presence-room.1")
    await adapter.occupancy("orders.1")
    await adapter.ping()
    sdk.users_info("presence-room.1")
    sdk.channel_info("presence-room.1", ["user_count"])
    sdk.channel_info("orders.1", ["subscription_count"])
    sdk.channels_info()
    for ours, theirs in zip(recorder.requests, sdk._pusher_client.http.requests, strict=True):
        _same_request(ours, theirs)
    await adapter.aclose()


async def test_encrypted_data_has_the_sdks_shape(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ciphertexts differ (random nonces), so compare shape and size, then decrypt both."""
    sdk = _sdk(monkeypatch, encryption_master_key_base64=MASTER_KEY)
    adapter = make(recorder, f"{URL}?encryption_master_key={MASTER_KEY}")
    event = ev("private-encrypted-orders.1")
    await adapter.publish([event])
    sdk.trigger(event.channel, event.type, event.encode().decode())
    ours = json.loads(recorder.requests[0].content)
    theirs = json.loads(sdk._pusher_client.http.requests[0].body)
    assert ours.keys() == theirs.keys()
    assert json.loads(ours["data"]).keys() == json.loads(theirs["data"]).keys()
    assert len(ours["data"]) == len(theirs["data"])
    await adapter.aclose()


# -- errors -----------------------------------------------------------------------------

SIGNATURE_ECHO = (
    "Invalid signature: you should have sent HmacSHA256Hex(string_to_sign, secret), "
    'but you sent "{signature}"'
)


def _answer(status: int, body: str = "", headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        text = body.format(signature=query_of(request)["auth_signature"])
        return httpx.Response(status, text=text, headers=headers or {})

    return handler


def _seconds_to_midnight_utc() -> float:
    return 86400 - NOW % 86400


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "words"),
    [
        (400, "Unknown event name", None, PublishRejected, "400: Unknown event name"),
        (401, SIGNATURE_ECHO, None, AuthenticationFailed, "401: Invalid signature"),
        (403, "Application disabled", None, AuthenticationFailed, "app is disabled"),
        (403, "Message quota exceeded", None, RateLimited, "quota resets at 00:00 UTC"),
        (404, "Not found", None, PublishRejected, "404"),
        (408, "", None, VendorUnavailable, "408"),
        (
            413,
            "The data content of this event exceeds the allowed maximum (10240 bytes)",
            None,
            PublishRejected,
            "413: The data content",
        ),
        (429, "Too many requests", {"Retry-After": "7"}, RateLimited, "retry after 7s"),
        (429, "Too many requests", None, RateLimited, "429"),
        (500, "Internal error", None, VendorUnavailable, "500: Internal error"),
        (503, "", None, VendorUnavailable, "503"),
    ],
)
async def test_each_status_maps_to_one_error(
    status: int,
    body: str,
    headers: dict[str, str] | None,
    error: type[RealtimeBridgeError],
    words: str,
) -> None:
    recorder = Recorder(_answer(status, body, headers))
    adapter = make(recorder)
    with pytest.raises(error, match=words) as caught:
        await adapter.publish([ev()])
    message = str(caught.value)
    assert message.startswith(adapter.name)
    assert "POST /apps/3/events" in message
    signature = query_of(recorder.requests[0])["auth_signature"]
    assert signature not in message
    assert SECRET not in message
    if error is RateLimited:
        assert isinstance(caught.value, RateLimited)
        expected = float(headers["Retry-After"]) if headers else None
        if status == 403:
            expected = _seconds_to_midnight_utc()
        assert caught.value.retry_after == expected
    await adapter.aclose()


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        ({"error": "The secret authentication failed", "code": 401}, AuthenticationFailed, "401"),
        (
            {"error": "The event data should be less than 100 KB.", "code": 413},
            PublishRejected,
            "413: The event data",
        ),
        (
            {"error": "Cannot batch-send more than 10 messages at once", "code": 400},
            PublishRejected,
            "400",
        ),
        ({"error": "Too many requests", "code": 429}, RateLimited, "429"),
    ],
)
async def test_soketis_errors_in_a_200_are_errors(
    answer: dict[str, Any], error: type[RealtimeBridgeError], words: str
) -> None:
    """soketi answers errors with a 200 status line and ``{"error", "code"}``."""
    adapter = make(Recorder(lambda r: httpx.Response(200, json=answer)))
    with pytest.raises(error, match=words):
        await adapter.publish([ev()])
    await adapter.aclose()


async def test_a_200_that_only_mentions_error_is_a_success() -> None:
    answer = {"channels": {"error": {"occupied": True}}}
    adapter = make(Recorder(lambda r: httpx.Response(200, json=answer)))
    await adapter.ping()
    await adapter.aclose()


async def test_a_retry_after_date_becomes_seconds() -> None:
    recorder = Recorder(_answer(429, "", {"Retry-After": "Fri, 16 Nov 2012 17:50:09 GMT"}))
    adapter = make(recorder)  # NOW is 17:49:39 that day
    with pytest.raises(RateLimited) as caught:
        await adapter.publish([ev()])
    assert caught.value.retry_after == 30.0
    await adapter.aclose()


async def test_a_long_vendor_message_is_clipped() -> None:
    adapter = make(Recorder(_answer(400, "x" * 5000)))
    with pytest.raises(PublishRejected) as caught:
        await adapter.publish([ev()])
    assert len(str(caught.value)) < 500
    await adapter.aclose()


@pytest.mark.parametrize(
    ("exception", "words"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "ConnectError"),
        (httpx.ReadTimeout("timed out"), "timed out after 5s"),
        (httpx.ConnectTimeout("timed out"), "timed out after 5s"),
        (httpx.RemoteProtocolError("peer closed connection"), "RemoteProtocolError"),
        (httpx.ConnectError("failed: /apps/3/events?auth_signature=deadbeef"), "=\\*\\*\\*"),
    ],
)
async def test_network_failures_are_vendor_unavailable(
    exception: httpx.HTTPError, words: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exception

    adapter = make(Recorder(fail))
    with pytest.raises(VendorUnavailable, match=words) as caught:
        await adapter.publish([ev()])
    assert caught.value.__cause__ is exception
    assert "deadbeef" not in str(caught.value)
    await adapter.aclose()


async def test_a_body_that_is_not_json_is_vendor_unavailable() -> None:
    adapter = make(Recorder(lambda r: httpx.Response(200, text="<html>proxy</html>")))
    with pytest.raises(VendorUnavailable, match="not JSON"):
        await adapter.presence("presence-room.1")
    await adapter.aclose()


# -- presence, occupancy, users ------------------------------------------------------------


async def test_presence_lists_member_ids(recorder: Recorder) -> None:
    recorder.handler = lambda r: httpx.Response(200, json={"users": [{"id": "2"}, {"id": 1}]})
    adapter = make(recorder)
    assert await adapter.presence("presence-room.1") == [Member("1"), Member("2")]
    (request,) = recorder.requests
    assert (request.method, request.url.path) == ("GET", "/apps/3/channels/presence-room.1/users")
    assert request.content == b""
    assert_signed(request)
    await adapter.aclose()


async def test_presence_on_another_kind_of_channel_is_refused_before_any_request(
    adapter: PusherAdapter, recorder: Recorder
) -> None:
    with pytest.raises(ValueError, match="presence- channels"):
        await adapter.presence("orders.1")
    with pytest.raises(InvalidChannel):
        await adapter.presence("presence-room/../../users")
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("channel", "answer", "info", "expected"),
    [
        ("presence-room.1", {"occupied": True, "user_count": 3}, "user_count", (None, 3)),
        ("presence-room.1", {"occupied": False}, "user_count", (0, 0)),
        ("orders.1", {"occupied": True, "subscription_count": 5}, "subscription_count", (5, 0)),
        ("orders.1", {"occupied": True}, "subscription_count", (None, 0)),
        ("orders.1", {"occupied": False}, "subscription_count", (0, 0)),
    ],
)
async def test_occupancy(
    recorder: Recorder,
    channel: str,
    answer: dict[str, Any],
    info: str,
    expected: tuple[int | None, int | None],
) -> None:
    recorder.handler = lambda r: httpx.Response(200, json=answer)
    adapter = make(recorder)
    subscribers, members = expected
    assert await adapter.occupancy(channel) == Occupancy(channel, subscribers, members)
    (request,) = recorder.requests
    assert request.url.path == f"/apps/3/channels/{channel}"
    assert query_of(request)["info"] == info
    assert_signed(request)
    await adapter.aclose()


async def test_the_bridge_reads_presence_and_occupancy() -> None:
    recorder = Recorder(
        lambda r: httpx.Response(200, json={"users": [{"id": "7"}], "user_count": 1})
    )
    async with Bridge(make(recorder)) as bridge:
        assert await bridge.presence("presence-room.1") == [Member("7")]
        assert (await bridge.occupancy("presence-room.1")).members == 1


async def test_terminate_user_connections(adapter: PusherAdapter, recorder: Recorder) -> None:
    await adapter.terminate_user_connections("user-1@example.com")
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.path == "/apps/3/users/user-1@example.com/terminate_connections"
    assert request.content == b"{}"
    assert_signed(request)
    with pytest.raises(ValueError):
        await adapter.terminate_user_connections("../3/events")
    assert len(recorder.requests) == 1


async def test_ping_maps_errors(recorder: Recorder) -> None:
    recorder.handler = _answer(401, "Auth key not found")
    adapter = make(recorder)
    with pytest.raises(AuthenticationFailed, match="GET /apps/3/channels answered 401"):
        await adapter.ping()
    await adapter.aclose()


# -- lifecycle --------------------------------------------------------------------------


async def test_aclose_is_safe_twice_and_before_use(recorder: Recorder) -> None:
    unused = make(recorder)
    await unused.aclose()
    await unused.aclose()
    adapter = make(recorder)
    async with adapter:
        await adapter.ping()
        first = adapter._http
        await adapter.ping()
        assert adapter._http is first  # one pooled client
    assert adapter._http is None
    await adapter.aclose()


async def test_the_clock_signs_the_timestamp(recorder: Recorder) -> None:
    adapter = make(recorder, clock=lambda: 1700000000.6)
    await adapter.ping()
    assert query_of(recorder.requests[0])["auth_timestamp"] == "1700000001"  # as the SDK rounds
    await adapter.aclose()


# -- browsers and webhooks ------------------------------------------------------------------


def test_authorize_delegates_to_the_signing_functions() -> None:
    adapter = PusherAdapter.from_url(f"{URL}?encryption_master_key={MASTER_KEY}")
    user = Member("42", {"name": "Ada"})
    assert adapter.authorize("private-orders.1", socket_id="1234.1234") == (
        pusher_auth.authorize_channel("private-orders.1", "1234.1234", key=KEY, secret=SECRET)
    )
    assert adapter.authorize("presence-room.1", user=user, socket_id="1.2") == (
        pusher_auth.authorize_channel("presence-room.1", "1.2", key=KEY, secret=SECRET, user=user)
    )
    encrypted = adapter.authorize("private-encrypted-a", socket_id="1.2")
    assert "shared_secret" in encrypted
    assert adapter.authorize(None, user=user, socket_id="1.2") == (
        pusher_auth.authenticate_user("1.2", user, key=KEY, secret=SECRET)
    )
    with pytest.raises(ValueError, match="socket_id"):
        adapter.authorize("private-orders.1")
    with pytest.raises(ValueError, match="user"):
        adapter.authorize(None, socket_id="1.2")


def test_verify_webhook_uses_the_adapters_clock() -> None:
    adapter = PusherAdapter.from_url(URL, clock=lambda: NOW)
    body = json.dumps(
        {"time_ms": int(NOW * 1000), "events": [{"name": "channel_occupied", "channel": "a"}]}
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Pusher-Key": KEY, "X-Pusher-Signature": signature}
    (event,) = adapter.verify_webhook(headers, body)
    assert (event.kind, event.channel, event.vendor) == (
        WebhookKind.CHANNEL_OCCUPIED,
        "a",
        "pusher",
    )
