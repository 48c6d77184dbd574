"""Serving an emulator over HTTP with uvicorn: in-process for tests, or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from . import AblyEmulator

__all__ = ["bind", "missing_extra", "serve", "server_for", "url_of"]

_EXTRA_MODULES = {"starlette", "uvicorn"}


def missing_extra(exc: ModuleNotFoundError) -> ConfigurationError:
    """The one-line error for a missing ``emulator`` extra (or re-raise any other import bug)."""
    module = (exc.name or "").partition(".")[0]
    if module not in _EXTRA_MODULES:
        raise exc
    return ConfigurationError(
        f"the Ably emulator needs {module}, from the 'emulator' extra: "
        "pip install 'realtime-bridge[emulator]'"
    )


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise missing_extra(exc) from None
    return uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: a free one, chosen now)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without, a small response waits ~40 ms on
        # Nagle's algorithm and the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def server_for(emulator: AblyEmulator, *, log_level: str = "warning") -> Any:
    """A uvicorn server for ``emulator``; start it with ``serve(sockets=[bind(...)])``."""
    uvicorn = _uvicorn()
    config = uvicorn.Config(
        emulator.app,
        lifespan="off",
        proxy_headers=False,  # plain HTTP, whatever X-Forwarded-Proto says: Basic stays refused
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


@contextlib.asynccontextmanager
async def serve(
    emulator: AblyEmulator, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``emulator`` on ``host:port`` (0: a free port) in this event loop; yield its URL.

    ::

        async with serve(AblyEmulator()) as base_url:  # e.g. "http://127.0.0.1:53817"
            ...

    The server stops (open connections closed) when the block exits.
    """
    server = server_for(emulator)
    sock = bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise ConfigurationError(f"the Ably emulator did not start on {host}:{port}")
            await asyncio.sleep(0.005)
        yield url_of(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
