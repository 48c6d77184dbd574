"""Shadow lanes: copies of every batch for adapters under evaluation, never in the way.

A team comparing vendors in staging adds them as shadows. Each shadow gets
its own lane: a bounded queue of batches and one task that sends them in
order, so a shadow sees events in the order the primary did. A slow or
failing shadow never delays or fails the primary; when its queue is full,
new batches are dropped and counted instead of queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .errors import RealtimeBridgeError
from .events import Event
from .metering import AdapterStats

__all__ = ["ShadowLane"]

logger = logging.getLogger("realtime_bridge")


class ShadowLane:
    """Sends batches to one shadow adapter, in order, off the caller's path."""

    def __init__(
        self,
        label: str,
        send: Callable[[list[Event]], Awaitable[None]],
        stats: AdapterStats,
        *,
        capacity: int,
    ) -> None:
        self.label = label
        self._send = send
        self._stats = stats
        self._queue: asyncio.Queue[list[Event]] = asyncio.Queue(maxsize=capacity)
        self._worker: asyncio.Task[None] | None = None

    def offer(self, events: list[Event]) -> None:
        """Queue a copy of ``events``; drop and count it if the lane is full."""
        try:
            self._queue.put_nowait(events)
        except asyncio.QueueFull:
            self._stats.shadow_dropped += len(events)
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"shadow {self.label}")

    async def _run(self) -> None:
        # Exits when the queue is empty, so an idle lane holds no task; offer() starts a new one.
        while not self._queue.empty():
            events = self._queue.get_nowait()
            try:
                await self._send(events)
            except RealtimeBridgeError as exc:
                logger.info("shadow %s failed: %s", self.label, exc)
            except Exception as exc:
                self._stats.failures += 1
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("shadow %s raised an unexpected error", self.label)
            finally:
                self._queue.task_done()

    @property
    def pending(self) -> int:
        """Batches queued or being sent."""
        return self._queue.qsize() + (0 if self._worker is None or self._worker.done() else 1)

    async def drain(self, within: float | None) -> None:
        """Wait up to ``within`` seconds for the queued batches to be sent."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within)

    async def close(self) -> None:
        """Stop sending; batches still queued are dropped and counted."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._queue.empty():
            self._stats.shadow_dropped += len(self._queue.get_nowait())
            self._queue.task_done()
