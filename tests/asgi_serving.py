"""Serving a test's ASGI app with uvicorn, lifespan and all, in the test's own event loop.

``httpx.ASGITransport`` calls an app directly but never runs its lifespan; the
integration tests that need the lifespan (the relay it runs, the state it
yields) serve the app for real, on a free port of 127.0.0.1, through the same
``bind`` and ``serving`` the package's own servers use.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from realtime_bridge._serving import bind, serving, url_of

__all__ = ["bind_free_port", "served", "url_of"]


def bind_free_port() -> socket.socket:
    """A socket on a free port, bound now: its URL is known before the app exists."""
    return bind("127.0.0.1", 0)


@contextlib.asynccontextmanager
async def served(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve ``app`` (its lifespan on) until the block exits; yield its base URL."""
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    sock = sock or bind_free_port()
    async with serving(server, sock, what="the test app", where=url_of(sock)) as url:
        yield url
