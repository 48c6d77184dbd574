"""The live demo: a shop writes orders database-first, and a browser page shows them arrive.

Everything runs in this process, with nothing to install or start:

```
Shop.step ── one transaction: order row + outbox row ──▶ SQLite (a temporary file)
relay (a task) ── claims committed rows ──▶ Bridge ──▶ memory:// adapter
gateway (MemoryFeed) ── SSE ──▶ the page at http://127.0.0.1:8765/
```

With ``--postgres`` and ``--redis`` the same demo runs on PostgreSQL and
Redis: the relay publishes to the Redis adapter, and the gateway reads the
Redis streams, exactly as separate processes would.

The page is served by the same app as the gateway (mounted at
``/realtime``), so the browser needs no CORS. Its other two routes are what
a real backend offers beside the gateway: ``/token`` hands out a gateway
token (``bridge.authorize``), and ``/state`` answers the re-fetch a client
makes when the gateway tells it to (``reset``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Self

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route

from ..adapters.memory import MemoryAdapter
from ..bridge import Bridge
from ..events import Event
from ..gateway.app import create_app
from ..gateway.memory_feed import MemoryFeed
from ..gateway.server import serve_gateway
from ..gateway.service import Gateway
from ..gateway.settings import GatewaySettings
from ..outbox import Outbox
from ..outbox.sqlite import SqliteDatabase
from .shop import CHANNEL, Shop

__all__ = ["DemoOptions", "LiveDemo"]

#: The gateway's Redis key prefix when the demo runs on Redis: its keys stay apart.
REDIS_PREFIX = "rbdemo"


@dataclass(frozen=True)
class DemoOptions:
    """What ``realtime-bridge demo`` was asked for."""

    #: ``postgresql://...``, or None for a SQLite file in a temporary directory.
    database_url: str | None = None
    #: ``redis://...``, or None for the memory adapter.
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    #: Seconds between two domain writes.
    interval: float = 0.5
    #: Seconds between gateway heartbeats (the page shows them).
    heartbeat: float = 10.0
    seed: int | None = None


class LiveDemo:
    """The demo's running parts: database, shop, relay, Bridge and the gateway's feed."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.secret = secrets.token_urlsafe(32)
        #: Every event the shop committed, in commit order.
        self.written: list[Event] = []
        #: When the demo started, and the most browsers it served at once.
        self.started = datetime.now(UTC)
        self.peak_clients = 0
        self._gateways: list[Gateway] = []
        self._scratch: Path | None = None
        self._stack = contextlib.AsyncExitStack()
        self.adapter_url = self._adapter_url()
        self.bridge = Bridge.from_url(self.adapter_url)
        self.feed = (
            MemoryFeed(self.bridge.primary)
            if isinstance(self.bridge.primary, MemoryAdapter)
            else None
        )
        self.outbox: Outbox | None = None
        self.shop: Shop | None = None

    def _adapter_url(self) -> str:
        if self.options.redis_url is None:
            return f"memory://?history=100000&gateway_secret={self.secret}"
        prefix = f"{REDIS_PREFIX}-{secrets.token_hex(4)}"
        joiner = "&" if "?" in self.options.redis_url else "?"
        return f"{self.options.redis_url}{joiner}prefix={prefix}&gateway_secret={self.secret}"

    @property
    def database_url(self) -> str:
        assert self.outbox is not None, "the demo has not started"
        return self.outbox.database_url

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        database_url = self.options.database_url
        if database_url is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="realtime-bridge-demo-"))
            self._stack.callback(shutil.rmtree, self._scratch, ignore_errors=True)
            database_url = f"sqlite:///{self._scratch / 'demo.db'}"
        await self._stack.enter_async_context(self.bridge)
        self._stack.push_async_callback(self._forget_redis_keys)
        self.outbox = Outbox(database_url, bridge=self.bridge)
        self._stack.push_async_callback(self.outbox.aclose)
        await self.outbox.migrate()
        self.relay = self.outbox.relay(poll_interval=0.2, batch_size=200)
        await self._stack.enter_async_context(self.relay)
        self.shop = Shop(self.outbox, seed=self.options.seed)
        await self.shop.open()
        self._stack.push_async_callback(self.shop.aclose)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def write(self, count: int) -> list[Event]:
        """Commit ``count`` domain changes, one transaction each, ``interval`` apart."""
        assert self.shop is not None, "the demo has not started"
        written: list[Event] = []
        for n in range(count):
            if n:
                await asyncio.sleep(self.options.interval)
            event = await self.shop.step()
            self.written.append(event)
            written.append(event)
            if isinstance(self.relay.database, SqliteDatabase):
                self.relay.database.notify()  # PostgreSQL's trigger NOTIFYs by itself
        return written

    async def write_forever(self) -> None:
        while True:
            await self.write(1)
            await asyncio.sleep(self.options.interval)

    async def settled(self, within: float = 30.0) -> None:
        """Wait until the relay has published everything written (none pending)."""
        assert self.outbox is not None
        deadline = time.monotonic() + within
        while (await self.outbox.status()).pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the relay did not publish everything within {within} s")
            await asyncio.sleep(0.05)

    # -- the web side ---------------------------------------------------------------------

    def app(self) -> Starlette:
        """The page, its token and state routes, and a fresh gateway mounted at ``/realtime``."""
        settings = GatewaySettings(
            secret=SecretStr(self.secret),
            heartbeat=self.options.heartbeat,
            redis_url=SecretStr(self.adapter_url if self.feed is None else "redis://unused"),
        )
        gateway_app = create_app(settings, feed=self.feed)
        gateway: Gateway = gateway_app.state.gateway
        self._gateways.append(gateway)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            try:
                yield
            finally:
                self._gateways.remove(gateway)
                await gateway.aclose()  # a mounted app's own lifespan does not run

        app = Starlette(
            routes=[
                Route("/", self._page, methods=["GET"]),
                Route("/token", self._token, methods=["GET"]),
                Route("/state", self._state, methods=["GET"]),
                Mount("/realtime", gateway_app),
            ],
            lifespan=lifespan,
        )
        app.state.gateway = gateway  # what the gateway's server closes first on shutdown
        return app

    def count_clients(self) -> int:
        """Browsers connected now (and keep the peak, for the cost comparison)."""
        clients = sum(len(gateway.sessions) for gateway in self._gateways)
        self.peak_clients = max(self.peak_clients, clients)
        return clients

    async def cost_comparison(self) -> str:
        """What each vendor would bill for this run's traffic, measured from the outbox.

        The same path a team takes in staging (``realtime-bridge costs``): the
        outbox's sent rows, with the browsers the demo served as the fan-out.
        """
        from ..costs import Period, Subscribers, estimate, render_summary, traffic_from_outbox

        clients = max(1, self.peak_clients)
        period = Period(self.started, max(datetime.now(UTC), self.started + timedelta(seconds=1)))
        traffic = await traffic_from_outbox(
            self.database_url,
            period,
            subscribers=Subscribers.sampled({CHANNEL: clients}, default=1.0),
            peak_connections=clients,
        )
        return render_summary(estimate(traffic))

    def serving(self, port: int | None = None) -> contextlib.AbstractAsyncContextManager[str]:
        """Serve the page and the gateway until the block exits; yields the base URL."""
        port = self.options.port if port is None else port
        return serve_gateway(app=self.app(), host=self.options.host, port=port)

    async def _page(self, request: Request) -> HTMLResponse:
        page = resources.files(__package__).joinpath("static", "index.html").read_text("utf-8")
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def _token(self, request: Request) -> JSONResponse:
        """What your API would do after checking the user's session."""
        return JSONResponse(self.bridge.authorize(CHANNEL), headers={"Cache-Control": "no-store"})

    async def _state(self, request: Request) -> JSONResponse:
        assert self.shop is not None
        orders: list[dict[str, Any]] = [o.model_dump() for o in await self.shop.orders()]
        return JSONResponse(
            {"channel": CHANNEL, "orders": orders}, headers={"Cache-Control": "no-store"}
        )

    async def _forget_redis_keys(self) -> None:
        """On Redis, delete the demo's keys (its prefix is its own): a demo leaves nothing."""
        if self.feed is not None:
            return
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.options.redis_url or "")
        try:
            prefix = self.adapter_url.split("prefix=", 1)[1].split("&", 1)[0]
            async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                await client.delete(key)
        finally:
            await client.aclose()
