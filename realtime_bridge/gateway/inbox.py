"""Each connection's inbox: live events (bounded) and its client's requests, in one wait.

The hub hands every live event to each interested inbox without waiting, so
one slow client never delays the others or the Redis connection. An inbox
that is full when an event arrives *overflows*: it drops what it holds, takes
nothing more, and its connection sends ``reset`` and disconnects. A client
that cannot keep up costs at most ``size`` queued references to events that
are shared anyway, never a growing queue.

Waiting is built to cost little with ten thousand connections on one
broadcast. A wait is one future, resolved by the first offer, and arms no
timer of its own: each inbox keeps at most one, and leaves it armed when an
event cuts a wait short. The next wait's deadline (the next heartbeat) is
later, so the armed timer still fires early enough; when it does, it re-arms
itself for the deadline of the wait then in progress, if any. A busy
connection thus re-arms its timer once a heartbeat, rather than arming and
cancelling one per event, and leaves the event loop's timer heap, and the
garbage collector, with a handful of long-lived objects instead of a stream
of cancelled ones. And a wait is a plain future (``until_ready``), not a
coroutine, so a connection idle between two broadcasts holds one object.

Waking is paced. Resolving ten thousand waits at once would queue ten
thousand task wake-ups in the event loop before the first one runs: a burst
of allocations that sets off the garbage collector's generations, up to a
full collection that stops the process for a good part of a second. The
waits an event resolves join one queue per event loop instead, and are
resolved ``WAKE_CHUNK`` at a time, each chunk after the streams woken by the
one before have written. Every stream is woken in the order it was offered
the event, and at most a chunk of wake-ups is ever pending.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .entries import Entry

R = TypeVar("R")

__all__ = ["Closed", "Inbox", "Overflowed"]

#: A timer may fire this much before its time (the event loop's clock resolution, and more).
_EARLY = 0.001
#: The context inboxes' timers run in: they read no context variable, and sharing one
#: spares each timer the copy of the current context the event loop would make.
_TIMERS = contextvars.Context()
#: Waits resolved per turn of the event loop, when an event wakes many connections at once.
WAKE_CHUNK = 64


class _Waker:
    """Resolves the waits of one event loop a chunk per turn, in the order they were woken.

    It holds no reference to its loop, which is the key it is filed under.
    """

    def __init__(self) -> None:
        self._due: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    def wake(self, waiter: asyncio.Future[None]) -> None:
        self._due.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            waiter.get_loop().call_soon(self._run, context=_TIMERS)

    def _run(self) -> None:
        due = self._due
        for _ in range(min(WAKE_CHUNK, len(due))):
            waiter = due.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if due:  # after the wake-ups just queued have run
            asyncio.get_running_loop().call_soon(self._run, context=_TIMERS)
        else:
            self._scheduled = False


#: One waker per event loop (tests run several loops, one after another).
_WAKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waker] = weakref.WeakKeyDictionary()


def _wake_soon(waiter: asyncio.Future[None]) -> None:
    loop = waiter.get_loop()
    waker = _WAKERS.get(loop)
    if waker is None:
        waker = _WAKERS[loop] = _Waker()
    waker.wake(waiter)


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

    # Ten thousand of these live at once: no per-instance dict for the collector to walk.
    __slots__ = (
        "_closed",
        "_deadline",
        "_live",
        "_on_overflow",
        "_overflowed",
        "_requests",
        "_size",
        "_timer",
        "_waiter",
        "newest",
    )

    def __init__(self, size: int, *, on_overflow: Callable[[], None] | None = None) -> None:
        self._size = size
        self._on_overflow = on_overflow
        self._live: deque[Entry] = deque()
        self._requests: deque[R] = deque()
        self._closed: Closed | None = None
        self._overflowed = False
        #: The wait in progress (resolved when something arrives) and when it gives up.
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        #: The one timer; it may be set earlier than the deadline, never later.
        self._timer: asyncio.TimerHandle | None = None
        #: The newest entry id offered per channel, kept even when the entry was dropped.
        self.newest: dict[str, str] = {}

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def pending_requests(self) -> int:
        return len(self._requests)

    @property
    def ready(self) -> bool:
        """True if ``get`` would return at once: something is queued, or it must end."""
        return bool(self._closed is not None or self._overflowed or self._requests or self._live)

    def offer(self, entry: Entry) -> bool:
        """Queue a live event; False if the inbox overflowed (now or before) or closed."""
        self.newest[entry.channel] = entry.id
        if self._overflowed or self._closed is not None:
            return False
        if len(self._live) >= self._size:
            self._overflowed = True
            self._live.clear()
            self._wake()
            if self._on_overflow is not None:
                self._on_overflow()
            return False
        self._live.append(entry)
        self._wake()
        return True

    def request(self, item: R) -> None:
        """Queue something the client asked for; it is handled before queued events."""
        self._requests.append(item)
        self._wake()

    def close(self, reason: str) -> None:
        """End the connection at its next wait (the first reason given wins)."""
        if self._closed is None:
            self._closed = Closed(reason)
            self._wake()

    async def get(self, within: float) -> Entry | Closed | Overflowed | R | None:
        """The next thing to handle, or None after ``within`` seconds of nothing."""
        if not self.ready:
            await (self.until_ready(within) if within > 0 else asyncio.sleep(0))
            if not self.ready:
                return None
        if self._closed is not None:
            return self._closed
        if self._overflowed:
            return Overflowed(dict(self.newest))
        if self._requests:
            return self._requests.popleft()
        return self._live.popleft()

    def until_ready(self, within: float) -> asyncio.Future[None]:
        """A future resolved once ``get`` would return at once, or after ``within`` seconds.

        A plain future, not a coroutine: a connection waiting for the next
        event holds this one object, not a chain of suspended coroutines that
        the garbage collector would have to walk again and again.
        """
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self.ready or within <= 0:
            waiter.set_result(None)
            return waiter
        self._deadline = loop.time() + within
        if self._timer is not None and self._timer.when() > self._deadline:
            self._timer.cancel()  # it would fire too late for this wait
            self._timer = None
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._on_timer, context=_TIMERS)
        self._waiter = waiter
        return waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            _wake_soon(waiter)

    def _on_timer(self) -> None:
        """Give up the wait in progress if its deadline has come; else wait on for it."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: stay disarmed until the next wait
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline - _EARLY:
            waiter.set_result(None)
        else:
            self._timer = loop.call_at(self._deadline, self._on_timer, context=_TIMERS)
