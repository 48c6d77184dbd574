"""``create_app(settings)``: the gateway as an ASGI app, to serve or to mount in your own.

``realtime-bridge gateway`` serves it with uvicorn. To embed it (say under
``/realtime`` in a Starlette or FastAPI app), mount it and close its
``Gateway`` when your app stops. A mounted app's own lifespan does not run,
and the gateway connects to Redis lazily, so nothing else is needed::

    gateway_app = create_app(GatewaySettings(redis_url=..., secret=...))
    app = Starlette(routes=[Mount("/realtime", gateway_app)], lifespan=...)
    # in the lifespan, on shutdown: await gateway_app.state.gateway.aclose()

Call ``gateway.close_sessions()`` when the server *starts* to shut down, so
open streams end at once. ``serve_gateway`` and the CLI do this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from ..errors import VendorUnavailable
from .catchup import CatchUpEndpoint
from .feed import Feed
from .service import Gateway
from .settings import GatewaySettings
from .sse import SseEndpoint
from .ws import WebSocketEndpoint

__all__ = ["create_app"]


def create_app(settings: GatewaySettings | None = None, *, feed: Feed | None = None) -> Starlette:
    """The gateway's ASGI app; ``app.state.gateway`` is its ``Gateway``.

    Checks the configuration now (``ConfigurationError``), without connecting.
    ``feed`` replaces the Redis adapter named by the settings, e.g.
    ``MemoryFeed(adapter)`` to serve a memory adapter of this process.
    """
    gateway = Gateway(settings if settings is not None else GatewaySettings(), feed=feed)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.aclose()

    async def health(request: Request) -> JSONResponse:
        try:
            await gateway.ping()
        except VendorUnavailable:
            return JSONResponse({"status": "redis_unavailable", **gateway.stats()}, 503)
        return JSONResponse({"status": "ok", **gateway.stats()})

    routes = [
        Route("/sse", SseEndpoint(gateway), methods=["GET"]),
        WebSocketRoute("/ws", WebSocketEndpoint(gateway)),
        Route("/channels/{channel}/events", CatchUpEndpoint(gateway).__call__, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/realtime-bridge.js", browser_helper, methods=["GET"]),
    ]
    middleware = []
    if gateway.settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=gateway.settings.cors_origins,
                allow_methods=["GET"],
                allow_headers=["Authorization", "Last-Event-ID"],
                max_age=600,
            )
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.gateway = gateway
    return app


@cache
def _browser_helper_source() -> bytes:
    return resources.files(__package__).joinpath("static", "realtime-bridge.js").read_bytes()


async def browser_helper(request: Request) -> Response:
    """The optional browser helper (``static/realtime-bridge.js``), served from the package."""
    return Response(
        _browser_helper_source(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600"},
    )
