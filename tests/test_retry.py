"""RetryPolicy and CircuitBreaker, with an injected sleep and clock: nothing waits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import realtime_bridge.retry as retry_module
from realtime_bridge import (
    AuthenticationFailed,
    CircuitBreaker,
    CircuitOpen,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    RetryPolicy,
    TransientError,
    VendorUnavailable,
)
from realtime_bridge.retry import BreakerState


class Sleeps:
    """A fake ``sleep`` that records the delays it was asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Flaky:
    """An attempt that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(sleeps: Sleeps, **options: float) -> RetryPolicy:
    options.setdefault("jitter", 0.0)
    return RetryPolicy(sleep=sleeps, **options)  # type: ignore[arg-type]


# -- RetryPolicy ----------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_must_be_at_least_one(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        RetryPolicy(attempts=attempts)


async def test_success_needs_no_sleep() -> None:
    sleeps = Sleeps()
    attempt = Flaky()
    assert await policy(sleeps).call(attempt) == "ok"
    assert attempt.calls == 1
    assert sleeps.delays == []


async def test_transient_errors_are_retried_until_success() -> None:
    sleeps = Sleeps()
    attempt = Flaky(VendorUnavailable("down"), RateLimited("slow down"))
    assert await policy(sleeps, attempts=4).call(attempt) == "ok"
    assert attempt.calls == 3
    assert len(sleeps.delays) == 2


async def test_attempts_are_counted_and_the_last_error_is_raised() -> None:
    sleeps = Sleeps()
    errors = [VendorUnavailable(f"down {i}") for i in range(5)]
    attempt = Flaky(*errors)
    with pytest.raises(VendorUnavailable) as caught:
        await policy(sleeps, attempts=3).call(attempt)
    assert caught.value is errors[2]
    assert attempt.calls == 3
    assert len(sleeps.delays) == 2


async def test_one_attempt_means_no_retry() -> None:
    sleeps = Sleeps()
    attempt = Flaky(VendorUnavailable("down"))
    with pytest.raises(VendorUnavailable):
        await policy(sleeps, attempts=1).call(attempt)
    assert attempt.calls == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationFailed("wrong key"),
        PublishRejected("no"),
        CircuitOpen(adapter="x://", retry_in=3.0),
        RuntimeError("a bug, not an outage"),
    ],
)
async def test_permanent_errors_circuit_open_and_bugs_are_not_retried(error: Exception) -> None:
    sleeps = Sleeps()
    attempt = Flaky(error)
    with pytest.raises(type(error)) as caught:
        await policy(sleeps, attempts=5).call(attempt)
    assert caught.value is error
    assert attempt.calls == 1
    assert sleeps.delays == []


async def test_backoff_grows_exponentially() -> None:
    sleeps = Sleeps()
    attempt = Flaky(*[VendorUnavailable("down")] * 5)
    await policy(sleeps, attempts=6, initial_delay=0.1, max_delay=100).call(attempt)
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


async def test_backoff_is_capped_at_max_delay() -> None:
    sleeps = Sleeps()
    attempt = Flaky(*[VendorUnavailable("down")] * 5)
    await policy(sleeps, attempts=6, initial_delay=1.0, max_delay=3.0).call(attempt)
    assert sleeps.delays == pytest.approx([1.0, 2.0, 3.0, 3.0, 3.0])


async def test_jitter_adds_at_most_jitter_seconds() -> None:
    sleeps = Sleeps()
    retry = RetryPolicy(attempts=2, initial_delay=1.0, max_delay=1.0, jitter=0.5, sleep=sleeps)
    for _ in range(200):
        await retry.call(Flaky(VendorUnavailable("down")))
    assert all(1.0 <= delay <= 1.5 for delay in sleeps.delays)
    assert len(set(sleeps.delays)) > 1  # actually random, so relays do not stampede


async def test_jitter_upper_bound_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_module.random, "uniform", lambda low, high: high)
    sleeps = Sleeps()
    retry = RetryPolicy(attempts=3, initial_delay=0.5, max_delay=10, jitter=0.25, sleep=sleeps)
    await retry.call(Flaky(VendorUnavailable("a"), VendorUnavailable("b")))
    assert sleeps.delays == pytest.approx([0.75, 1.25])


async def test_retry_after_is_honoured() -> None:
    sleeps = Sleeps()
    attempt = Flaky(RateLimited(retry_after=7.5), RateLimited(retry_after=2.0))
    await policy(sleeps, attempts=3, initial_delay=0.1).call(attempt)
    assert sleeps.delays == pytest.approx([7.5, 2.0])


async def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    sleeps = Sleeps()
    attempt = Flaky(RateLimited(retry_after=0.01))
    await policy(sleeps, attempts=2, initial_delay=1.0).call(attempt)
    assert sleeps.delays == pytest.approx([1.0])


async def test_a_retry_after_longer_than_the_cap_is_not_waited_out_here() -> None:
    """Pusher's daily quota says "after midnight": the Bridge gives up at once (and fails
    over); the relay keeps the events and honours the wait."""
    sleeps = Sleeps()
    attempt = Flaky(RateLimited(retry_after=3600))
    with pytest.raises(RateLimited) as caught:
        await policy(sleeps, attempts=4, max_retry_after=60).call(attempt)
    assert caught.value.retry_after == 3600
    assert sleeps.delays == []


async def test_a_retry_after_up_to_the_cap_is_waited_out() -> None:
    sleeps = Sleeps()
    attempt = Flaky(RateLimited(retry_after=60))
    await policy(sleeps, attempts=2, max_retry_after=60).call(attempt)
    assert sleeps.delays == pytest.approx([60.0])


async def test_rate_limited_without_retry_after_uses_the_backoff() -> None:
    sleeps = Sleeps()
    attempt = Flaky(RateLimited("slow down"))
    await policy(sleeps, attempts=2, initial_delay=0.25).call(attempt)
    assert sleeps.delays == pytest.approx([0.25])


def test_rate_limited_carries_retry_after() -> None:
    error = RateLimited("too many requests", adapter="x://", retry_after=2.5)
    assert error.retry_after == 2.5
    assert "retry after 2.5s" in str(error)
    assert "x://" in str(error)
    assert RateLimited().retry_after is None


def test_policy_repr_hides_the_sleep_and_policies_compare_by_value() -> None:
    assert "sleep" not in repr(RetryPolicy())
    assert RetryPolicy(attempts=2, sleep=Sleeps()) == RetryPolicy(attempts=2)
    assert RetryPolicy(attempts=2) != RetryPolicy(attempts=3)


# -- CircuitBreaker ---------------------------------------------------------------------


def breaker(clock: Clock, threshold: int = 3, reset: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, reset_timeout=reset, clock=clock)


def fail(cb: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        cb.before_call("x://")
        cb.record_failure()


def test_breaker_starts_closed() -> None:
    cb = breaker(Clock())
    assert cb.state is BreakerState.CLOSED
    cb.before_call("x://")


def test_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=3)
    fail(cb, 2)
    assert cb.state is BreakerState.CLOSED
    fail(cb, 1)
    assert cb.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as caught:
        cb.before_call("redis://:***@host/0")
    assert caught.value.adapter == "redis://:***@host/0"
    assert caught.value.retry_in == pytest.approx(30.0)
    assert "redis://:***@host/0" in str(caught.value)
    assert isinstance(caught.value, TransientError)


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    cb = breaker(Clock(), threshold=3)
    fail(cb, 2)
    cb.record_success()
    fail(cb, 2)
    assert cb.state is BreakerState.CLOSED


def test_retry_in_counts_down_with_the_clock() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=1, reset=30)
    fail(cb, 1)
    clock.now += 12
    with pytest.raises(CircuitOpen) as caught:
        cb.before_call("x://")
    assert caught.value.retry_in == pytest.approx(18.0)


def test_half_open_after_the_reset_timeout_lets_one_probe_through() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=1, reset=30)
    fail(cb, 1)
    clock.now += 29.999
    assert cb.state is BreakerState.OPEN
    clock.now += 0.001
    assert cb.state is BreakerState.HALF_OPEN
    cb.before_call("x://")  # the probe
    with pytest.raises(CircuitOpen) as caught:  # only one at a time
        cb.before_call("x://")
    assert caught.value.retry_in == 0.0


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=2, reset=30)
    fail(cb, 2)
    clock.now += 30
    cb.before_call("x://")
    cb.record_success()
    assert cb.state is BreakerState.CLOSED
    fail(cb, 1)  # the count starts again from zero
    assert cb.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_for_a_full_timeout() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=5, reset=30)
    fail(cb, 5)
    clock.now += 31
    cb.before_call("x://")
    cb.record_failure()  # one failure is enough while probing
    assert cb.state is BreakerState.OPEN
    clock.now += 29
    assert cb.state is BreakerState.OPEN
    clock.now += 1
    assert cb.state is BreakerState.HALF_OPEN


def test_a_permanent_error_during_the_probe_releases_it() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=1, reset=30)
    fail(cb, 1)
    clock.now += 30
    cb.before_call("x://")
    cb.record_neutral()
    assert cb.state is BreakerState.HALF_OPEN
    cb.before_call("x://")  # another probe may go


async def test_breaker_call_records_how_attempts_end() -> None:
    clock = Clock()
    cb = breaker(clock, threshold=2)
    assert await cb.call("x://", Flaky()) == "ok"
    for error in (AuthenticationFailed("no"), RuntimeError("bug"), AuthenticationFailed("no")):
        with pytest.raises(type(error)):
            await cb.call("x://", Flaky(error))
    assert cb.state is BreakerState.CLOSED  # neither counts against the adapter
    for _ in range(2):
        with pytest.raises(VendorUnavailable):
            await cb.call("x://", Flaky(VendorUnavailable("down")))
    assert cb.state is BreakerState.OPEN
    attempt = Flaky()
    with pytest.raises(CircuitOpen):
        await cb.call("x://", attempt)
    assert attempt.calls == 0  # not even tried


async def test_breaker_and_policy_together_stop_retrying_once_open() -> None:
    sleeps = Sleeps()
    clock = Clock()
    cb = breaker(clock, threshold=2)
    attempt = Flaky(*[VendorUnavailable("down")] * 10)

    async def through_breaker() -> str:
        return await cb.call("x://", attempt)

    with pytest.raises(CircuitOpen):
        await policy(sleeps, attempts=10).call(through_breaker)
    assert attempt.calls == 2
    assert len(sleeps.delays) == 2


def _leaf_errors() -> list[Callable[[], RealtimeBridgeError]]:
    return [lambda: VendorUnavailable("x"), lambda: RateLimited(retry_after=1)]


@pytest.mark.parametrize("make_error", _leaf_errors())
async def test_every_transient_error_counts_against_the_breaker(
    make_error: Callable[[], RealtimeBridgeError],
) -> None:
    cb = breaker(Clock(), threshold=1)
    with pytest.raises(TransientError):
        await cb.call("x://", Flaky(make_error()))
    assert cb.state is BreakerState.OPEN
