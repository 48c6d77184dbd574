"""The FastAPI layer: the same endpoints on an ``APIRouter``, the user found by a dependency.

The first test is the whole path a FastAPI app takes, for real: an order paid
in one PostgreSQL transaction with its event, the relay run by the app's
lifespan (woken by NOTIFY) publishing it, and a browser that got its token from
the app's auth route reading it at the gateway the app mounts.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from asgi_serving import served
from fastapi import Depends, FastAPI, Header, HTTPException
from outbox_fixtures import wait_until
from pydantic import SecretStr

from realtime_bridge import Bridge, Event, WebhookKind
from realtime_bridge.gateway import GatewaySettings, MemoryFeed, create_app
from realtime_bridge.integrations.channels import ChannelAuth
from realtime_bridge.integrations.fastapi import realtime_lifespan, realtime_router
from realtime_bridge.outbox import Outbox
from realtime_bridge.webhooks import WebhookEvent

pytest_plugins = ["conftest_outbox"]

SECRET = "fastapi-test-gateway-secret-32-bytes-long"
PATIENCE = 10.0
USERS = {"token-ada": "ada", "token-bob": "bob"}


async def current_user(authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The app's own dependency: a bearer token names the user; none is anonymous."""
    if authorization is None:
        return None
    user = USERS.get(authorization.removeprefix("Bearer "))
    if user is None:
        raise HTTPException(status_code=401, detail="unknown token")
    return user


def signed_in(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-{user}"}


def order_channels() -> ChannelAuth:
    channels = ChannelAuth()

    @channels.channel("orders.{order_id:int}")
    async def order(user: str, order_id: int) -> bool:
        return user == "ada" and order_id == 42

    return channels


@contextlib.asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        yield http


async def test_an_order_paid_in_one_transaction_reaches_a_browser_through_the_lifespan_relay(
    pg_url: str,
) -> None:
    connection = await asyncpg.connect(pg_url)
    await connection.execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
    await connection.close()
    bridge = Bridge.from_url(f"memory://?gateway_secret={SECRET}")
    outbox = Outbox(pg_url, bridge=bridge)
    gateway = create_app(GatewaySettings(secret=SecretStr(SECRET)), feed=MemoryFeed(bridge.primary))

    @contextlib.asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.state.gateway.aclose()  # a mounted app's own lifespan does not run

    app = FastAPI(lifespan=realtime_lifespan(outbox, lifespan=own_lifespan))
    app.include_router(realtime_router(bridge, channels=order_channels(), get_user=current_user))
    app.mount("/gateway", gateway)

    @app.post("/orders/{order_id}/pay")
    async def pay(order_id: int) -> dict[str, int]:
        conn = await asyncpg.connect(pg_url)
        try:
            async with conn.transaction():  # the order and its event: both or neither
                await conn.execute("INSERT INTO orders VALUES ($1, 'paid')", order_id)
                event = Event(
                    channel=f"orders.{order_id}", type="order.paid", data={"id": order_id}
                )
                await outbox.enqueue(conn, event)
        finally:
            await conn.close()
        return {"paid": order_id}

    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:
        grant = await http.get(
            "/realtime/auth", params={"channel": "orders.42"}, headers=signed_in("ada")
        )
        token = grant.json()["token"]
        assert (await http.post("/orders/42/pay")).json() == {"paid": 42}
        found: list[dict[str, Any]] = []

        async def delivered() -> bool:
            page = await http.get("/gateway/channels/orders.42/events", params={"token": token})
            found[:] = page.json()["events"]
            return bool(found)

        await wait_until(delivered, within=PATIENCE)
    [entry] = found
    assert (entry["event"]["type"], entry["event"]["data"], entry["event"]["seq"]) == (
        "order.paid",
        {"id": 42},
        1,
    )
    async with Outbox(pg_url) as reader:
        assert (await reader.status()).sent == 1


async def test_get_user_is_a_fastapi_dependency_and_router_options_apply() -> None:
    async def needs_csrf(x_csrf: Annotated[str | None, Header()] = None) -> None:
        if x_csrf != "ok":
            raise HTTPException(status_code=403, detail="csrf")

    async with Bridge.from_url(f"memory://?gateway_secret={SECRET}") as bridge:
        router = realtime_router(
            bridge,
            channels=order_channels(),
            get_user=current_user,
            dependencies=[Depends(needs_csrf)],
        )
        app = FastAPI()
        app.include_router(router, prefix="/api")
        async with client_of(app) as http:

            async def ask(headers: dict[str, str]) -> httpx.Response:
                body = {"channel": "orders.42"}
                return await http.post("/api/realtime/auth", json=body, headers=headers)

            csrf = {"X-CSRF": "ok"}
            granted = await ask({**csrf, **signed_in("ada")})
            refused = await ask({**csrf, **signed_in("bob")})
            anonymous = await ask(csrf)
            unknown = await ask({**csrf, "Authorization": "Bearer forged"})
            no_csrf = await ask(signed_in("ada"))
    assert granted.status_code == 200 and granted.json()["channels"] == ["orders.42"]
    assert (refused.status_code, refused.json()["error"]) == (403, "channel_refused")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "unauthenticated")
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "unknown token"})
    assert (no_csrf.status_code, no_csrf.json()) == (403, {"detail": "csrf"})


async def test_a_pusher_webhook_reaches_the_handler_through_the_router() -> None:
    handled: list[WebhookEvent] = []
    bridge = Bridge.from_url("pusher://app-key:app-secret@127.0.0.1:6001/1?tls=false")
    app = FastAPI()
    app.include_router(realtime_router(bridge, on_webhook=handled.append))
    entry = {"name": "member_added", "channel": "presence-room.7", "user_id": "ada"}
    body = json.dumps({"time_ms": int(time.time() * 1000), "events": [entry]}).encode()
    signature = hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    headers = {"X-Pusher-Key": "app-key", "X-Pusher-Signature": signature}
    async with bridge, client_of(app) as http:
        forged = await http.post(
            "/realtime/webhooks", content=body, headers={**headers, "X-Pusher-Signature": "0" * 64}
        )
        accepted = await http.post("/realtime/webhooks", content=body, headers=headers)
    assert forged.status_code == 401 and accepted.json() == {"received": 1}
    [event] = handled
    assert (event.kind, event.channel, event.user_id) == (
        WebhookKind.MEMBER_ADDED,
        "presence-room.7",
        "ada",
    )


def test_the_openapi_schema_lists_the_routes_once_each_without_warnings() -> None:
    bridge = Bridge.from_url("pusher://app-key:app-secret@127.0.0.1:6001/1?tls=false")
    app = FastAPI()
    router = realtime_router(
        bridge, channels=order_channels(), get_user=current_user, on_webhook=print
    )
    app.include_router(router)
    paths = app.openapi()["paths"]  # a duplicate operation id would warn (an error here)
    assert {path: sorted(methods) for path, methods in paths.items()} == {
        "/realtime/auth": ["get", "post"],
        "/realtime/webhooks": ["post"],
    }


def test_the_router_is_refused_when_it_would_route_nothing_or_lack_the_user() -> None:
    bridge = Bridge.from_url("pusher://app-key:app-secret@127.0.0.1:6001/1?tls=false")
    with pytest.raises(TypeError, match="nothing to route"):
        realtime_router(bridge)
    with pytest.raises(TypeError, match="go together"):
        realtime_router(bridge, channels=order_channels())
