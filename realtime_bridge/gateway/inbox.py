"""Each connection's inbox: live events (bounded) and its client's requests, in one wait.

The hub hands every live event to each interested inbox without waiting, so
one slow client never delays the others or the Redis connection. An inbox
that is full when an event arrives *overflows*: it drops what it holds, takes
nothing more, and its connection sends ``reset`` and disconnects. A client
that cannot keep up costs at most ``size`` queued references to events that
are shared anyway, never a growing queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .entries import Entry

R = TypeVar("R")

__all__ = ["Closed", "Inbox", "Overflowed"]


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection must end: ``"shutdown"``, ``"redis_lost"`` or ``"disconnected"``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The connection fell behind; ``newest`` is the newest entry id offered, per channel."""

    newest: dict[str, str]


class Inbox(Generic[R]):
    """What one connection has yet to handle: requests of type ``R``, then live events."""

    def __init__(self, size: int, *, on_overflow: Callable[[], None] | None = None) -> None:
        self._size = size
        self._on_overflow = on_overflow
        self._live: deque[Entry] = deque()
        self._requests: deque[R] = deque()
        self._wake = asyncio.Event()
        self._closed: Closed | None = None
        self._overflowed = False
        #: The newest entry id offered per channel, kept even when the entry was dropped.
        self.newest: dict[str, str] = {}

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def pending_requests(self) -> int:
        return len(self._requests)

    def offer(self, entry: Entry) -> bool:
        """Queue a live event; False if the inbox overflowed (now or before) or closed."""
        self.newest[entry.channel] = entry.id
        if self._overflowed or self._closed is not None:
            return False
        if len(self._live) >= self._size:
            self._overflowed = True
            self._live.clear()
            self._wake.set()
            if self._on_overflow is not None:
                self._on_overflow()
            return False
        self._live.append(entry)
        self._wake.set()
        return True

    def request(self, item: R) -> None:
        """Queue something the client asked for; it is handled before queued events."""
        self._requests.append(item)
        self._wake.set()

    def close(self, reason: str) -> None:
        """End the connection at its next wait (the first reason given wins)."""
        if self._closed is None:
            self._closed = Closed(reason)
            self._wake.set()

    async def get(self, within: float) -> Entry | Closed | Overflowed | R | None:
        """The next thing to handle, or None after ``within`` seconds of nothing."""
        if not self._ready():
            try:
                async with asyncio.timeout(within):
                    while not self._ready():
                        self._wake.clear()
                        await self._wake.wait()
            except TimeoutError:
                return None
        if self._closed is not None:
            return self._closed
        if self._overflowed:
            return Overflowed(dict(self.newest))
        if self._requests:
            return self._requests.popleft()
        return self._live.popleft()

    def _ready(self) -> bool:
        return bool(self._closed is not None or self._overflowed or self._requests or self._live)
