"""The Ably emulator, held to the official ``ably`` SDK (3.x) and to Ably's REST API docs.

Most tests drive the emulator with ``ably.AblyRest`` pointed at it as Ably
documents pointing the SDK at a local server (``endpoint="127.0.0.1"``,
``tls=False``, token auth since Basic over plain HTTP is refused): what the
SDK sends and parses is the check, written by someone else. What the SDK
never calls (JWTs, the exact ``Link`` headers, the TokenRequest test vector,
batch limits, the control API) is checked with plain httpx against the ASGI
app. No test sleeps; time moves through a ``ManualClock``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from ably import AblyAuthException, AblyException, AblyRest
from ably.types.message import Message

from realtime_bridge.testing.ably import AblyEmulator, ManualClock, serve

KEY = "emulator.key:secret"
HOUR = 3600.0


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator(clock: ManualClock) -> AblyEmulator:
    return AblyEmulator(clock=clock)


@pytest.fixture
async def base_url(emulator: AblyEmulator) -> AsyncIterator[str]:
    async with serve(emulator) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def sdk(base_url: str, key: str | None = KEY, **options: Any) -> AsyncIterator[AblyRest]:
    """The SDK as Ably's docs point it at a local server."""
    settings: dict[str, Any] = {
        "endpoint": "127.0.0.1",
        "port": port_of(base_url),
        "tls": False,
        "use_binary_protocol": False,
        "use_token_auth": True,
        **options,
    }
    if key is not None:
        settings["key"] = key
    async with AblyRest(**settings) as rest:
        yield rest


@pytest.fixture
async def rest(base_url: str) -> AsyncIterator[AblyRest]:
    async with sdk(base_url) as client:
        yield client


@pytest.fixture
async def http(emulator: AblyEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP against the ASGI app in process, with a token for the default key."""
    token = emulator.create_token()
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator.test", headers=bearer(token)
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + base64.b64encode(token.encode()).decode()}


def basic(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}


def ably_error(response: httpx.Response) -> tuple[int, int]:
    """(HTTP status, Ably code), checking the body and the mirroring headers agree."""
    error = response.json()["error"]
    assert error["statusCode"] == response.status_code
    assert response.headers["x-ably-errorcode"] == str(error["code"])
    assert response.headers["x-ably-errormessage"]
    assert error["href"] == f"https://help.ably.io/error/{error['code']}"
    return response.status_code, error["code"]


async def raised(call: Callable[[], Any]) -> AblyException:
    with pytest.raises(AblyException) as info:
        await call()
    return info.value


# -- publishing, through the SDK ---------------------------------------------------------


async def test_publish_str_dict_and_list_round_trip_through_history(
    rest: AblyRest, emulator: AblyEmulator, clock: ManualClock
) -> None:
    channel = rest.channels.get("orders:42")
    result = await channel.publish("created", {"id": 42, "total": 9.5})
    await channel.publish("note", "plain text")
    await channel.publish("lines", [1, 2, 3])

    stored = emulator.messages("orders:42")
    assert [(m.name, m.encoding) for m in stored] == [
        ("created", "json"),
        ("note", None),
        ("lines", "json"),
    ]
    assert stored[0].decoded_data == {"id": 42, "total": 9.5}
    assert result.serials == [stored[0].serial]
    assert all(m.timestamp == int(clock() * 1000) for m in stored)

    page = await channel.history()
    assert [(m.name, m.data) for m in page.items] == [
        ("lines", [1, 2, 3]),
        ("note", "plain text"),
        ("created", {"id": 42, "total": 9.5}),
    ]
    newest = page.items[0]
    assert (newest.id, newest.serial, newest.timestamp) == (
        stored[2].id,
        stored[2].serial,
        stored[2].timestamp,
    )
    assert newest.connection_id and not page.has_next()


async def test_token_client_id_is_given_to_messages(base_url: str, emulator: AblyEmulator) -> None:
    async with sdk(base_url, client_id="alice") as rest:
        await rest.channels.get("chat").publish("said", "hi")
        page = await rest.channels.get("chat").history()
    assert page.items[0].client_id == "alice"
    assert emulator.messages("chat")[0].client_id == "alice"


async def test_a_message_id_seen_within_two_minutes_is_discarded(
    rest: AblyRest, emulator: AblyEmulator, clock: ManualClock
) -> None:
    channel = rest.channels.get("orders")
    first = await channel.publish(Message("paid", "42", id="order-42-paid"))
    again = await channel.publish(Message("paid", "42", id="order-42-paid"))
    assert len(emulator.messages("orders")) == 1
    assert again.serials == first.serials

    clock.advance(121)  # outside the idempotency window: a new message
    await channel.publish(Message("paid", "42", id="order-42-paid"))
    assert len(emulator.messages("orders")) == 2


async def test_sdk_idempotent_publishing_reuses_its_ids_on_a_repeat(
    rest: AblyRest, emulator: AblyEmulator
) -> None:
    messages = [Message("a", "1"), Message("b", "2")]
    channel = rest.channels.get("batch")
    await channel.publish(messages)  # the SDK gives them ids <base>:0 and <base>:1
    await channel.publish(messages)  # same objects, same ids: Ably drops both copies

    stored = emulator.messages("batch")
    assert [m.name for m in stored] == ["a", "b"]
    base = stored[0].id.rsplit(":", 1)[0]
    assert [m.id for m in stored] == [f"{base}:0", f"{base}:1"]


async def test_binary_protocol_publishes_and_reads_bytes(
    base_url: str, emulator: AblyEmulator
) -> None:
    async with sdk(base_url, use_binary_protocol=True) as rest:
        channel = rest.channels.get("blobs")
        await channel.publish("raw", b"\x00\x01\xff")
        await channel.publish("obj", {"k": "v"})
        page = await channel.history(direction="forwards")
    assert [m.data for m in page.items] == [bytearray(b"\x00\x01\xff"), {"k": "v"}]
    assert emulator.messages("blobs")[0].data == b"\x00\x01\xff"


@pytest.mark.parametrize("name", ["with space", "with/slash", "plus+sign", "ns:colon"])
async def test_channel_names_survive_the_sdks_encoding(
    rest: AblyRest, emulator: AblyEmulator, name: str
) -> None:
    channel = rest.channels.get(name)
    await channel.publish("n", "d")
    assert [m.data for m in (await channel.history()).items] == ["d"]
    assert emulator.channels() == [name]
    emulator.enter_presence(name, "alice")
    assert [m.client_id for m in (await channel.presence.get()).items] == ["alice"]


async def test_get_message_by_serial(rest: AblyRest) -> None:
    channel = rest.channels.get("orders")
    result = await channel.publish("paid", {"id": 42})
    message = await channel.get_message(result.serials[0])
    assert (message.name, message.data, message.serial) == ("paid", {"id": 42}, result.serials[0])
    versions = await channel.get_message_versions(result.serials[0])
    assert [m.serial for m in versions.items] == result.serials
    error = await raised(lambda: channel.get_message("01700000000000-000001@emulator:000"))
    assert (error.code, error.status_code) == (40400, 404)


# -- history, through the SDK --------------------------------------------------------------


async def publish_numbered(rest: AblyRest, channel: str, count: int, clock: ManualClock) -> None:
    for number in range(1, count + 1):
        await rest.channels.get(channel).publish("n", str(number))
        clock.advance(1)


async def test_history_pages_backwards_following_link_headers(
    rest: AblyRest, clock: ManualClock
) -> None:
    await publish_numbered(rest, "feed", 5, clock)
    page = await rest.channels.get("feed").history(limit=2)
    seen = [[m.data for m in page.items]]
    while page.has_next():
        page = await page.next()
        seen.append([m.data for m in page.items])
    assert seen == [["5", "4"], ["3", "2"], ["1"]]
    assert page.is_last()
    first = await page.first()
    assert [m.data for m in first.items] == ["5", "4"]


async def test_history_forwards_within_start_and_end(
    rest: AblyRest, emulator: AblyEmulator, clock: ManualClock
) -> None:
    await publish_numbered(rest, "feed", 5, clock)
    times = [m.timestamp for m in emulator.messages("feed")]
    channel = rest.channels.get("feed")

    page = await channel.history(direction="forwards", limit=2)
    assert [m.data for m in page.items] == ["1", "2"]
    assert [m.data for m in (await page.next()).items] == ["3", "4"]

    window = await channel.history(start=times[1], end=times[3], direction="forwards")
    assert [m.data for m in window.items] == ["2", "3", "4"]
    newest_two = await channel.history(start=times[1], end=times[3], limit=2)
    assert [m.data for m in newest_two.items] == ["4", "3"]


async def test_history_forgets_messages_past_retention(
    base_url: str, emulator: AblyEmulator, clock: ManualClock
) -> None:
    async with sdk(base_url) as rest:
        await rest.channels.get("feed").publish("old", "1")
    clock.advance(48 * HOUR)
    # A client created now asks the server's time (query_time) to sign TokenRequests
    # on the emulator's clock, as Ably's SDKs correct for a skewed local clock.
    async with sdk(base_url, query_time=True) as rest:
        await rest.channels.get("feed").publish("new", "2")
    clock.advance(25 * HOUR)  # "old" is now 73 hours old; Ably keeps 72 by default
    async with sdk(base_url, query_time=True) as rest:
        page = await rest.channels.get("feed").history()
        assert [m.name for m in page.items] == ["new"]
        assert await rest.time() == int(clock() * 1000)
    assert [m.name for m in emulator.messages("feed")] == ["new"]


# -- presence, status, tokens, batch: through the SDK ---------------------------------------


async def test_presence_get_pages_through_members(rest: AblyRest, emulator: AblyEmulator) -> None:
    emulator.enter_presence("room", "alice", {"name": "Alice"})
    emulator.enter_presence("room", "bob", "typing")
    carol = emulator.enter_presence("room", "carol")

    page = await rest.channels.get("room").presence.get(limit=2)
    members = list(page.items)
    assert page.has_next()
    page = await page.next()
    members += page.items
    assert not page.has_next()
    assert [(m.client_id, m.data, m.action) for m in members] == [
        ("alice", {"name": "Alice"}, 1),
        ("bob", "typing", 1),
        ("carol", None, 1),
    ]
    assert members[2].connection_id == carol and members[2].id.startswith(carol + ":")

    emulator.leave_presence("room", "bob")
    remaining = await rest.channels.get("room").presence.get()
    assert [m.client_id for m in remaining.items] == ["alice", "carol"]
    history = await rest.channels.get("room").presence.history(direction="forwards")
    assert [(m.client_id, m.action) for m in history.items][-1] == ("bob", 3)  # leave


async def test_channel_status_reports_occupancy(rest: AblyRest, emulator: AblyEmulator) -> None:
    emulator.set_subscribers("room", 4, publishers=1)
    emulator.enter_presence("room", "alice")
    emulator.enter_presence("room", "bob")
    details = await rest.channels.get("room").status()
    metrics = details.status.occupancy.metrics
    assert details.channel_id == "room" and details.status.is_active
    assert (metrics.subscribers, metrics.publishers, metrics.connections) == (4, 1, 4)
    assert (metrics.presence_members, metrics.presence_connections) == (2, 2)
    assert metrics.presence_subscribers == 4


async def test_request_token_issues_what_was_asked(rest: AblyRest, emulator: AblyEmulator) -> None:
    details = await rest.auth.request_token(
        token_params={"ttl": 60_000, "capability": {"orders:*": ["publish"]}, "client_id": "bob"}
    )
    assert details.expires - details.issued == 60_000
    assert details.capability.to_dict() == {"orders:*": ["publish"]}
    assert details.client_id == "bob"
    assert emulator.auth.tokens[details.token].client_id == "bob"


async def test_batch_publish_through_rest_request(rest: AblyRest, emulator: AblyEmulator) -> None:
    specs = [
        {"channels": ["a", "b"], "messages": {"name": "hello", "data": "x"}},
        {"channels": "c", "messages": [{"name": "one"}, {"name": "two", "data": {"n": 2}}]},
    ]
    response = await rest.request("POST", "/messages", "3", body=specs)
    assert response.status_code == 200 and response.success
    assert [item["channel"] for item in response.items] == ["a", "b", "c"]
    assert all(item["messageId"] for item in response.items)
    assert [m.name for m in emulator.messages("c")] == ["one", "two"]
    assert emulator.messages("a")[0].id == response.items[0]["messageId"] + ":0"


async def test_batch_publish_partial_failure_lists_each_channel(
    base_url: str, emulator: AblyEmulator
) -> None:
    capability = {"ok:*": ["publish"], "other": ["subscribe"]}
    async with sdk(base_url, default_token_params={"capability": capability}) as rest:
        body = {"channels": ["ok:1", "other", ":bad"], "messages": {"data": "x"}}
        response = await rest.request("POST", "/messages", "3", body=body)
    assert response.status_code == 400 and not response.success
    assert response.error_code == "40020"
    [envelope] = response.items
    assert envelope["error"]["code"] == 40020
    results = envelope["batchResponse"]
    assert results[0]["channel"] == "ok:1" and results[0]["messageId"]
    assert (results[1]["channel"], results[1]["error"]["code"]) == ("other", 40160)
    assert results[1]["error"]["statusCode"] == 401
    assert (results[2]["channel"], results[2]["error"]["code"]) == (":bad", 40010)
    assert len(emulator.messages("ok:1")) == 1 and not emulator.messages("other")


# -- errors, as the SDK surfaces them -------------------------------------------------------------


async def test_too_large_a_message_is_40009(rest: AblyRest, emulator: AblyEmulator) -> None:
    channel = rest.channels.get("big")
    await channel.publish("n", "x" * 65_535)  # name + data = 65,536 bytes: the limit
    error = await raised(lambda: channel.publish("n", "x" * 65_536))
    assert (error.code, error.status_code) == (40009, 413)
    assert len(emulator.messages("big")) == 1


@pytest.mark.parametrize("name", [":colon", "[bracket", "new\nline"])
async def test_a_bad_channel_name_is_40010(rest: AblyRest, name: str) -> None:
    error = await raised(lambda: rest.channels.get(name).publish("n", "d"))
    assert (error.code, error.status_code) == (40010, 400)


async def test_a_token_for_one_channel_is_denied_the_others(
    base_url: str, emulator: AblyEmulator
) -> None:
    capability = {"allowed": ["publish", "history"]}
    async with sdk(base_url, default_token_params={"capability": capability}) as rest:
        allowed = rest.channels.get("allowed")
        await allowed.publish("n", "d")
        assert len((await allowed.history()).items) == 1
        calls = [
            lambda: rest.channels.get("elsewhere").publish("n", "d"),
            lambda: rest.channels.get("elsewhere").history(),
            lambda: allowed.presence.get(),  # needs subscribe
            lambda: allowed.status(),  # needs channel-metadata
        ]
        for call in calls:
            error = await raised(call)
            assert isinstance(error, AblyAuthException)
            assert (error.code, error.status_code) == (40160, 401)
    assert not emulator.messages("elsewhere")


async def test_basic_auth_over_http_is_refused(base_url: str, emulator: AblyEmulator) -> None:
    async with sdk(base_url, use_token_auth=False) as rest:  # Basic: the SDK refuses it itself
        error = await raised(lambda: rest.channels.get("c").publish("n", "d"))
    assert (error.code, error.status_code) == (40103, 401)
    assert not emulator.request_log

    async with httpx.AsyncClient(base_url=base_url) as http:  # and so does the emulator
        response = await http.post("/channels/c/messages", json={"data": "d"}, headers=basic())
    assert ably_error(response) == (401, 40103)

    lenient = AblyEmulator(allow_basic_over_http=True)
    transport = httpx.ASGITransport(app=lenient.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as http:
        response = await http.post("/channels/c/messages", json={"data": "d"}, headers=basic())
        wrong = await http.get("/channels/c/messages", headers=basic("emulator.key:nope"))
    assert response.status_code == 201
    assert ably_error(wrong) == (401, 40101)


async def test_an_expired_token_surfaces_as_40142(
    base_url: str, emulator: AblyEmulator, clock: ManualClock
) -> None:
    token = emulator.create_token(ttl=60)

    async def same_token(params: Any) -> str:
        return token

    async with sdk(base_url, key=None, auth_callback=same_token) as rest:
        await rest.channels.get("c").publish("n", "fresh")
        clock.advance(61)
        error = await raised(lambda: rest.channels.get("c").publish("n", "stale"))
    assert (error.code, error.status_code) == (40142, 401)
    assert [m.data for m in emulator.messages("c")] == ["fresh"]


async def test_the_sdk_renews_an_expired_token_by_itself(
    base_url: str, emulator: AblyEmulator, clock: ManualClock
) -> None:
    async with sdk(base_url, default_token_params={"ttl": 1000}) as rest:
        await rest.channels.get("c").publish("n", "1")
        clock.advance(2)  # the token expired; the SDK's TokenRequest is still current
        await rest.channels.get("c").publish("n", "2")
    assert emulator.requests["POST /keys/{keyName}/requestToken"] == 2
    assert [m.data for m in emulator.messages("c")] == ["1", "2"]
    assert [entry.status for entry in emulator.request_log].count(401) == 1


# -- injected faults -----------------------------------------------------------------------------


async def test_injected_503_and_429_reach_the_sdk(rest: AblyRest, emulator: AblyEmulator) -> None:
    await rest.auth.authorize()  # the token first, so the faults hit the publishes
    channel = rest.channels.get("c")
    emulator.fail_next(1, status=503)
    error = await raised(lambda: channel.publish("n", "d"))
    assert (error.code, error.status_code) == (50003, 503)
    emulator.fail_next(1, status=429, retry_after=2)
    error = await raised(lambda: channel.publish("n", "d"))
    assert (error.code, error.status_code) == (42910, 429)
    await channel.publish("n", "after")
    assert [m.data for m in emulator.messages("c")] == ["after"]


async def test_a_lost_response_is_retried_on_a_fallback_host_without_a_duplicate(
    base_url: str, emulator: AblyEmulator
) -> None:
    # "localhost" reaches the same emulator: the SDK's fallback host for this test.
    async with sdk(base_url, fallback_hosts=["localhost"]) as rest:
        await rest.auth.authorize()
        emulator.fail_next(1, status=503, applied=True, path="/channels/")
        await rest.channels.get("c").publish("n", "once")
    assert [m.data for m in emulator.messages("c")] == ["once"]
    publishes = [e for e in emulator.request_log if e.route == "/channels/{channel}/messages"]
    assert [(e.status, e.fault) for e in publishes] == [(503, True), (201, False)]


# -- plain HTTP: what the SDK never asks ---------------------------------------------------


async def test_link_headers_have_ably_form(http: httpx.AsyncClient, clock: ManualClock) -> None:
    for number in range(3):
        await http.post("/channels/feed/messages", json={"name": "n", "data": str(number)})
    now = int(clock() * 1000)
    response = await http.get("/channels/feed/messages", params={"limit": "2"})
    query = f"start=0&end={now}&limit=2&direction=backwards"
    links = response.headers.get_list("link")
    assert links[:2] == [
        f'<./messages?{query}>; rel="first"',
        f'<./messages?{query}>; rel="current"',
    ]
    assert re.fullmatch(rf'<\./messages\?{query}&cursor=\d+>; rel="next"', links[2])
    assert [m["data"] for m in response.json()] == ["2", "1"]

    following = response.links["next"]["url"]
    last = await http.get(str(response.url.join(following)))
    assert [m["data"] for m in last.json()] == ["0"]
    assert "next" not in last.links and last.links["current"]["url"] == following

    for number in range(2):
        emulator_client = f"member-{number}"
        await http.post(
            "/_emulator/presence", json={"channel": "room", "client_id": emulator_client}
        )
    members = await http.get("/channels/room/presence", params={"limit": "1", "clientId": ""})
    assert members.links["first"]["url"] == "./presence?limit=1"
    assert re.fullmatch(r"\./presence\?limit=1&cursor=\d+", members.links["next"]["url"])


async def test_history_message_fields(http: httpx.AsyncClient, clock: ManualClock) -> None:
    body = {"name": "n", "data": {"a": 1}, "clientId": "zed", "extras": {"headers": {"k": "v"}}}
    published = await http.post("/channels/c/messages", json=body)
    assert published.status_code == 201
    reply = published.json()
    [message] = (await http.get("/channels/c/messages")).json()
    assert reply == {
        "channel": "c",
        "messageId": message["id"][:-2],
        "serials": [message["serial"]],
    }
    assert message["data"] == '{"a":1}' and message["encoding"] == "json"
    assert message["clientId"] == "zed" and message["extras"] == {"headers": {"k": "v"}}
    assert message["timestamp"] == int(clock() * 1000) and message["connectionId"]
    assert message["action"] == 0


async def test_errors_are_ably_shaped(http: httpx.AsyncClient, emulator: AblyEmulator) -> None:
    assert ably_error(await http.get("/nowhere")) == (404, 40400)
    assert ably_error(await http.delete("/channels/c/messages")) == (405, 40500)
    bad_json = await http.post(
        "/channels/c/messages", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert ably_error(bad_json) == (400, 40001)
    assert ably_error(await http.post("/channels/c/messages", json={"data": 42})) == (400, 40013)
    assert ably_error(await http.get("/channels/c/messages", params={"limit": "1001"})) == (
        400,
        40003,
    )
    assert ably_error(await http.get("/channels/c/messages", params={"direction": "up"})) == (
        400,
        40003,
    )
    unauthenticated = await http.get("/channels/c/messages", headers={"Authorization": ""})
    assert ably_error(unauthenticated) == (401, 40101)
    assert ably_error(await http.get("/channels/c", headers=bearer("emulator.unknown"))) == (
        401,
        40143,
    )


async def test_an_emulator_bug_still_answers_in_ably_shape(
    http: httpx.AsyncClient, emulator: AblyEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(emulator.store, "history", broken)
    response = await http.get("/channels/c/messages")
    assert ably_error(response) == (500, 50000)
    assert "Traceback" not in response.text


async def test_atomic_arrays_need_indexed_ids(
    http: httpx.AsyncClient, emulator: AblyEmulator
) -> None:
    good = [{"id": "base:0", "data": "a"}, {"id": "base:1", "data": "b"}]
    response = await http.post("/channels/c/messages", json=good)
    assert response.status_code == 201 and response.json()["messageId"] == "base"
    for bad in (
        [{"id": "x", "data": "a"}, {"id": "y", "data": "b"}],
        [{"id": "base:0", "data": "a"}, {"data": "b"}],
        [{"id": "one:0", "data": "a"}, {"id": "two:1", "data": "b"}],
    ):
        assert ably_error(await http.post("/channels/c/messages", json=bad)) == (400, 40031)
    assert ably_error(await http.post("/channels/c/messages", json={"id": ""})) == (400, 40031)
    assert [m.id for m in emulator.messages("c")] == ["base:0", "base:1"]


async def test_client_id_must_match_the_token(emulator: AblyEmulator) -> None:
    token = emulator.create_token(client_id="alice")
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://e.test", headers=bearer(token)
    ) as http:
        mismatch = await http.post("/channels/c/messages", json={"clientId": "bob", "data": "x"})
        assert ably_error(mismatch) == (400, 40012)
        assert (await http.post("/channels/c/messages", json={"data": "x"})).status_code == 201
    assert emulator.messages("c")[0].client_id == "alice"


async def test_unenveloped_publish(http: httpx.AsyncClient, emulator: AblyEmulator) -> None:
    headers = {
        "X-Ably-Name": "hook",
        "X-Ably-MessageId": "hook-1",
        "content-type": "application/json",
    }
    response = await http.post(
        "/channels/hooks/messages",
        params={"enveloped": "false"},
        content=b'{"a":1}',
        headers=headers,
    )
    assert response.status_code == 201
    [message] = emulator.messages("hooks")
    assert (message.name, message.id, message.decoded_data) == ("hook", "hook-1", {"a": 1})


async def test_jwt_signed_with_the_key_is_accepted(clock: ManualClock) -> None:
    secret = "a-jwt-signing-secret-of-32-bytes+"  # PyJWT warns about shorter HMAC keys
    emulator = AblyEmulator(f"emulator.key:{secret}", clock=clock)
    now = int(clock())
    claims = {
        "iat": now,
        "exp": now + 60,
        "x-ably-capability": json.dumps({"jwt:*": ["publish", "history"]}),
        "x-ably-clientId": "jay",
    }
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "emulator.key"})
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as http:

        async def publish(channel: str, credential: str, encode: bool = True) -> httpx.Response:
            value = base64.b64encode(credential.encode()).decode() if encode else credential
            headers = {"Authorization": f"Bearer {value}"}
            return await http.post(
                f"/channels/{channel}/messages", json={"data": "x"}, headers=headers
            )

        assert (await publish("jwt:1", token)).status_code == 201
        assert (await publish("jwt:2", token, encode=False)).status_code == 201
        assert ably_error(await publish("other", token)) == (401, 40160)
        forged = jwt.encode(
            claims, secret[::-1], algorithm="HS256", headers={"kid": "emulator.key"}
        )
        assert ably_error(await publish("jwt:1", forged)) == (401, 40144)
        unknown = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "emulator.other"})
        assert ably_error(await publish("jwt:1", unknown)) == (401, 40144)
        clock.advance(61)
        assert ably_error(await publish("jwt:1", token)) == (401, 40142)
    assert [m.client_id for m in emulator.messages("jwt:1")] == ["jay"]


def sign(key: str, request: dict[str, Any]) -> dict[str, Any]:
    """A TokenRequest MAC per Ably's spec, written here independently of the emulator."""
    name, _, secret = key.partition(":")
    fields = [name, request.get("ttl"), request.get("capability"), request.get("clientId")]
    fields += [request["timestamp"], request["nonce"]]
    text = "".join(("" if value is None else str(value)) + "\n" for value in fields)
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return {"keyName": name, **request, "mac": base64.b64encode(mac).decode()}


async def test_token_request_test_vector_and_replay() -> None:
    clock = ManualClock(start=1_700_000_000.0)
    emulator = AblyEmulator("appid.keyid:keysecret", clock=clock)
    request = {
        "ttl": 3600000,
        "capability": '{"*":["*"]}',
        "clientId": "bob",
        "timestamp": 1700000000000,
        "nonce": "0123456789abcdef",
    }
    signed = sign("appid.keyid:keysecret", request)
    assert signed["mac"] == "U1mjjsi2HkAPB/cuXYlfj6cZGxmX0nfqVeV/VrrARWQ="  # docs/vendors.md
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as http:
        path = "/keys/appid.keyid/requestToken"
        response = await http.post(path, json=signed)
        assert response.status_code == 200
        details = response.json()
        assert details["keyName"] == "appid.keyid" and details["clientId"] == "bob"
        assert details["capability"] == '{"*":["*"]}'
        assert details["expires"] - details["issued"] == 3600000
        assert ably_error(await http.post(path, json=signed)) == (401, 40105)

        tampered = {
            **sign("appid.keyid:keysecret", {**request, "nonce": "fedcba9876543210"}),
            "ttl": 1,
        }
        assert ably_error(await http.post(path, json=tampered)) == (401, 40101)
        stale = sign("appid.keyid:keysecret", {**request, "timestamp": 1700000000000 - 121_000})
        assert ably_error(await http.post(path, json=stale)) == (401, 40104)
        elsewhere = await http.post("/keys/appid.other/requestToken", json=signed)
        assert ably_error(elsewhere) == (404, 40400)
        usable = await http.get("/channels/c/messages", headers=bearer(details["token"]))
        assert usable.status_code == 200


async def test_token_capability_is_cut_to_the_keys(clock: ManualClock) -> None:
    emulator = AblyEmulator({KEY: {"orders:*": ["publish", "subscribe"]}}, clock=clock)
    transport = httpx.ASGITransport(app=emulator.app)
    now = int(clock() * 1000)
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as http:
        path = "/keys/emulator.key/requestToken"
        wanted = json.dumps({"orders:42": ["history", "publish"], "users": ["publish"]})
        body = sign(KEY, {"capability": wanted, "timestamp": now, "nonce": "a" * 16})
        response = await http.post(path, json=body)
        assert response.json()["capability"] == '{"orders:42":["publish"]}'
        nothing = sign(KEY, {"capability": '{"users":["*"]}', "timestamp": now, "nonce": "b" * 16})
        assert ably_error(await http.post(path, json=nothing)) == (401, 40160)


async def test_unsigned_token_request_needs_basic_auth() -> None:
    for lenient in (False, True):
        emulator = AblyEmulator(allow_basic_over_http=lenient)
        transport = httpx.ASGITransport(app=emulator.app)
        body = {"keyName": "emulator.key", "timestamp": int(time.time() * 1000)}
        async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as http:
            path = "/keys/emulator.key/requestToken"
            assert ably_error(await http.post(path, json=body)) == (401, 40101)
            response = await http.post(path, json=body, headers=basic())
        if lenient:
            assert response.status_code == 200 and response.json()["token"]
        else:
            assert ably_error(response) == (401, 40103)


async def test_batch_limits(http: httpx.AsyncClient) -> None:
    many = {"channels": [f"c{n}" for n in range(101)], "messages": {"data": "x"}}
    assert ably_error(await http.post("/messages", json=many)) == (400, 90010)
    too_many = {"channels": "c", "messages": [{"data": "x"}] * 1001}
    assert ably_error(await http.post("/messages", json=too_many)) == (400, 40034)
    huge = {"channels": "c", "messages": {"data": "x" * (2 * 1024 * 1024)}}
    assert ably_error(await http.post("/messages", json=huge)) == (413, 40009)
    assert ably_error(await http.post("/messages", json={"channels": "c"})) == (400, 40001)


async def test_batch_presence(http: httpx.AsyncClient, emulator: AblyEmulator) -> None:
    emulator.enter_presence("a", "alice")
    response = await http.get("/presence", params={"channels": "a,b"})
    assert response.status_code == 200
    assert [(r["channel"], [m["clientId"] for m in r["presence"]]) for r in response.json()] == [
        ("a", ["alice"]),
        ("b", []),
    ]
    partial = await http.get("/presence", params={"channels": "a,:bad"})
    assert ably_error(partial) == (400, 40020)
    assert partial.json()["batchResponse"][1]["error"]["code"] == 40010


async def test_control_api(http: httpx.AsyncClient, emulator: AblyEmulator) -> None:
    set_faults = {"fail_next": 1, "status": 429, "retry_after": 1.5, "latency": 0.0}
    assert (await http.post("/_emulator/faults", json=set_faults)).json()["pending"] == 1
    limited = await http.get("/time")
    assert ably_error(limited) == (429, 42910)
    assert limited.headers["retry-after"] == "1.5"
    assert (await http.get("/time")).status_code == 200

    await http.post("/_emulator/faults", json={"latency": 0.25})
    assert emulator.latency == 0.25
    await http.delete("/_emulator/faults")
    assert emulator.latency == 0.0

    entered = await http.post("/_emulator/presence", json={"channel": "r", "client_id": "al"})
    assert emulator.presence_members("r")[0].connection_id == entered.json()["connection_id"]
    occupancy = await http.post("/_emulator/occupancy", json={"channel": "r", "subscribers": 2})
    assert occupancy.json()["subscribers"] == 2 and occupancy.json()["presenceMembers"] == 1
    await http.post("/channels/r/messages", json={"data": "x"})
    stored = await http.get("/_emulator/messages", params={"channel": "r"})
    assert [m["data"] for m in stored.json()] == ["x"]
    counts = (await http.get("/_emulator/requests")).json()
    assert counts["GET /time"] == 2 and counts["POST /channels/{channel}/messages"] == 1
    assert ably_error(await http.post("/_emulator/presence", json={})) == (400, 40001)
    await http.post("/_emulator/reset")
    assert not emulator.messages("r") and not emulator.presence_members("r")


def test_python_api_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match=r"appId\.keyId:secret"):
        AblyEmulator("no-secret")
    emulator = AblyEmulator()
    with pytest.raises(ValueError):
        emulator.enter_presence("room", "alice", 42)
    with pytest.raises(ValueError):
        emulator.enter_presence(":bad", "alice")
    with pytest.raises(ValueError):
        emulator.fail_next(1, status=200)
    with pytest.raises(ValueError):
        emulator.latency = -1
