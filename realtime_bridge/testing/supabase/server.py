"""Serving the Supabase emulator with uvicorn: in-process for tests, or in the foreground.

The socket helpers are the Ably emulator's (``bind`` sets TCP_NODELAY on
the listening socket, which accepted connections inherit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError
from ..ably.server import bind, url_of

if TYPE_CHECKING:
    from . import SupabaseEmulator

__all__ = ["bind", "missing_extra", "serve", "server_for", "url_of"]

_EXTRA_MODULES = {"starlette", "uvicorn"}


def missing_extra(exc: ModuleNotFoundError) -> ConfigurationError:
    """The one-line error for a missing ``emulator`` extra (or re-raise any other import bug)."""
    module = (exc.name or "").partition(".")[0]
    if module not in _EXTRA_MODULES:
        raise exc
    return ConfigurationError(
        f"the Supabase emulator needs {module}, from the 'emulator' extra: "
        "pip install 'realtime-bridge[emulator]'"
    )


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise missing_extra(exc) from None
    return uvicorn


def server_for(emulator: SupabaseEmulator, *, log_level: str = "warning") -> Any:
    """A uvicorn server for ``emulator``; start it with ``serve(sockets=[bind(...)])``."""
    uvicorn = _uvicorn()
    config = uvicorn.Config(
        emulator.app,
        lifespan="off",
        proxy_headers=False,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


@contextlib.asynccontextmanager
async def serve(
    emulator: SupabaseEmulator, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``emulator`` on ``host:port`` (0: a free port) in this event loop; yield its URL.

    ::

        async with serve(SupabaseEmulator()) as base_url:  # e.g. "http://127.0.0.1:53817"
            client = AsyncRealtimeClient(f"{base_url}/realtime/v1", token=emulator.anon_key)

    The server stops when the block exits; WebSockets still open are closed
    (1012, "service restart"), so close clients first.
    """
    server = server_for(emulator)
    sock = bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise ConfigurationError(f"the Supabase emulator did not start on {host}:{port}")
            await asyncio.sleep(0.005)
        yield url_of(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
