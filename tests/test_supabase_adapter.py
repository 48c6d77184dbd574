"""The Supabase adapter, offline: REST requests go to an ``httpx.MockTransport``.

Presence and the private-delivery probe talk to ``FakeRealtime`` below, a few
lines of Realtime's Phoenix protocol on a loopback WebSocket (join replies,
``presence_state``, ``presence_diff``, broadcasts), so the adapter's use of the
``realtime`` SDK is exercised for real. The Supabase emulator in
``realtime_bridge.testing`` is the fuller check of the same paths.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from realtime_bridge import (
    AuthenticationFailed,
    Bridge,
    Capability,
    CapabilityNotSupported,
    ConfigurationError,
    Event,
    InvalidChannel,
    Member,
    Occupancy,
    PayloadTooLarge,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from realtime_bridge.adapters import supabase_auth
from realtime_bridge.adapters.supabase import SupabaseAdapter
from realtime_bridge.settings import adapter_from_url, redact_url

JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
NOW = float(int(time.time()))  # real time: PyJWT checks exp against the clock
# A service_role key as Supabase makes them: a JWT signed with the project's secret.
KEY = supabase_auth.encode_hs256(
    {"iss": "supabase-demo", "role": "service_role", "exp": 1983812996}, JWT_SECRET
)
SB_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
URL = f"supabase://{KEY}@abcdefghijklmnop.supabase.co"
LOCAL = f"supabase://{KEY}@127.0.0.1:54321?tls=false"

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def accepted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202)


class Recorder:
    """A mock Supabase REST API: records every request, answers with ``handler``."""

    def __init__(self, handler: Handler = accepted) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.handler(request)
        return answer if isinstance(answer, httpx.Response) else await answer

    def messages(self) -> list[list[dict[str, Any]]]:
        return [json.loads(request.content)["messages"] for request in self.requests]


def make(recorder: Recorder, url: str = URL, **options: Any) -> SupabaseAdapter:
    options.setdefault("clock", lambda: NOW)
    return SupabaseAdapter.from_url(url, transport=recorder.transport, **options)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def adapter(recorder: Recorder) -> AsyncIterator[SupabaseAdapter]:
    adapter = make(recorder, URL + f"?jwt_secret={JWT_SECRET}")
    yield adapter
    await adapter.aclose()


def ev(channel: str = "orders.1", n: int = 0, **fields: Any) -> Event:
    fields.setdefault("data", {"n": n})
    return Event(channel=channel, type="order.updated", **fields)


def texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), *getattr(exc, "__notes__", [])]


# -- configuration ----------------------------------------------------------------------


async def test_a_cloud_project_is_reached_over_https(adapter: SupabaseAdapter) -> None:
    await adapter.publish([ev()])
    assert str(adapter._client().base_url) == "https://abcdefghijklmnop.supabase.co"
    assert adapter.name == "supabase://***@abcdefghijklmnop.supabase.co"
    assert adapter.name == redact_url(URL)
    assert KEY not in repr(adapter) and JWT_SECRET not in repr(adapter)


async def test_a_self_hosted_base_url_with_port_path_and_tls_false(recorder: Recorder) -> None:
    adapter = make(recorder, f"supabase://{KEY}@supabase.internal:8000/base/?tls=false")
    await adapter.publish([ev()])
    url = recorder.requests[0].url
    assert (url.scheme, url.host, url.port, url.path) == (
        "http",
        "supabase.internal",
        8000,
        "/base/realtime/v1/api/broadcast",
    )
    assert adapter.name == "supabase://***@supabase.internal:8000/base?tls=false"
    local = make(recorder, LOCAL)
    assert local.name == "supabase://***@127.0.0.1:54321?tls=false"
    await adapter.aclose()
    await local.aclose()


def test_the_registry_builds_it_with_its_options() -> None:
    adapter = adapter_from_url(
        URL + f"?max_payload_kb=3000&messages_per_second=500&timeout=2.5&jwt_secret={JWT_SECRET}"
    )
    assert isinstance(adapter, SupabaseAdapter)
    assert adapter.limits.max_payload_bytes == 3_000_000
    assert adapter.limits.max_events_per_batch == 500
    assert adapter._timeout == 2.5
    assert KEY not in repr(adapter) and JWT_SECRET not in repr(adapter)


def test_capabilities_and_default_limits() -> None:
    adapter = SupabaseAdapter(key=KEY, host="p.supabase.co", jwt_secret=JWT_SECRET)
    assert adapter.capabilities == {
        Capability.PUBLISH,
        Capability.BATCH,
        Capability.PRESENCE,
        Capability.OCCUPANCY,
        Capability.CLIENT_AUTH,
    }
    # Without the project's JWT secret, browsers cannot be authorised: not declared.
    assert Capability.CLIENT_AUTH not in SupabaseAdapter(key=KEY, host="p.supabase.co").capabilities
    assert adapter.limits.max_payload_bytes == 256_000
    assert adapter.limits.max_events_per_batch == 100
    assert adapter.limits.max_channels_per_publish == 1


async def test_history_is_not_declared_so_the_bridge_refuses_it() -> None:
    async with Bridge.from_url(URL) as bridge:
        with pytest.raises(CapabilityNotSupported):
            await bridge.history("orders.1")
        with pytest.raises(CapabilityNotSupported):
            bridge.verify_webhook({}, b"{}")


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("supabase://abc.supabase.co", "missing the API key"),
        (f"supabase://{KEY}:{KEY}@abc.supabase.co", "whole user part"),
        (f"supabase://{KEY}@", "missing the host"),
        (f"supabase://{KEY}@abc.supabase.co:port", "port is not a number"),
        (f"{URL}?max_payload_kb=0", "max_payload_kb"),
        (f"{URL}?messages_per_second=many", "messages_per_second"),
        (f"{URL}?timeout=-1", "timeout"),
        (f"{URL}?tls=maybe", "tls"),
        (f"{URL}?all_private=perhaps", "all_private"),
        (f"{URL}?jwt_secret=short", "jwt_secret"),
        (f"{URL}?jwt_secert={JWT_SECRET}", "unknown option"),
    ],
)
def test_configuration_errors_name_the_field_and_hide_the_secrets(url: str, names: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        adapter_from_url(url)
    assert names in str(caught.value)
    assert all(KEY not in text and JWT_SECRET not in text for text in texts(caught.value))
    assert "=short" not in str(caught.value)  # a secret option is masked, even a wrong one


# -- what is sent ------------------------------------------------------------------------


async def test_one_event_is_one_exact_broadcast_request(
    adapter: SupabaseAdapter, recorder: Recorder
) -> None:
    event = ev("orders.1", 7, seq=3)
    result = await adapter.publish([event])
    assert result.published == 1
    [request] = recorder.requests
    assert (request.method, request.url.path) == ("POST", "/realtime/v1/api/broadcast")
    assert request.headers["apikey"] == KEY
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-client-info"].startswith("realtime-bridge/")
    assert json.loads(request.content) == {
        "messages": [
            {
                "topic": "orders.1",
                "event": "order.updated",
                "payload": json.loads(event.encode()),
                "private": False,
                "id": event.id,
            }
        ]
    }
    payload = json.loads(request.content)["messages"][0]["payload"]
    assert list(payload) == ["v", "id", "type", "channel", "data", "seq", "ts"]
    assert adapter.payload_size(event) == len(json.dumps(payload, separators=(",", ":")))


async def test_private_and_presence_channels_are_sent_private(
    adapter: SupabaseAdapter, recorder: Recorder
) -> None:
    await adapter.publish([ev("orders.1"), ev("private-orders.1"), ev("presence-room.1")])
    assert [m["private"] for m in recorder.messages()[0]] == [False, True, True]
    everything = make(recorder, URL + "?all_private=true")
    await everything.publish([ev("orders.1")])
    assert recorder.messages()[1][0]["private"] is True
    await everything.aclose()


async def test_the_id_is_sent_only_when_it_is_a_uuid(
    adapter: SupabaseAdapter, recorder: Recorder
) -> None:
    await adapter.publish([ev(id="order-42-v3"), ev(id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")])
    first, second = recorder.messages()[0]
    assert "id" not in first and first["payload"]["id"] == "order-42-v3"
    assert second["id"] == "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


async def test_an_sb_secret_key_goes_in_apikey_only(recorder: Recorder) -> None:
    adapter = make(recorder, f"supabase://{SB_KEY}@abc.supabase.co")
    await adapter.publish([ev()])
    assert recorder.requests[0].headers["apikey"] == SB_KEY
    assert "authorization" not in recorder.requests[0].headers
    await adapter.aclose()


async def test_batches_are_split_at_messages_per_second(recorder: Recorder) -> None:
    adapter = make(recorder, URL + "?messages_per_second=3")
    events = [ev(n=n) for n in range(7)]
    result = await adapter.publish(events)
    assert result.published == 7
    sizes = [len(batch) for batch in recorder.messages()]
    assert sizes == [3, 3, 1]
    sent = [m["payload"]["data"]["n"] for batch in recorder.messages() for m in batch]
    assert sent == list(range(7))
    async with Bridge(adapter) as bridge:
        await bridge.publish_many(events)
    assert [len(batch) for batch in recorder.messages()[3:]] == [3, 3, 1]


async def test_too_large_is_refused_before_any_request(recorder: Recorder) -> None:
    adapter = make(recorder, URL + "?max_payload_kb=1")
    fits = ev(data={"p": ""}, id="fixed")
    exact = ev(data={"p": "x" * (1000 - len(fits.encode()))}, id="fixed")
    assert adapter.payload_size(exact) == 1000
    await adapter.publish([exact])
    over = ev(data={"p": "x" * (1001 - len(fits.encode()))}, id="big-one")
    with pytest.raises(PayloadTooLarge) as caught:
        await adapter.publish([ev(), over])
    assert caught.value.event_id == "big-one" and caught.value.limit == 1000
    assert len(recorder.requests) == 1  # only the one that fit
    await adapter.aclose()


# -- what comes back ----------------------------------------------------------------------


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"message": "Unauthorized"}, AuthenticationFailed),
        (403, {"message": "Tenant is suspended"}, VendorUnavailable),
        (403, {"message": "Forbidden"}, AuthenticationFailed),
        (404, {"message": "Not Found"}, ConfigurationError),
        (408, None, VendorUnavailable),
        (500, {"message": "Internal Server Error"}, VendorUnavailable),
        (503, None, VendorUnavailable),
        (429, {"message": "You have exceeded your rate limit"}, RateLimited),
        (400, {"message": "bad request"}, PublishRejected),
    ],
)
async def test_each_status_is_mapped(
    status: int, body: Any, error: type[RealtimeBridgeError]
) -> None:
    recorder = Recorder(answer(status, body))
    adapter = make(recorder)
    with pytest.raises(error) as caught:
        await adapter.publish([ev(), ev()])
    assert type(caught.value) is error
    assert f"answered {status}" in str(caught.value)
    await adapter.aclose()


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-rate-rolling": "150", "x-rate-limit": "100", "x-rate-limit-remaining": "0"}, 20.0),
        ({"x-rate-rolling": "100", "x-rate-limit": "100"}, 1.0),
        ({"x-rate-rolling": "100000", "x-rate-limit": "100"}, 60.0),
        ({"retry-after": "7", "x-rate-rolling": "150", "x-rate-limit": "100"}, 7.0),
        ({"x-rate-rolling": "50", "x-rate-limit": "100"}, None),
        ({"x-rate-rolling": "nan", "x-rate-limit": "100"}, None),
        ({}, None),
    ],
)
async def test_429_waits_as_the_rate_headers_say(headers: dict[str, str], wait: float) -> None:
    adapter = make(Recorder(answer(429, {"message": "Too many requests"}, headers)))
    with pytest.raises(RateLimited) as caught:
        await adapter.publish([ev()])
    assert caught.value.retry_after == wait
    await adapter.aclose()


async def test_a_batch_over_the_plans_quota_is_rejected_naming_the_option() -> None:
    refusal = {"message": "Too many messages to broadcast, please reduce the batch size"}
    adapter = make(Recorder(answer(429, refusal)), URL + "?messages_per_second=500")
    with pytest.raises(PublishRejected) as caught:
        await adapter.publish([ev(), ev()])
    assert "messages_per_second" in str(caught.value) and caught.value.event_id is None
    await adapter.aclose()


async def test_422_for_one_event_names_it() -> None:
    too_big = {"errors": {"messages": [{"payload": ["Payload size exceeds tenant limit"]}]}}
    adapter = make(Recorder(answer(422, too_big)))
    event = ev(id="too-big")
    with pytest.raises(PayloadTooLarge) as caught:
        await adapter.publish([event])
    assert caught.value.event_id == "too-big"
    assert "Payload size exceeds tenant limit" in str(caught.value)
    await adapter.aclose()
    other = make(Recorder(answer(422, {"errors": {"messages": [{"event": ["is invalid"]}]}})))
    with pytest.raises(PublishRejected) as rejected:
        await other.publish([event])
    assert type(rejected.value) is PublishRejected and rejected.value.event_id == "too-big"
    await other.aclose()


async def test_422_in_a_batch_names_the_event_supabase_pointed_at() -> None:
    errors = {"errors": {"messages": [{}, {"payload": ["Payload size exceeds tenant limit"]}, {}]}}
    adapter = make(Recorder(answer(422, errors)))
    events = [ev(id="a"), ev(id="b"), ev(id="c")]
    with pytest.raises(PayloadTooLarge) as caught:
        await adapter.publish(events)
    assert caught.value.event_id == "b"
    await adapter.aclose()
    unclear = make(Recorder(answer(422, {"message": "invalid"})))
    with pytest.raises(PublishRejected) as rejected:
        await unclear.publish(events)
    assert rejected.value.event_id is None  # the relay sends them one by one
    await unclear.aclose()


async def test_413_for_one_event_is_payload_too_large() -> None:
    adapter = make(Recorder(answer(413, None)))
    with pytest.raises(PayloadTooLarge):
        await adapter.publish([ev(id="e1")])
    await adapter.aclose()


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")],
)
async def test_network_errors_are_vendor_unavailable(failure: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    adapter = make(Recorder(handler))
    with pytest.raises(VendorUnavailable):
        await adapter.publish([ev()])
    await adapter.aclose()


async def test_the_key_and_secret_never_appear_in_errors() -> None:
    echo = {"message": f"bad token {KEY} for secret {JWT_SECRET}"}
    for status in (401, 403, 422, 429, 500):
        adapter = make(Recorder(answer(status, echo)), URL + f"?jwt_secret={JWT_SECRET}")
        with pytest.raises(RealtimeBridgeError) as caught:
            await adapter.publish([ev()])
        assert all(KEY not in t and JWT_SECRET not in t for t in texts(caught.value)), status
        await adapter.aclose()


async def test_a_failure_after_a_sent_chunk_says_how_many_went(recorder: Recorder) -> None:
    calls = 0

    def second_fails(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(202 if calls == 1 else 503)

    adapter = make(Recorder(second_fails), URL + "?messages_per_second=2")
    with pytest.raises(VendorUnavailable) as caught:
        await adapter.publish([ev(n=n) for n in range(3)])
    assert "2 of 3 events were acknowledged" in " ".join(caught.value.__notes__)
    await adapter.aclose()


async def test_ping_sends_an_empty_batch(recorder: Recorder) -> None:
    adapter = make(Recorder(answer(422, {"errors": {"messages": ["can't be blank"]}})))
    await adapter.ping()
    await adapter.aclose()
    refused = make(Recorder(answer(401, {"message": "Unauthorized"})))
    with pytest.raises(AuthenticationFailed):
        await refused.ping()
    await refused.aclose()


# -- browsers -----------------------------------------------------------------------------


def test_authorize_mints_a_user_jwt_that_pyjwt_verifies(adapter: SupabaseAdapter) -> None:
    user = Member("user-7", {"name": "Ada"})
    grant = adapter.authorize("private-orders.42", user=user, socket_id="ignored")
    claims = jwt.decode(
        grant["access_token"], JWT_SECRET, audience="authenticated", algorithms=["HS256"]
    )
    assert claims == {
        "aud": "authenticated",
        "role": "authenticated",
        "sub": "user-7",
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
        "realtime_bridge": {"topics": ["private-orders.42"]},
        "user_metadata": {"name": "Ada"},
    }
    assert grant["expires_at"] == int(NOW) + 3600 and grant["expires_in"] == 3600
    assert grant["token_type"] == "bearer"
    assert (grant["topic"], grant["private"]) == ("private-orders.42", True)
    assert adapter.authorize("orders.42", user=Member("u"))["private"] is False


def test_one_token_can_name_several_channels(adapter: SupabaseAdapter) -> None:
    grant = adapter.authorize_channels(["private-a", "presence-b", "private-a"], user=Member("u"))
    claims = jwt.decode(
        grant["access_token"], JWT_SECRET, audience="authenticated", algorithms=["HS256"]
    )
    assert claims["realtime_bridge"] == {"topics": ["private-a", "presence-b"]}
    assert "user_metadata" not in claims


def test_authorize_needs_the_jwt_secret_a_channel_and_for_presence_a_user(
    recorder: Recorder,
) -> None:
    adapter = make(recorder)
    with pytest.raises(CapabilityNotSupported, match="jwt_secret"):
        adapter.authorize("private-a", user=Member("u"))
    with_secret = make(recorder, URL + f"?jwt_secret={JWT_SECRET}")
    with pytest.raises(ValueError, match="user"):
        with_secret.authorize("presence-a")
    anonymous = with_secret.authorize("private-a")  # may receive; names no one
    claims = jwt.decode(
        anonymous["access_token"], JWT_SECRET, audience="authenticated", algorithms=["HS256"]
    )
    assert "sub" not in claims and claims["realtime_bridge"] == {"topics": ["private-a"]}
    with pytest.raises(ValueError, match="channel"):
        with_secret.authorize(None, user=Member("u"))
    with pytest.raises(InvalidChannel):
        with_secret.authorize("no spaces allowed", user=Member("u"))
    with pytest.raises(ValueError, match="JSON"):
        with_secret.authorize("private-a", user=Member("u", {"when": object()}))


def test_policies_sql_grants_the_tokens_topics() -> None:
    sql = supabase_auth.policies_sql()
    assert sql.count("create policy") == 2
    assert "for select" in sql and "for insert" in sql
    assert "on realtime.messages" in sql and "to authenticated" in sql
    assert "realtime.topic()" in sql and "auth.jwt()" in sql
    assert "'realtime_bridge' -> 'topics'" in sql
    assert "extension in ('broadcast', 'presence')" in sql
    assert "like 'presence-%'" in sql
    assert "send on authorised channels" in sql  # dropped even when not created
    assert ">>>" not in sql and "<<<" not in sql
    with_send = supabase_auth.policies_sql(client_broadcast=True)
    assert with_send.count("create policy") == 3
    assert "extension = 'broadcast'" in with_send


# -- lifecycle ----------------------------------------------------------------------------


async def test_aclose_is_safe_twice_before_and_after_use(recorder: Recorder) -> None:
    adapter = make(recorder)
    await adapter.aclose()
    await adapter.aclose()
    await adapter.publish([ev()])
    await adapter.aclose()
    await adapter.aclose()
    await adapter.publish([ev()])  # a new client after aclose
    await adapter.aclose()
    assert len(recorder.requests) == 2


# -- the WebSocket: presence and the private-delivery probe --------------------------------


class FakeRealtime:
    """Realtime's Phoenix protocol, as far as presence and broadcast go (vsn 1.0.0)."""

    def __init__(self) -> None:
        self.presence: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
        self.members: dict[str, list[tuple[ServerConnection, bool]]] = defaultdict(list)
        self.joins: list[dict[str, Any]] = []
        self.refuse: dict[str, str] = {}
        self.drop_private = False  # what Supabase does when the sender fails RLS
        self.server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"supabase://{KEY}@127.0.0.1:{port}?tls=false&timeout=3&jwt_secret={JWT_SECRET}"

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            async for raw in ws:
                await self._on(ws, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            for joined in self.members.values():
                joined[:] = [(peer, private) for peer, private in joined if peer is not ws]

    async def _on(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        topic, event, ref = message["topic"], message["event"], message.get("ref")
        if event == "phx_join":
            self.joins.append({**message, "path": ws.request.path if ws.request else ""})
            if topic in self.refuse:
                await self._reply(ws, topic, ref, "error", {"reason": self.refuse[topic]})
                return
            config = message["payload"]["config"]
            self.members[topic].append((ws, config["private"]))
            await self._reply(ws, topic, ref, "ok", {})
            if config["presence"]["enabled"]:
                state = {key: {"metas": metas} for key, metas in self.presence[topic].items()}
                await self._send(ws, topic, "presence_state", state)
        elif event in ("phx_leave", "heartbeat"):
            await self._reply(ws, topic, ref, "ok", {})

    async def _reply(
        self, ws: ServerConnection, topic: str, ref: str | None, status: str, response: Any
    ) -> None:
        await self._send(ws, topic, "phx_reply", {"status": status, "response": response}, ref)

    async def _send(
        self, ws: ServerConnection, topic: str, event: str, payload: Any, ref: Any = None
    ) -> None:
        message = {"topic": topic, "event": event, "payload": payload, "ref": ref}
        await ws.send(json.dumps(message))

    async def diff(self, topic: str, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        topic = f"realtime:{topic}"
        for key, metas in joins.items():
            self.presence[topic][key] = metas
        for key in leaves:
            self.presence[topic].pop(key, None)
        raw = {
            "joins": {key: {"metas": metas} for key, metas in joins.items()},
            "leaves": {key: {"metas": metas} for key, metas in leaves.items()},
        }
        for ws, _ in list(self.members[topic]):
            await self._send(ws, topic, "presence_diff", raw)

    async def rest(self, request: httpx.Request) -> httpx.Response:
        """The REST broadcast endpoint, delivering to joined sockets of the same privacy."""
        for message in json.loads(request.content)["messages"]:
            if message["private"] and self.drop_private:
                continue
            topic = f"realtime:{message['topic']}"
            payload = {
                "type": "broadcast",
                "event": message["event"],
                "payload": message["payload"],
            }
            for ws, private in list(self.members[topic]):
                if private == message["private"]:
                    await self._send(ws, topic, "broadcast", payload)
        return httpx.Response(202)


@pytest.fixture
async def realtime() -> AsyncIterator[FakeRealtime]:
    fake = FakeRealtime()
    async with serve(fake._handle, "127.0.0.1", 0) as server:
        fake.server = server
        yield fake


@pytest.fixture
async def live(realtime: FakeRealtime) -> AsyncIterator[SupabaseAdapter]:
    adapter = SupabaseAdapter.from_url(
        realtime.url, transport=httpx.MockTransport(realtime.rest), clock=lambda: NOW
    )
    yield adapter
    await adapter.aclose()
    # Nothing the SDK started is left running: reader, heartbeat, push timeouts, rejoin timers.
    others = [repr(task.get_coro()).lower() for task in asyncio.all_tasks()]
    assert not [coro for coro in others if any(n in coro for n in ("realtime", "push", "timer"))]


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def meta(ref: str, **fields: Any) -> dict[str, Any]:
    return {"phx_ref": ref, **fields}


async def test_presence_joins_once_and_follows_diffs(
    live: SupabaseAdapter, realtime: FakeRealtime
) -> None:
    realtime.presence["realtime:presence-room.7"] = {
        "u-2": [meta("r2", name="Bob")],
        "u-1": [meta("r1", name="Ada"), meta("r3", name="Ada (phone)")],
    }
    members = await live.presence("presence-room.7")
    assert members == [Member("u-1", {"name": "Ada"}), Member("u-2", {"name": "Bob"})]
    [join] = realtime.joins
    assert join["topic"] == "realtime:presence-room.7"
    assert join["payload"]["config"]["private"] is True
    assert join["payload"]["config"]["presence"]["enabled"] is True
    assert join["payload"]["access_token"] == KEY
    query = parse_qs(urlsplit(join["path"]).query)
    assert query["apikey"] == [KEY] and query["vsn"] == ["1.0.0"]
    assert urlsplit(join["path"]).path == "/realtime/v1/websocket"

    await realtime.diff("presence-room.7", {"u-3": [meta("r4", name="Cy")]}, {"u-2": []})
    await realtime.diff("presence-room.7", {}, {"u-2": [meta("r2", name="Bob")]})

    async def three_left() -> bool:
        return [m.id for m in await live.presence("presence-room.7")] == ["u-1", "u-3"]

    await eventually(three_left)
    assert len(realtime.joins) == 1  # the channel is kept, not joined again
    occupancy = await live.occupancy("presence-room.7")
    assert occupancy == Occupancy("presence-room.7", subscribers=None, members=2)


async def test_a_public_channel_is_joined_public_and_may_be_empty(
    live: SupabaseAdapter, realtime: FakeRealtime
) -> None:
    assert await live.presence("room.1") == []
    assert realtime.joins[0]["payload"]["config"]["private"] is False


async def test_a_refused_join_is_authentication_failed(
    live: SupabaseAdapter, realtime: FakeRealtime
) -> None:
    reason = "Unauthorized: You do not have permissions to read from this Channel topic"
    realtime.refuse["realtime:private-x"] = reason
    with pytest.raises(AuthenticationFailed, match="permissions"):
        await live.presence("private-x")
    del realtime.refuse["realtime:private-x"]
    assert await live.presence("private-x") == []  # joined afresh once allowed


async def test_the_least_recently_used_channel_is_left_at_the_limit(
    realtime: FakeRealtime,
) -> None:
    adapter = SupabaseAdapter.from_url(realtime.url, max_presence_channels=2)
    for name in ("a.1", "b.1", "a.1", "c.1"):
        await adapter.presence(name)
    assert list(adapter._socket._channels) == ["a.1", "c.1"]
    await adapter.aclose()
    await adapter.aclose()


async def test_the_probe_arrives_when_private_delivery_works(
    live: SupabaseAdapter, realtime: FakeRealtime
) -> None:
    check = await live.verify_private_delivery("private-doctor", timeout=3)
    assert check and check.delivered, check.detail
    assert realtime.joins[0]["payload"]["config"]["private"] is True


async def test_the_probe_reports_the_silent_drop(
    live: SupabaseAdapter, realtime: FakeRealtime
) -> None:
    realtime.drop_private = True
    check = await live.verify_private_delivery("private-doctor", timeout=0.5)
    assert not check
    assert "RLS INSERT" in check.detail


async def test_the_probe_can_listen_as_a_user(
    live: SupabaseAdapter, realtime: FakeRealtime
) -> None:
    check = await live.verify_private_delivery("private-doctor", as_user=Member("u-9"))
    assert check.delivered
    token = realtime.joins[0]["payload"]["access_token"]
    claims = jwt.decode(token, JWT_SECRET, audience="authenticated", algorithms=["HS256"])
    assert claims["sub"] == "u-9"
    assert claims["realtime_bridge"] == {"topics": ["private-doctor"]}
    realtime.refuse["realtime:private-closed"] = "Unauthorized: no policy"
    refused = await live.verify_private_delivery("private-closed", as_user=Member("u-9"))
    assert not refused and "may not receive" in refused.detail


async def test_a_websocket_that_does_not_open_is_vendor_unavailable() -> None:
    adapter = SupabaseAdapter.from_url(f"supabase://{KEY}@127.0.0.1:9?tls=false&timeout=1")
    with pytest.raises(VendorUnavailable) as caught:
        await adapter.presence("room.1")
    assert all(KEY not in text for text in texts(caught.value))
    await adapter.aclose()
