"""Retry policy and circuit breaker: how the Bridge rides out a vendor's bad minute.

Transient errors are retried with exponential backoff and full jitter (so a
thousand relays recovering together do not stampede the vendor), honouring a
vendor's ``retry_after`` when it gives one. A circuit breaker per adapter
stops calls to an adapter that keeps failing, fails over at once instead of
waiting out every retry, and lets one probe through after a cool-down.

Both take their clock and sleep as parameters, so tests never wait.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from .errors import CircuitOpen, RateLimited, TransientError

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, CircuitOpen)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one adapter is retried for one batch."""

    attempts: int = 4
    initial_delay: float = 0.05
    max_delay: float = 5.0
    jitter: float = 0.05
    #: A vendor's Retry-After is honoured up to this many seconds.
    max_retry_after: float = 60.0
    sleep: Sleep = field(default=asyncio.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")

    def delay(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt: backoff, or the vendor's Retry-After."""
        exponential: float = self.initial_delay * 2.0 ** (state.attempt_number - 1)
        backoff = min(self.max_delay, exponential) + random.uniform(0, self.jitter)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return max(backoff, exc.retry_after)  # should_retry refused the long ones
        return backoff

    def should_retry(self, exc: BaseException) -> bool:
        """Transient errors are retried here, unless the vendor asked for a longer wait than
        ``max_retry_after`` (Pusher's daily quota: until midnight UTC): then the caller
        fails over at once, and the relay keeps the events until the vendor's time."""
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after <= self.max_retry_after
        return _is_retryable(exc)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await ``attempt()`` until it succeeds, fails permanently, or attempts run out."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self.delay,
            retry=retry_if_exception(self.should_retry),
            sleep=self.sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                return await attempt()
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


class BreakerState(enum.StrEnum):
    """Closed: calls flow. Open: calls are refused. Half-open: one probe is let through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts consecutive transient failures of one adapter and opens after a threshold."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self, adapter: str) -> None:
        """Raise ``CircuitOpen`` unless a call may go through now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        opened_at = self._opened_at if self._opened_at is not None else self._clock()
        retry_in = max(0.0, self.reset_timeout - (self._clock() - opened_at))
        raise CircuitOpen(adapter=adapter, retry_in=retry_in)

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probing = False

    def record_neutral(self) -> None:
        """A call ended in a permanent error: says nothing about the adapter's health."""
        self._probing = False

    async def call(self, adapter: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run one attempt through the breaker, recording how it ended."""
        self.before_call(adapter)
        return await self.track(attempt)

    async def track(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await an attempt already let through by ``before_call``, recording how it ended."""
        try:
            result = await attempt()
        except TransientError:
            self.record_failure()
            raise
        except BaseException:
            self.record_neutral()
            raise
        self.record_success()
        return result
