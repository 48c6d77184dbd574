"""The Starlette integration: channel patterns, the client-auth and webhook endpoints, the lifespan.

Each vendor's credential is checked by something that vendor's side would use:
Pusher's by soketi (real Pusher-protocol clients subscribe with it) and by the
``pusher`` SDK's own ``authenticate``; Ably's TokenRequest by the Ably emulator,
fetched through the ``ably`` SDK's ``auth_url``; the gateway token by a real
gateway; the Supabase JWT by PyJWT with the project's secret; the Liveblocks
token by the Liveblocks emulator. Webhooks come signed by soketi itself (Pusher)
and by Ably's documented scheme. The lifespan runs under uvicorn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pusher
import pytest
from ably import AblyException, AblyRest
from asgi_serving import bind_free_port, served, url_of
from conftest_ably import ServeAbly
from hypothesis import given
from hypothesis import strategies as st
from outbox_fixtures import wait_until
from pusher_ws import PusherSocket
from pydantic import SecretStr
from soketi_server import SoketiServer, unique_name
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from realtime_bridge import (
    Bridge,
    CapabilityNotSupported,
    Event,
    Member,
    WebhookKind,
)
from realtime_bridge.gateway import GatewaySettings, MemoryFeed, serve_gateway
from realtime_bridge.integrations.channels import ChannelAuth, ClientAuthRefused
from realtime_bridge.integrations.starlette import (
    auth_endpoint,
    realtime_lifespan,
    realtime_routes,
    webhook_endpoint,
)
from realtime_bridge.outbox import Outbox
from realtime_bridge.testing import FakeAdapter
from realtime_bridge.testing.liveblocks import LiveblocksEmulator
from realtime_bridge.testing.liveblocks import serve as serve_liveblocks
from realtime_bridge.webhooks import WebhookEvent

GATEWAY_SECRET = "integration-test-secret-of-32-bytes-or-more"
ABLY_SECRET = "ably-key-secret-0n1y-here"
SUPABASE_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters"
#: Upper bound of every wait on a server or the relay (a bound, not a claim).
PATIENCE = 10.0


def as_user(name: str) -> dict[str, str]:
    """The header ``header_user`` reads: how these tests sign a request in."""
    return {"X-User": name}


def header_user(request: Request) -> str | None:
    return request.headers.get("x-user")


def shop_channels() -> ChannelAuth:
    """Ada may follow order 42 and join room 7 (as herself); nobody may do anything else."""
    channels = ChannelAuth()

    @channels.channel("orders.{order_id:int}")
    async def order(user: str, order_id: int) -> bool:
        return user == "ada" and order_id == 42

    @channels.channel("room.{room_id}")
    def room(user: str, room_id: str) -> dict[str, Any] | None:  # a plain def works too
        return {"id": user, "name": user.title()} if room_id == "7" else None

    @channels.channel("lobby.{lobby}")
    async def lobby(user: str, lobby: str) -> bool:  # True only: no member named
        return True

    return channels


@contextlib.asynccontextmanager
async def client_of(app: Any, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, **options)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        yield http


def auth_app(bridge: Bridge, channels: ChannelAuth | None = None) -> Starlette:
    routes = realtime_routes(bridge, channels=channels or shop_channels(), get_user=header_user)
    return Starlette(routes=routes)


def gateway_bridge() -> Bridge:
    return Bridge.from_url(f"memory://?gateway_secret={GATEWAY_SECRET}")


# -- patterns ------------------------------------------------------------------------------------


async def test_a_pattern_matches_its_channel_under_every_prefix_and_passes_its_parameters() -> None:
    channels = shop_channels()
    for name in ("orders.42", "private-orders.42", "private-encrypted-orders.42"):
        grant = await channels.grant("ada", name)
        assert (grant.pattern, dict(grant.params), grant.member) == (
            "orders.{order_id:int}",
            {"order_id": 42},
            None,
        )
    for name in ("orders.042", "orders.x", "orders.42.items", "orderss.42", "xorders.42"):
        assert channels.match(name) is None, name


async def test_a_pattern_written_with_a_prefix_matches_only_that_kind() -> None:
    channels = ChannelAuth()
    channels.add("presence-room.{room_id}", lambda user, room_id: Member(user))
    assert channels.match("presence-room.7") is not None
    for name in ("room.7", "private-room.7", "private-encrypted-room.7"):
        assert channels.match(name) is None, name


async def test_patterns_are_tried_in_the_order_declared_and_the_first_match_decides() -> None:
    asked: list[str] = []
    channels = ChannelAuth()

    @channels.channel("orders.vip")
    async def vip(user: str) -> bool:
        asked.append("vip")
        return False

    @channels.channel("orders.{order_id}")
    async def any_order(user: str, order_id: str) -> bool:
        asked.append(order_id)
        return True

    with pytest.raises(ClientAuthRefused) as refused:
        await channels.grant("ada", "private-orders.vip")
    assert (refused.value.status, refused.value.reason) == (403, "channel_refused")
    assert (await channels.grant("ada", "private-orders.7")).params == {"order_id": "7"}
    assert asked == ["vip", "7"]
    assert channels.patterns == ["orders.vip", "orders.{order_id}"]


@given(
    segment=st.text("abcXYZ019_-=@,;", min_size=1, max_size=30),
    tail=st.text("abc.", min_size=0, max_size=5),
)
def test_a_str_parameter_takes_one_whole_segment_and_never_a_dot(segment: str, tail: str) -> None:
    channels = ChannelAuth()
    channels.add("chat.{room}", lambda user, room: True)
    found = channels.match(f"private-chat.{segment}{tail}")
    if "." in tail:
        assert found is None
    else:
        assert found is not None and found[1] == {"room": segment + tail}


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("orders.{}", "is not {name}"),
        ("orders.{1st}", "is not {name}"),
        ("orders.{id:float}", "unknown converter 'float'"),
        ("orders.{a}{b}", "must be apart"),
        ("orders.{id}.{id}", "appears twice"),
        ("orders/{id}", "has characters no channel name may have"),
        ("orders.{id", "has characters no channel name may have"),
        ("presence-", "names no channel"),
    ],
)
def test_a_malformed_pattern_is_refused_when_declared(pattern: str, problem: str) -> None:
    channels = ChannelAuth()
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace(".", r"\.")):
        channels.add(pattern, lambda user, **params: True)


def test_a_callback_that_cannot_take_the_parameters_or_a_repeated_pattern_is_refused() -> None:
    channels = ChannelAuth()
    with pytest.raises(TypeError, match=r"must take \(user, order_id\)"):
        channels.add("orders.{order_id}", lambda user: True)
    channels.add("orders.{order_id}", lambda user, order_id: True)
    with pytest.raises(ValueError, match="declared twice"):
        channels.add("orders.{order_id}", lambda user, order_id: True)


@pytest.mark.parametrize(
    ("answer", "granted"),
    [
        (True, None),
        (Member("u-7", {"name": "Ada"}), Member("u-7", {"name": "Ada"})),
        ({"id": 7, "name": "Ada"}, Member("7", {"name": "Ada"})),
        ({"id": "u-7"}, Member("u-7")),
        (False, "channel_refused"),
        (None, "channel_refused"),
        ("yes", TypeError),
        (1, TypeError),
        ({"name": "Ada"}, TypeError),  # a member needs an id
        ({"id": True}, TypeError),
        ({}, TypeError),
    ],
)
async def test_what_a_callback_returns_decides_what_is_granted(
    answer: object, granted: Any
) -> None:
    channels = ChannelAuth()
    channels.add("chat.{room}", lambda user, room: answer)
    if granted is TypeError:
        with pytest.raises(TypeError, match=r"callback of channel pattern 'chat\.\{room\}'"):
            await channels.grant("ada", "private-chat.1")
    elif isinstance(granted, str):
        with pytest.raises(ClientAuthRefused) as refused:
            await channels.grant("ada", "private-chat.1")
        assert (refused.value.status, refused.value.reason) == (403, granted)
    else:
        assert (await channels.grant("ada", "private-chat.1")).member == granted


async def test_a_presence_channel_granted_without_a_member_is_refused() -> None:
    with pytest.raises(ClientAuthRefused, match="needs a member") as refused:
        await shop_channels().grant("ada", "presence-lobby.1")
    assert (refused.value.status, refused.value.reason) == (403, "member_required")


async def test_plain_callbacks_run_off_the_event_loop_and_async_ones_on_it() -> None:
    threads: dict[str, int] = {}
    channels = ChannelAuth()

    def blocking(user: str, room: str) -> bool:
        threads["def"] = threading.get_ident()
        return True

    async def awaiting(user: str, room: str) -> bool:
        threads["async def"] = threading.get_ident()
        return True

    channels.add("slow.{room}", blocking)
    channels.add("fast.{room}", awaiting)
    await channels.grant("ada", "slow.1")
    await channels.grant("ada", "fast.1")
    assert threads["async def"] == threading.get_ident()
    assert threads["def"] != threading.get_ident()


# -- client auth: each vendor's credential, checked by that vendor's side -------------------


def pusher_sdk(soketi: SoketiServer) -> pusher.Pusher:
    return pusher.Pusher(app_id=soketi.app_id, key=soketi.key, secret=soketi.secret)


def pusher_bridge(soketi: SoketiServer) -> Bridge:
    key, secret = quote(soketi.key, safe=""), quote(soketi.secret, safe="")
    return Bridge.from_url(
        f"pusher://{key}:{secret}@127.0.0.1:{soketi.port}/{soketi.app_id}?tls=false"
    )


async def test_pusher_auth_equals_the_sdks_and_lets_real_clients_into_private_and_presence(
    soketi: SoketiServer,
) -> None:
    room = unique_name("room.")
    channels = ChannelAuth()
    channels.add("room.{room_id}", lambda user, room_id: {"id": user, "name": user.title()})
    channels.add("orders.{order_id}", lambda user, order_id: user == "bob")
    sdk = pusher_sdk(soketi)
    async with (
        pusher_bridge(soketi) as bridge,
        client_of(auth_app(bridge, channels)) as http,
        PusherSocket.connect(soketi) as ada,
    ):

        async def ask(channel: str) -> httpx.Response:  # as pusher-js asks: a form POST
            form = {"socket_id": ada.socket_id, "channel_name": channel}
            return await http.post("/realtime/auth", data=form, headers=as_user("ada"))

        private = await ask(f"private-{room}")
        assert private.status_code == 200 and private.headers["cache-control"] == "no-store"
        assert private.json() == sdk.authenticate(f"private-{room}", ada.socket_id)
        await ada.subscribe(f"private-{room}", private.json()["auth"])

        presence = await ask(f"presence-{room}")
        member = {"user_id": "ada", "user_info": {"name": "Ada"}}
        assert presence.json() == sdk.authenticate(f"presence-{room}", ada.socket_id, member)
        joined = await ada.subscribe(
            f"presence-{room}", presence.json()["auth"], presence.json()["channel_data"]
        )
        assert joined["presence"]["hash"] == {"ada": {"name": "Ada"}}

        refused = await ask(f"private-orders.{unique_name()}")
        assert refused.status_code == 403 and refused.json()["error"] == "channel_refused"


async def test_ably_token_request_fetched_by_the_sdk_opens_the_granted_channel_only(
    serve_ably: ServeAbly,
) -> None:
    ably = await serve_ably()
    async with Bridge.from_url(ably.url()) as bridge:
        await bridge.publish(Event(channel="orders.42", type="order.updated", data={"n": 1}))
        await bridge.publish(Event(channel="orders.43", type="order.updated", data={"n": 2}))
        async with served(auth_app(bridge)) as url:
            browser = AblyRest(  # ably-js's authUrl, in Ably's own Python SDK
                auth_url=f"{url}/realtime/auth",
                auth_method="GET",
                auth_params={"channel": "orders.42"},
                auth_headers=as_user("ada"),
                endpoint="127.0.0.1",
                port=ably.port,
                tls=False,
                use_binary_protocol=False,
            )
            async with browser:
                [message] = (await browser.channels.get("orders.42").history()).items
                assert Event.decode(json.dumps(message.data)).data == {"n": 1}
                with pytest.raises(AblyException) as refused:
                    await browser.channels.get("orders.43").history()
                assert refused.value.code == 40160

    async with Bridge.from_url(ably.url()) as bridge, client_of(auth_app(bridge)) as http:
        answer = await http.get(
            "/realtime/auth", params={"channel": "presence-room.7"}, headers=as_user("ada")
        )
        path = f"/keys/{ably.emulator.key_name}/requestToken"
        async with httpx.AsyncClient(base_url=ably.base_url) as rest:
            details = (await rest.post(path, json=answer.json())).json()
        assert details["clientId"] == "ada"  # the member: the browser cannot be anyone else
        assert json.loads(details["capability"]) == {
            "presence-room.7": ["history", "presence", "subscribe"]
        }


async def test_a_gateway_token_opens_exactly_the_granted_channels_at_a_real_gateway() -> None:
    async with gateway_bridge() as bridge:
        for order in (42, 43):
            event = Event(channel=f"orders.{order}", type="order.updated", data={"n": order})
            await bridge.publish(event)
        await bridge.publish(Event(channel="room.7", type="room.joined", data={}))
        settings = GatewaySettings(secret=SecretStr(GATEWAY_SECRET), port=0)
        async with (
            serve_gateway(settings, feed=MemoryFeed(bridge.primary)) as gateway,
            client_of(auth_app(bridge)) as http,
            httpx.AsyncClient(base_url=gateway) as browser,
        ):
            body = {"channels": ["orders.42", "room.7"]}  # one token for both channels
            answer = await http.post("/realtime/auth", json=body, headers=as_user("ada"))
            grant = answer.json()
            assert (grant["channels"], grant["presence"]) == (["orders.42", "room.7"], True)

            def events_of(channel: str) -> Any:
                url = f"/channels/{channel}/events"
                return browser.get(url, params={"token": grant["token"]})

            page = await events_of("orders.42")
            assert page.json()["events"][0]["event"]["data"] == {"n": 42}
            assert (await events_of("room.7")).status_code == 200
            refused = await events_of("orders.43")
            assert (refused.status_code, refused.json()["error"]) == (403, "channel_not_granted")


async def test_a_supabase_jwt_verifies_with_the_projects_secret_and_names_its_channels() -> None:
    url = f"supabase://sb_secret_key@127.0.0.1:1?tls=false&jwt_secret={SUPABASE_JWT_SECRET}"
    async with Bridge.from_url(url) as bridge, client_of(auth_app(bridge)) as http:
        body = {"channel": ["private-orders.42", "presence-room.7"]}  # one token for both
        answer = await http.post("/realtime/auth", json=body, headers=as_user("ada"))
    assert answer.status_code == 200
    token = answer.json()["access_token"]
    claims = jwt.decode(token, SUPABASE_JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == "ada" and claims["user_metadata"] == {"name": "Ada"}
    assert claims["realtime_bridge"] == {"topics": ["private-orders.42", "presence-room.7"]}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-of-at-least-32-characters", algorithms=["HS256"])


async def test_a_liveblocks_token_is_signed_by_liveblocks_for_the_granted_room() -> None:
    emulator = LiveblocksEmulator()
    async with serve_liveblocks(emulator) as base_url:
        port = base_url.rsplit(":", 1)[1]
        url = f"liveblocks://{emulator.secret}@127.0.0.1:{port}?tls=false"
        async with Bridge.from_url(url) as bridge, client_of(auth_app(bridge)) as http:
            # @liveblocks/client's authEndpoint: POST {"room": ...}
            answer = await http.post(
                "/realtime/auth", json={"room": "room.7"}, headers=as_user("ada")
            )
            claims = emulator.verify_token(answer.json()["token"])
            assert (claims["uid"], claims["perms"]) == (
                "ada",
                {"room.7": ["room:read", "room:presence:write"]},
            )
            no_member = await http.post(
                "/realtime/auth", json={"room": "lobby.1"}, headers=as_user("ada")
            )
            assert (no_member.status_code, no_member.json()["error"]) == (403, "member_required")
            two = {"channels": ["room.7", "orders.42"]}
            answer = await http.post("/realtime/auth", json=two, headers=as_user("ada"))
            assert answer.status_code == 400 and "one room at a time" in answer.json()["message"]

            emulator.fail_next(status=429, retry_after=2.5)  # Liveblocks signs: it must answer
            busy = await http.post(
                "/realtime/auth", json={"room": "room.7"}, headers=as_user("ada")
            )
            assert (busy.status_code, busy.json()["error"]) == (503, "vendor_unavailable")
            assert busy.headers["retry-after"] == "3"
            assert emulator.secret not in busy.text


# -- client auth: refusals ----------------------------------------------------------------------


def refusal(what: str, user: str | None, status: int, reason: str, **request: Any) -> Any:
    return pytest.param(user, request, status, reason, id=what)


JSON = {"content-type": "application/json"}
REFUSALS = [
    refusal("no user", None, 401, "unauthenticated", json={"channel": "orders.42"}),
    refusal("no pattern", "ada", 403, "no_channel_pattern", json={"channel": "invoices.1"}),
    refusal("callback false", "bob", 403, "channel_refused", json={"channel": "orders.42"}),
    refusal("callback none", "ada", 403, "channel_refused", json={"channel": "room.8"}),
    refusal("not an int", "ada", 403, "no_channel_pattern", json={"channel": "orders.x"}),
    refusal("no member", "ada", 403, "member_required", json={"channel": "presence-lobby.1"}),
    refusal(
        "one of two", "ada", 403, "channel_refused", json={"channels": ["orders.42", "orders.1"]}
    ),
    refusal("bad name", "ada", 400, "bad_request", json={"channel": "orders 42"}),
    refusal("no channel", "ada", 400, "bad_request", json={"socket_id": "1.2"}),
    refusal("not a string", "ada", 400, "bad_request", json={"channel": 42}),
    refusal("json array", "ada", 400, "bad_request", json=["orders.42"]),
    refusal("bad json", "ada", 400, "bad_request", content=b"{", headers=JSON),
    refusal(
        "too many", "ada", 400, "bad_request", json={"channel": [f"lobby.{n}" for n in range(101)]}
    ),
    refusal("multipart", "ada", 415, "unsupported_media_type", files={"channel": b"orders.42"}),
    refusal("huge", "ada", 413, "too_large", json={"channel": "x" * 70_000}),
]


@pytest.mark.parametrize(("user", "request_", "status", "reason"), REFUSALS)
async def test_client_auth_refuses_by_default_with_a_reason(
    user: str | None, request_: dict[str, Any], status: int, reason: str
) -> None:
    async with gateway_bridge() as bridge, client_of(auth_app(bridge)) as http:
        headers = {**request_.pop("headers", {}), **(as_user(user) if user else {})}
        answer = await http.post("/realtime/auth", headers=headers, **request_)
    assert (answer.status_code, answer.json()["error"]) == (status, reason), answer.text
    assert answer.json()["message"] and answer.headers["cache-control"] == "no-store"


async def test_pusher_refusals_name_the_vendors_rule(soketi: SoketiServer) -> None:
    async with pusher_bridge(soketi) as bridge, client_of(auth_app(bridge)) as http:
        cases = {
            "public": {"socket_id": "1.2", "channel_name": "orders.42"},
            "socket_id": {"socket_id": "1.2:evil", "channel_name": "private-orders.42"},
            "one channel": {"socket_id": "1.2", "channel": ["private-orders.42", "private-room.7"]},
        }
        messages = {}
        for case, form in cases.items():
            answer = await http.post("/realtime/auth", data=form, headers=as_user("ada"))
            assert (answer.status_code, answer.json()["error"]) == (400, "bad_request"), case
            messages[case] = answer.json()["message"]
    assert "public channels need no authorisation" in messages["public"]
    assert "is not a Pusher socket id" in messages["socket_id"]
    assert "pusher credentials name one channel" in messages["one channel"]


async def test_channels_granted_as_different_members_are_refused_together() -> None:
    channels = ChannelAuth()
    channels.add("room.{room}", lambda user, room: Member(f"{user}-{room}"))
    async with gateway_bridge() as bridge, client_of(auth_app(bridge, channels)) as http:
        body = {"channels": ["room.1", "room.2"]}
        answer = await http.post("/realtime/auth", json=body, headers=as_user("ada"))
        assert (answer.status_code, answer.json()["error"]) == (403, "member_conflict")
        same = {"channels": ["room.1", "presence-room.1"]}
        answer = await http.post("/realtime/auth", json=same, headers=as_user("ada"))
        assert answer.status_code == 200 and answer.json()["presence"] is True


async def test_get_user_may_be_async_and_a_get_request_works_as_ablys_auth_url_sends_it() -> None:
    async def session_user(request: Request) -> str | None:
        return {"s3cr3t": "ada"}.get(request.cookies.get("session", ""))

    async with gateway_bridge() as bridge:
        routes = realtime_routes(bridge, channels=shop_channels(), get_user=session_user)
        async with client_of(Starlette(routes=routes)) as http:
            anonymous = await http.get("/realtime/auth", params={"channel": "orders.42"})
            http.cookies.set("session", "s3cr3t")
            signed_in = await http.get("/realtime/auth", params={"channel": "orders.42"})
    assert anonymous.status_code == 401
    assert signed_in.status_code == 200 and signed_in.json()["channels"] == ["orders.42"]


def test_an_endpoint_on_a_bridge_that_cannot_authorise_browsers_fails_when_built() -> None:
    bridge = Bridge.from_url("memory://")  # no gateway_secret: no tokens to give
    with pytest.raises(CapabilityNotSupported, match="client_auth"):
        auth_endpoint(bridge, shop_channels(), get_user=header_user)
    supabase = Bridge.from_url(
        f"supabase://sb_secret_key@127.0.0.1:1?jwt_secret={SUPABASE_JWT_SECRET}"
    )
    with pytest.raises(CapabilityNotSupported, match="webhooks"):
        webhook_endpoint(supabase, print)
    with pytest.raises(TypeError, match="go together"):
        realtime_routes(bridge, channels=shop_channels())
    with pytest.raises(TypeError, match="nothing to route"):
        realtime_routes(bridge)


# -- webhooks -----------------------------------------------------------------------------------


async def test_soketis_signed_webhooks_reach_the_handler_normalised(
    soketi_factory: Callable[..., SoketiServer],
) -> None:
    received: asyncio.Queue[WebhookEvent] = asyncio.Queue()
    sock = bind_free_port()
    soketi = soketi_factory(webhook_url=f"{url_of(sock)}/realtime/webhooks")
    channels = ChannelAuth()
    channels.add("room.{room_id}", lambda user, room_id: Member(user, {"name": user.title()}))
    async with pusher_bridge(soketi) as bridge:
        routes = realtime_routes(
            bridge, channels=channels, get_user=header_user, on_webhook=received.put
        )
        room = unique_name("presence-room.")
        async with (
            served(Starlette(routes=routes), sock) as url,
            httpx.AsyncClient(base_url=url) as http,
            PusherSocket.connect(soketi) as ada,
        ):
            form = {"socket_id": ada.socket_id, "channel_name": room}
            grant = (await http.post("/realtime/auth", data=form, headers=as_user("ada"))).json()
            await ada.subscribe(room, grant["auth"], grant["channel_data"])
            seen: dict[WebhookKind, WebhookEvent] = {}
            while len(seen) < 2:
                event = await asyncio.wait_for(received.get(), PATIENCE)
                seen[event.kind] = event
    occupied, added = seen[WebhookKind.CHANNEL_OCCUPIED], seen[WebhookKind.MEMBER_ADDED]
    assert (occupied.channel, occupied.vendor) == (room, "pusher")
    assert (added.channel, added.user_id) == (room, "ada")


def ably_webhook(body: bytes, *, key_id: str = "key", secret: str = ABLY_SECRET) -> dict[str, str]:
    """Headers of a batched webhook as Ably signs it: base64 HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Ably-Key": key_id,
        "X-Ably-Signature": base64.b64encode(digest).decode(),
    }


ABLY_ITEMS = {
    "items": [
        {
            "webhookId": "wh1",
            "source": "channel.lifecycle",
            "timestamp": 1_700_000_000_000,
            "name": "channel.opened",
            "data": {"channelId": "orders.42"},
        },
        {
            "webhookId": "wh1",
            "source": "channel.presence",
            "timestamp": 1_700_000_000_001,
            "name": "presence.message",
            "data": {
                "channelId": "presence-room.7",
                "presence": [{"clientId": "ada", "action": 2}],
            },
        },
    ]
}


async def test_an_ably_webhook_is_verified_before_anything_reaches_the_handler() -> None:
    handled: list[WebhookEvent] = []

    async def on_webhook(event: WebhookEvent) -> None:
        handled.append(event)

    bridge = Bridge.from_url(f"ably://app.key:{ABLY_SECRET}@127.0.0.1:1?tls=false")
    app = Starlette(routes=realtime_routes(bridge, on_webhook=on_webhook))
    body = json.dumps(ABLY_ITEMS).encode()
    async with bridge, client_of(app) as http:
        forged = await http.post(
            "/realtime/webhooks", content=body, headers=ably_webhook(body, secret="guess")
        )
        tampered = await http.post(
            "/realtime/webhooks", content=body.replace(b"ada", b"eve"), headers=ably_webhook(body)
        )
        unsigned = await http.post("/realtime/webhooks", content=body)
        assert handled == []
        for refused in (forged, tampered, unsigned):
            assert (refused.status_code, refused.json()["error"]) == (401, "invalid_webhook")
        assert "X-Ably-Signature does not match" in forged.json()["message"]
        assert ABLY_SECRET not in forged.text

        accepted = await http.post("/realtime/webhooks", content=body, headers=ably_webhook(body))
    assert (accepted.status_code, accepted.json()) == (200, {"received": 2})
    assert [(e.kind, e.channel, e.user_id) for e in handled] == [
        (WebhookKind.CHANNEL_OCCUPIED, "orders.42", None),
        (WebhookKind.MEMBER_ADDED, "presence-room.7", "ada"),
    ]


async def test_a_failing_handler_answers_500_so_the_vendor_delivers_again() -> None:
    handled: list[str] = []

    def on_webhook(event: WebhookEvent) -> None:  # a plain def: runs in a worker thread
        handled.append(event.name)
        raise RuntimeError("database down")

    bridge = Bridge.from_url(f"ably://app.key:{ABLY_SECRET}@127.0.0.1:1?tls=false")
    app = Starlette(routes=realtime_routes(bridge, on_webhook=on_webhook))
    body = json.dumps(ABLY_ITEMS).encode()
    async with bridge, client_of(app, raise_app_exceptions=False) as http:
        answer = await http.post("/realtime/webhooks", content=body, headers=ably_webhook(body))
    assert answer.status_code == 500
    assert handled == ["channel.opened"]  # the rest of the delivery waits for the retry


async def test_a_webhook_body_over_the_limit_is_refused_unread() -> None:
    bridge = Bridge.from_url(f"ably://app.key:{ABLY_SECRET}@127.0.0.1:1?tls=false")
    app = Starlette(
        routes=[Route("/hook", webhook_endpoint(bridge, print, max_body=1024), methods=["POST"])]
    )
    body = json.dumps({"items": [], "padding": "x" * 2000}).encode()
    async with bridge, client_of(app) as http:
        answer = await http.post("/hook", content=body, headers=ably_webhook(body))
    assert (answer.status_code, answer.json()["error"]) == (413, "too_large")


# -- the lifespan ------------------------------------------------------------------------------


class ClosingFake(FakeAdapter):
    """A fake adapter that counts how often it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


@pytest.fixture
def shop_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "shop.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)")
    yield path


async def test_the_lifespan_runs_the_relay_around_the_apps_own_and_closes_everything(
    shop_db: Path,
) -> None:
    fake = ClosingFake()
    outbox = Outbox(f"sqlite:///{shop_db}", bridge=Bridge(fake))
    steps: list[str] = []

    @contextlib.asynccontextmanager
    async def own_lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        steps.append("app started")
        yield {"greeting": "hello"}
        steps.append(f"app stopping, bridge closed {fake.closed} times")

    async def pay(request: Request) -> JSONResponse:
        order = int(request.path_params["order_id"])
        with contextlib.closing(sqlite3.connect(shop_db)) as db, db:  # one transaction
            db.execute("INSERT INTO orders VALUES (?, 'paid')", (order,))
            event = Event(channel=f"orders.{order}", type="order.paid", data={"id": order})
            await outbox.enqueue(db, event)
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(
        routes=[Route("/orders/{order_id:int}/pay", pay, methods=["POST"])],
        lifespan=realtime_lifespan(outbox, lifespan=own_lifespan, migrate=True, poll_interval=0.05),
    )
    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/orders/42/pay")
        assert answer.json() == {"greeting": "hello"}  # the app's own state, passed through

        async def published() -> bool:
            return bool(fake.find(channel="orders.42"))

        await wait_until(published, within=PATIENCE)
    [event] = fake.published
    assert (event.type, event.data, event.seq) == ("order.paid", {"id": 42}, 1)
    assert steps == ["app started", "app stopping, bridge closed 0 times"]
    assert fake.closed == 1  # after the app's own lifespan ended
    async with Outbox(f"sqlite:///{shop_db}") as reader:
        status = await reader.status()
    assert (status.pending, status.sent) == (0, 1)


async def test_an_app_whose_relay_cannot_start_does_not_start_and_leaves_nothing_open(
    tmp_path: Path,
) -> None:
    fake = ClosingFake()
    outbox = Outbox(f"sqlite:///{tmp_path / 'never.db'}", bridge=Bridge(fake))
    app = Starlette(lifespan=realtime_lifespan(outbox, no_such_option=1))
    with pytest.raises(TypeError, match="no_such_option"):
        async with app.router.lifespan_context(app):  # what the server runs at startup
            pass
    assert fake.closed == 1
    with pytest.raises(
        TypeError, match=r"relay options \['poll_interval'\] given with relay=False"
    ):
        realtime_lifespan(outbox, relay=False, poll_interval=0.1)
