"""Serving an ASGI app with uvicorn on a socket of our own, for every server the package runs.

Why one module: the Ably and Supabase emulators (and the gateway, which can
reuse ``bind``, ``url_of``, ``serving`` and ``missing_extra``) all serve the
same way, and the details are easy to get subtly wrong apart:

- the socket is bound here, before uvicorn starts, so port 0 gives a free
  port whose URL is known at once, and TCP_NODELAY is set on it (accepted
  connections inherit it; without it a small response waits ~40 ms on Nagle's
  algorithm and the client's delayed ACK);
- starlette and uvicorn come from an optional extra, so they are imported
  only when something is served, and a missing one is a one-line
  ``ConfigurationError`` naming the extra to install (the extra's name is a
  parameter: the emulators' is ``emulator``, the gateway's ``gateway``);
- the server runs as a task in the caller's event loop, started before the
  URL is handed out and stopped (open connections closed, the task awaited,
  the socket closed) however the caller's block ends.

``EmulatorServing`` puts these together for one emulator, in its name; each
emulator's ``server`` module exports its methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Collection
from typing import Any, Generic, Protocol, TypeVar

from .errors import ConfigurationError

__all__ = [
    "EMULATOR_EXTRA",
    "GRACE",
    "SERVER_MODULES",
    "EmulatorServing",
    "bind",
    "import_uvicorn",
    "missing_extra",
    "serving",
    "url_of",
]

#: The third-party modules serving an app needs: what a missing-extra error may name.
SERVER_MODULES = frozenset({"starlette", "uvicorn"})
#: Seconds a shutdown waits for open connections to finish their last response.
GRACE = 5
#: The extra that installs the emulators' server.
EMULATOR_EXTRA = "emulator"


def missing_extra(
    exc: ModuleNotFoundError,
    *,
    what: str,
    extra: str,
    modules: Collection[str] = SERVER_MODULES,
) -> ConfigurationError:
    """The one-line error for ``what`` missing a module of ``extra`` (or re-raise ``exc``).

    ``what`` begins the message ("the Ably emulator"); ``modules`` are those
    the extra installs. A missing module that is not one of them is a bug, not
    an install step, so ``exc`` is re-raised as it is, traceback and all.
    """
    module = (exc.name or "").partition(".")[0]
    if module not in modules:
        raise exc
    return ConfigurationError(
        f"{what} needs {module}, from the '{extra}' extra: pip install 'realtime-bridge[{extra}]'"
    )


def import_uvicorn(*, what: str, extra: str) -> Any:
    """The ``uvicorn`` module, imported now: the package imports without the extra."""
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, what=what, extra=extra) from None
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
    """The base URL a bound socket answers on, ``http://host:port`` (IPv6 hosts bracketed)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextlib.asynccontextmanager
async def serving(server: Any, sock: socket.socket, *, what: str, where: str) -> AsyncIterator[str]:
    """Run the uvicorn ``server`` on ``sock`` in this event loop; yield the URL once it listens.

    The socket is the caller's to bind and this block's to close. If the
    server stops before it has started, its error is raised; if it stopped
    without one, a ``ConfigurationError`` says that ``what`` did not start on
    ``where``. When the block exits the server stops (open connections closed)
    and is awaited, so nothing of it outlives the block.
    """
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise ConfigurationError(f"{what} did not start on {where}")
            await asyncio.sleep(0.005)
        yield url_of(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()


async def serve_announced(server: Any, sock: socket.socket, announce: str) -> None:
    """Serve on ``sock`` until the server stops; print ``announce`` once it accepts connections.

    Printing before uvicorn listens would let a client that reads the line
    (a script, a test) connect too early and be refused.
    """
    serving_task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving_task.done():
            break  # it could not start: its error is raised below
        await asyncio.sleep(0.01)
    else:
        print(announce, flush=True)
    await serving_task


class _Emulator(Protocol):
    """An emulator: anything with the ASGI ``app`` to serve (built on first use)."""

    @property
    def app(self) -> Any: ...


E = TypeVar("E", bound=_Emulator)


class EmulatorServing(Generic[E]):
    """The serving functions of one emulator, in its name: what its ``server`` module exports.

    Each ``realtime_bridge.testing.<vendor>.server`` binds one of these and
    exports its methods as module functions, so every emulator is served the
    same way while its errors still say which emulator failed.
    """

    def __init__(self, what: str) -> None:
        #: How errors name the emulator: "the Ably emulator".
        self.what = what

    def missing_extra(self, exc: ModuleNotFoundError) -> ConfigurationError:
        """The one-line error for a missing ``emulator`` extra (or re-raise any other bug)."""
        return missing_extra(exc, what=self.what, extra=EMULATOR_EXTRA)

    def server_for(self, emulator: E, *, log_level: str = "warning") -> Any:
        """A uvicorn server for ``emulator``; start it with ``serve(sockets=[bind(...)])``.

        uvicorn is imported before the app is built, so when both starlette and
        uvicorn are missing the error names uvicorn, the one serving needs first.
        """
        uvicorn = import_uvicorn(what=self.what, extra=EMULATOR_EXTRA)
        config = uvicorn.Config(
            emulator.app,
            lifespan="off",
            # Plain HTTP, whatever X-Forwarded-Proto says: Ably's refuses Basic auth over it.
            proxy_headers=False,
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=GRACE,
        )
        return uvicorn.Server(config)

    @contextlib.asynccontextmanager
    async def serve(
        self, emulator: E, host: str = "127.0.0.1", port: int = 0
    ) -> AsyncIterator[str]:
        """Serve ``emulator`` on ``host:port`` (0: a free port) in this event loop; yield its URL.

        ::

            async with serve(emulator) as base_url:  # e.g. "http://127.0.0.1:53817"
                ...

        The server stops when the block exits: open connections are closed
        (WebSockets with 1012, "service restart"), so close clients first.
        """
        server = self.server_for(emulator)
        sock = bind(host, port)
        async with serving(server, sock, what=self.what, where=f"{host}:{port}") as url:
            yield url
