"""An emulator served for the whole test session, on a thread with its own event loop.

Serving an emulator costs milliseconds to start and most of a second to stop
(uvicorn's shutdown), so a session shares one, reset between tests. Its state
belongs to the server's loop: tests change it through ``call``, which runs
between the requests (or frames) that loop is answering.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

E = TypeVar("E")
T = TypeVar("T")

__all__ = ["PATIENCE", "ThreadServed"]

#: How long starting, a call and stopping may take before the test fails.
PATIENCE = 10.0


class ThreadServed(Generic[E]):
    """``emulator`` served by ``serve(emulator)`` on a thread; ``url`` once ``start()``ed."""

    def __init__(
        self,
        emulator: E,
        serve: Callable[[E], AbstractAsyncContextManager[str]],
        *,
        what: str,
    ) -> None:
        self.emulator = emulator
        self.url = ""
        self._serve_it = serve
        self._what = what
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=what, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(PATIENCE):
            raise RuntimeError(f"{self._what}: the thread did not start serving")
        if self._failure is not None:
            raise RuntimeError(f"{self._what} could not be served") from self._failure

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with self._serve_it(self.emulator) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # handed to start(); a thread must not raise
            self._failure = exc
        finally:
            self._ready.set()

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function(*args, **kwargs)`` on the server's loop (between requests)."""
        assert self._loop is not None, "start() first"

        async def run() -> T:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(PATIENCE)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(PATIENCE)
