"""Serving the gateway with uvicorn: in-process for tests and embedding, or in the foreground.

The server ends every open stream and WebSocket as soon as it starts to shut
down. SSE streams end, and WebSockets close with 1012 "service restart", so
clients reconnect (to another process) with their last ids. Uvicorn would
otherwise wait out its grace period on connections that never finish by
themselves.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from .._serving import bind, serving, url_of
from ..errors import ConfigurationError
from .app import create_app
from .feed import Feed
from .service import Gateway
from .settings import GatewaySettings

__all__ = ["GatewayServer", "bind", "serve_gateway", "server_for", "url_of"]

#: Seconds a shutdown waits for connections to finish their last write.
GRACE = 5


class GatewayServer(uvicorn.Server):
    """A uvicorn server that ends the gateway's connections when it begins to shut down."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Our goodbyes first (WebSockets: 1012 "shutdown"), then uvicorn's, for the rest.
        self.gateway.close_sessions()
        await self.gateway.wait_closed(GRACE)
        await super().shutdown(sockets)


def server_for(app: Starlette, *, log_level: str = "warning") -> GatewayServer:
    """A uvicorn server for a gateway ``app``; start it with ``serve(sockets=[bind(...)])``."""
    gateway: Gateway = app.state.gateway
    heartbeat = gateway.settings.heartbeat
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=GRACE,
        # Protocol pings notice a dead client; the JSON heartbeat lets JavaScript notice us.
        ws_ping_interval=heartbeat,
        ws_ping_timeout=heartbeat,
    )
    return GatewayServer(config, gateway)


@contextlib.asynccontextmanager
async def serve_gateway(
    settings: GatewaySettings | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    app: Starlette | None = None,
    feed: Feed | None = None,
) -> AsyncIterator[str]:
    """Serve a gateway in this event loop; yield its base URL (``http://127.0.0.1:PORT``).

    ``host`` and ``port`` default to the settings' (port 0: a free one)::

        async with serve_gateway(GatewaySettings(redis_url=..., secret=..., port=0)) as url:
            ...

    ``app`` serves an app ``create_app`` already built (its settings then apply).
    ``feed`` is passed to ``create_app`` (say, ``MemoryFeed(adapter)``).
    On exit the server stops: open streams end, WebSockets close with 1012,
    presence members leave, and the Redis connections close.
    """
    if app is None:
        app = create_app(settings, feed=feed)
    settings = app.state.gateway.settings
    server = server_for(app)
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    async with serving(server, sock, what="the gateway", where=url_of(sock)) as url:
        yield url
