"""The Bridge: validation, retries, failover, circuit breaker, shadows, settings, secrets.

The adapters here are the memory adapter and tiny hand-written ``Adapter``
subclasses that fail on demand. Retries sleep through an injected fake and
the circuit breaker reads an injected clock, so nothing here waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from realtime_bridge import (
    Adapter,
    AuthenticationFailed,
    Bridge,
    Capability,
    CapabilityNotSupported,
    CircuitOpen,
    ConfigurationError,
    DeliveryFailed,
    Event,
    HistoryPage,
    InvalidChannel,
    InvalidEvent,
    Limits,
    Member,
    Occupancy,
    PayloadTooLarge,
    PublishRejected,
    PublishResult,
    RateLimited,
    RealtimeBridgeError,
    RetryPolicy,
    TransientError,
    VendorUnavailable,
)
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.settings import redact_url

SECRET = "s3cr3t-pw"
UNREACHABLE = f"redis://:{SECRET}@127.0.0.1:1/0"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(Adapter):
    """An adapter that fails on demand and records every call.

    ``failures`` are consumed one per publish call (``None`` means succeed);
    once they run out, ``down`` (if set) is raised on every call. ``hold``, if
    set, is awaited before anything else, to keep a call in flight.
    """

    scheme = "scripted"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PUBLISH, Capability.BATCH}
    )

    def __init__(
        self,
        label: str,
        *,
        limits: Limits | None = None,
        failures: Sequence[BaseException | None] = (),
        down: BaseException | None = None,
    ) -> None:
        self.label = label
        self.limits = limits or Limits(max_payload_bytes=64 * 1024, max_events_per_batch=100)
        self.failures = list(failures)
        self.down = down
        self.hold: asyncio.Event | None = None
        self.calls: list[list[Event]] = []
        self.published: list[Event] = []
        self.cancelled = False
        self.closed = 0
        self.closed_while_in_flight = False
        self._in_flight = 0

    @property
    def name(self) -> str:
        return self.label

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        self.calls.append(list(events))
        self._in_flight += 1
        try:
            if self.hold is not None:
                await self.hold.wait()
            error = self.failures.pop(0) if self.failures else self.down
            if error is not None:
                raise error
            self.published += events
            return PublishResult(published=len(events))
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self._in_flight -= 1

    async def aclose(self) -> None:
        self.closed += 1
        self.closed_while_in_flight = self.closed_while_in_flight or self._in_flight > 0


class ReadsUndeclared(Scripted):
    """Defines the read methods but declares none of them: the Bridge must not call them."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.reads: list[str] = []

    async def presence(self, channel: str) -> list[Member]:
        self.reads.append("presence")
        return []

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        self.reads.append("history")
        return HistoryPage((), has_more=False)

    async def occupancy(self, channel: str) -> Occupancy:
        self.reads.append("occupancy")
        return Occupancy(channel, None, None)


class ReadsDeclared(ReadsUndeclared):
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PUBLISH, Capability.HISTORY, Capability.PRESENCE, Capability.OCCUPANCY}
    )


def ev(n: int = 0, channel: str = "orders.1", **data: object) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n, **data})


def no_wait(attempts: int = 3, sleeps: Sleeps | None = None, **options: float) -> RetryPolicy:
    options.setdefault("jitter", 0.0)
    return RetryPolicy(attempts=attempts, sleep=sleeps or Sleeps(), **options)  # type: ignore[arg-type]


async def settle() -> None:
    """Let tasks that are ready run until they block (no wall-clock wait)."""
    for _ in range(10):
        await asyncio.sleep(0)


# -- the happy path -------------------------------------------------------------------


async def test_publish_and_read_through_the_memory_adapter() -> None:
    async with Bridge(MemoryAdapter()) as bridge:
        event = ev(1)
        receipt = await bridge.publish(event)
        assert receipt.adapter == "memory://"
        assert receipt.published == 1
        assert receipt.duplicates == ()
        assert receipt.failed_over is False
        more = [ev(i) for i in range(2, 5)]
        assert (await bridge.publish_many(more)).published == 3
        page = await bridge.history("orders.1", limit=2)
        assert [e.id for e in page] == [more[1].id, more[2].id]
        assert (await bridge.history("orders.1", after=more[0].id)).events == tuple(more[1:])
        assert (await bridge.history("orders.1", before=more[0].id)).events == (event,)
        assert await bridge.presence("presence-room.1") == []
        assert (await bridge.occupancy("orders.1")).subscribers == 0


async def test_the_receipt_reports_duplicates() -> None:
    async with Bridge(MemoryAdapter()) as bridge:
        first, second = ev(1), ev(2)
        await bridge.publish(first)
        receipt = await bridge.publish_many([first, second, second])
        assert receipt.published == 1
        assert receipt.duplicates == (first.id, second.id)
        assert bridge.stats()["memory://"]["duplicates"] == 2


async def test_an_empty_publish_touches_nothing() -> None:
    primary = Scripted("primary://")
    bridge = Bridge(primary, shadows=[Scripted("shadow://")])
    receipt = await bridge.publish_many([])
    assert receipt.adapter is None
    assert receipt.published == 0
    assert primary.calls == []
    await bridge.aclose()


async def test_publish_many_accepts_any_iterable() -> None:
    primary = Scripted("primary://")
    async with Bridge(primary) as bridge:
        await bridge.publish_many(ev(i) for i in range(3))
    assert [e.data["n"] for e in primary.published] == [0, 1, 2]


# -- validation before any I/O ------------------------------------------------------


async def test_a_smaller_fallback_limit_refuses_before_the_primary_is_called() -> None:
    primary = Scripted("primary://")
    fallback = Scripted("small://", limits=Limits(max_payload_bytes=40, max_events_per_batch=10))
    async with Bridge(primary, fallbacks=[fallback]) as bridge:
        small, big = ev(1), ev(2, blob="x" * 100)
        with pytest.raises(PayloadTooLarge) as caught:
            await bridge.publish_many([small, big])
    assert primary.calls == []
    assert fallback.calls == []
    assert caught.value.adapter == "small://"
    assert caught.value.limit == 40
    assert caught.value.size == len(big.data_json)
    assert caught.value.event_id == big.id
    assert "small://" in str(caught.value)


async def test_a_shadows_limit_is_checked_too() -> None:
    primary = Scripted("primary://")
    shadow = Scripted("tiny-shadow://", limits=Limits(max_payload_bytes=10, max_events_per_batch=1))
    async with Bridge(primary, shadows=[shadow]) as bridge:
        with pytest.raises(PayloadTooLarge, match="tiny-shadow://"):
            await bridge.publish(ev(1, blob="x" * 50))
        await settle()
    assert primary.calls == []
    assert shadow.calls == []


@pytest.mark.parametrize("thing", [{"channel": "orders.1", "type": "x"}, "event", None])
async def test_a_non_event_is_refused(thing: object) -> None:
    primary = Scripted("primary://")
    async with Bridge(primary) as bridge:
        with pytest.raises(InvalidEvent, match="expected an Event"):
            await bridge.publish_many([ev(1), thing])  # type: ignore[list-item]
    assert primary.calls == []


# -- retries ---------------------------------------------------------------------------


async def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    sleeps = Sleeps()
    primary = Scripted(
        "primary://",
        failures=[VendorUnavailable("down"), VendorUnavailable("down"), VendorUnavailable("down")],
    )
    retry = no_wait(4, sleeps, initial_delay=0.1)
    async with Bridge(primary, retry=retry, failure_threshold=100) as bridge:
        receipt = await bridge.publish(ev(1))
    assert receipt.adapter == "primary://"
    assert receipt.failed_over is False
    assert len(primary.calls) == 4
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4])
    assert len(primary.published) == 1


async def test_retry_after_is_honoured() -> None:
    sleeps = Sleeps()
    primary = Scripted("primary://", failures=[RateLimited("slow down", retry_after=2.5)])
    async with Bridge(primary, retry=no_wait(3, sleeps, initial_delay=0.01)) as bridge:
        await bridge.publish(ev(1))
    assert sleeps.delays == pytest.approx([2.5])
    assert len(primary.calls) == 2


async def test_the_same_event_ids_are_sent_on_every_retry() -> None:
    primary = Scripted("primary://", failures=[VendorUnavailable("a"), VendorUnavailable("b")])
    events = [ev(i) for i in range(3)]
    async with Bridge(primary, retry=no_wait(3)) as bridge:
        await bridge.publish_many(events)
    assert [[e.id for e in call] for call in primary.calls] == [[e.id for e in events]] * 3


@pytest.mark.parametrize("error", [AuthenticationFailed("bad key"), PublishRejected("refused")])
async def test_permanent_errors_are_neither_retried_nor_failed_over(
    error: RealtimeBridgeError,
) -> None:
    sleeps = Sleeps()
    primary = Scripted("primary://", down=error)
    fallback = Scripted("fallback://")
    async with Bridge(primary, fallbacks=[fallback], retry=no_wait(5, sleeps)) as bridge:
        with pytest.raises(type(error)) as caught:
            await bridge.publish(ev(1))
    assert caught.value is error
    assert len(primary.calls) == 1
    assert fallback.calls == []
    assert sleeps.delays == []


# -- failover ---------------------------------------------------------------------------


async def test_failover_after_the_retries_are_spent() -> None:
    sleeps = Sleeps()
    primary = Scripted("primary://", down=VendorUnavailable("primary down"))
    fallback = Scripted("fallback://")
    bridge = Bridge(primary, fallbacks=[fallback], retry=no_wait(3, sleeps), failure_threshold=100)
    async with bridge:
        events = [ev(i) for i in range(3)]
        receipt = await bridge.publish_many(events)
    assert receipt.adapter == "fallback://"
    assert receipt.failed_over is True
    assert receipt.published == 3
    assert len(primary.calls) == 3
    assert len(sleeps.delays) == 2
    assert fallback.published == events
    stats = bridge.stats()
    assert stats["primary://"]["calls"] == 3
    assert stats["primary://"]["failures"] == 3
    assert stats["primary://"]["events"] == 0
    assert "primary down" in str(stats["primary://"]["last_error"])
    assert stats["fallback://"]["events"] == 3
    assert stats["fallback://"]["role"] == "fallback"


async def test_failover_walks_the_fallbacks_in_order() -> None:
    primary = Scripted("primary://", down=VendorUnavailable("down"))
    first = Scripted("first://", down=RateLimited(retry_after=1))
    second = Scripted("second://")
    async with Bridge(primary, fallbacks=[first, second], retry=no_wait(1)) as bridge:
        receipt = await bridge.publish(ev(1))
    assert receipt.adapter == "second://"
    assert receipt.failed_over is True
    assert len(first.calls) == 1
    assert len(second.published) == 1


async def test_a_partial_batch_fails_over_only_the_rest() -> None:
    primary = Scripted(
        "primary://",
        limits=Limits(max_payload_bytes=1024, max_events_per_batch=2),
        failures=[None],  # the first chunk is acknowledged...
        down=VendorUnavailable("gone mid-batch"),  # ...then the primary goes away
    )
    fallback = Scripted(
        "fallback://", limits=Limits(max_payload_bytes=1024, max_events_per_batch=2)
    )
    events = [ev(i) for i in range(5)]
    async with Bridge(primary, fallbacks=[fallback], retry=no_wait(2)) as bridge:
        receipt = await bridge.publish_many(events)
    assert primary.calls[0] == events[0:2]
    assert all(call == events[2:4] for call in primary.calls[1:])
    assert primary.published == events[0:2]
    assert fallback.calls == [events[2:4], events[4:5]]
    assert fallback.published == events[2:]
    assert receipt.published == 5
    assert receipt.failed_over is True
    assert receipt.adapter == "fallback://"


async def test_delivery_failed_when_every_adapter_fails() -> None:
    primary = Scripted("primary://", down=VendorUnavailable("primary is down"))
    fallback = Scripted("fallback://", down=RateLimited("fallback is busy", retry_after=9))
    async with Bridge(primary, fallbacks=[fallback], retry=no_wait(2)) as bridge:
        with pytest.raises(DeliveryFailed) as caught:
            await bridge.publish(ev(1))
    error = caught.value
    assert isinstance(error, TransientError)
    assert list(error.errors) == ["primary://", "fallback://"]
    assert isinstance(error.errors["primary://"], VendorUnavailable)
    assert isinstance(error.errors["fallback://"], RateLimited)
    assert "primary is down" in str(error)
    assert "fallback is busy" in str(error)


async def test_a_permanent_error_from_a_fallback_is_raised_as_is() -> None:
    primary = Scripted("primary://", down=VendorUnavailable("down"))
    fallback = Scripted("fallback://", down=AuthenticationFailed("wrong key"))
    async with Bridge(primary, fallbacks=[fallback], retry=no_wait(1)) as bridge:
        with pytest.raises(AuthenticationFailed, match="wrong key"):
            await bridge.publish(ev(1))


async def test_failover_is_logged_without_failing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_bridge")
    primary = Scripted("primary://", down=VendorUnavailable("primary is down"))
    async with Bridge(primary, fallbacks=[Scripted("fb://")], retry=no_wait(1)) as bridge:
        await bridge.publish(ev(1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "primary://" in r.getMessage() and "primary is down" in r.getMessage() for r in warnings
    )


# -- circuit breaker --------------------------------------------------------------------


async def test_the_breaker_opens_and_skips_the_primary_until_the_reset_timeout() -> None:
    clock = Clock()
    primary = Scripted("primary://", down=VendorUnavailable("down"))
    fallback = Scripted("fallback://")
    bridge = Bridge(
        primary,
        fallbacks=[fallback],
        retry=no_wait(1),
        failure_threshold=2,
        reset_timeout=10.0,
        clock=clock,
    )
    async with bridge:
        await bridge.publish(ev(1))
        await bridge.publish(ev(2))  # the second failure opens the breaker
        assert len(primary.calls) == 2
        receipt = await bridge.publish(ev(3))
        assert len(primary.calls) == 2  # skipped: not even called
        assert receipt.adapter == "fallback://"
        assert receipt.failed_over is True
        assert bridge.stats()["primary://"]["skipped"] == 1  # counted, but not as a call
        assert bridge.stats()["primary://"]["calls"] == 2

        clock.now += 9.9
        await bridge.publish(ev(4))
        assert len(primary.calls) == 2

        clock.now += 0.1  # half-open: one probe goes through
        primary.down = None  # and the primary has recovered
        receipt = await bridge.publish(ev(5))
        assert len(primary.calls) == 3
        assert receipt.adapter == "primary://"
        assert receipt.failed_over is False

        await bridge.publish(ev(6))  # closed again
        assert len(primary.calls) == 4
        assert [e.data["n"] for e in fallback.published] == [1, 2, 3, 4]
        assert [e.data["n"] for e in primary.published] == [5, 6]


async def test_a_failed_probe_reopens_the_breaker() -> None:
    clock = Clock()
    primary = Scripted("primary://", down=VendorUnavailable("down"))
    fallback = Scripted("fallback://")
    bridge = Bridge(
        primary,
        fallbacks=[fallback],
        retry=no_wait(3),
        failure_threshold=1,
        reset_timeout=10.0,
        clock=clock,
    )
    async with bridge:
        await bridge.publish(ev(1))
        assert len(primary.calls) == 1  # opened at once: no retries into an open breaker
        clock.now += 10
        await bridge.publish(ev(2))
        assert len(primary.calls) == 2  # the probe, and only the probe
        await bridge.publish(ev(3))
        assert len(primary.calls) == 2  # open again
        assert len(fallback.published) == 3


async def test_circuit_open_everywhere_is_delivery_failed() -> None:
    clock = Clock()
    primary = Scripted("primary://", down=VendorUnavailable("down"))
    bridge = Bridge(primary, retry=no_wait(1), failure_threshold=1, clock=clock)
    async with bridge:
        with pytest.raises(DeliveryFailed):
            await bridge.publish(ev(1))
        with pytest.raises(DeliveryFailed) as caught:
            await bridge.publish(ev(2))
    assert isinstance(caught.value.errors["primary://"], CircuitOpen)
    assert len(primary.calls) == 1


async def test_permanent_errors_do_not_open_the_breaker() -> None:
    primary = Scripted("primary://", down=PublishRejected("no"))
    bridge = Bridge(primary, retry=no_wait(1), failure_threshold=1, clock=Clock())
    async with bridge:
        for _ in range(3):
            with pytest.raises(PublishRejected):
                await bridge.publish(ev(1))
    assert len(primary.calls) == 3


# -- shadows ----------------------------------------------------------------------------


async def test_shadows_get_the_same_events() -> None:
    primary = Scripted("primary://")
    shadows = [Scripted("shadow-a://"), Scripted("shadow-b://")]
    async with Bridge(primary, shadows=shadows) as bridge:
        events = [ev(i) for i in range(4)]
        receipt = await bridge.publish_many(events)
        await bridge.drain_shadows()
    assert receipt.adapter == "primary://"
    assert all(shadow.published == events for shadow in shadows)
    stats = bridge.stats()
    assert stats["shadow-a://"]["role"] == "shadow"
    assert stats["shadow-a://"]["events"] == 4


async def test_a_slow_shadow_never_delays_the_primary() -> None:
    primary = Scripted("primary://")
    shadow = Scripted("slow-shadow://")
    shadow.hold = asyncio.Event()
    async with Bridge(primary, shadows=[shadow]) as bridge:
        events = [ev(1), ev(2)]
        receipt = await bridge.publish_many(events)
        await settle()
        # The primary's publish has returned while the shadow is still held.
        assert receipt.adapter == "primary://"
        assert primary.published == events
        assert shadow.calls == [events]
        assert shadow.published == []
        second = await bridge.publish(ev(3))
        assert second.adapter == "primary://"
        shadow.hold.set()
        await bridge.drain_shadows()
    # Each batch is copied by its own task: the shadow gets every event, but
    # batches are not ordered against each other.
    assert sorted(e.id for e in shadow.published) == sorted(e.id for e in primary.published)
    assert len(shadow.published) == 3


@pytest.mark.parametrize(
    "error",
    [VendorUnavailable("shadow down"), AuthenticationFailed("shadow key"), RuntimeError("bug")],
)
async def test_a_failing_shadow_never_fails_the_primary(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_bridge")
    primary = Scripted("primary://")
    shadow = Scripted("bad-shadow://", down=error)
    async with Bridge(primary, shadows=[shadow], retry=no_wait(2)) as bridge:
        receipt = await bridge.publish(ev(1))
        await bridge.drain_shadows()
        assert receipt.adapter == "primary://"
        assert len(primary.published) == 1
        stats = bridge.stats()["bad-shadow://"]
        assert stats["failures"] >= 1
        assert str(error) in str(stats["last_error"])
        assert bridge.stats()["primary://"]["failures"] == 0
        # The Bridge keeps working after the shadow's failure.
        assert (await bridge.publish(ev(2))).adapter == "primary://"
        await bridge.drain_shadows()
    assert any("bad-shadow://" in record.getMessage() for record in caplog.records)


async def test_pending_shadows_are_bounded_and_drops_are_counted() -> None:
    primary = Scripted("primary://")
    shadow = Scripted("slow-shadow://")
    shadow.hold = asyncio.Event()
    async with Bridge(primary, shadows=[shadow], max_pending_shadows=1) as bridge:
        first = [ev(1)]
        await bridge.publish_many(first)
        await bridge.publish_many([ev(2), ev(3), ev(4)])  # the shadow is full: dropped
        await bridge.publish(ev(5))
        assert len(primary.published) == 5
        assert bridge.stats()["slow-shadow://"]["shadow_dropped"] == 4
        shadow.hold.set()
        await bridge.drain_shadows()
        assert shadow.published == first
        later = ev(6)
        await bridge.publish(later)  # room again
        await bridge.drain_shadows()
    assert shadow.published == [*first, later]
    assert bridge.stats()["slow-shadow://"]["shadow_dropped"] == 4


async def test_aclose_cancels_a_stuck_shadow_before_closing_it() -> None:
    shadow = Scripted("stuck-shadow://")
    shadow.hold = asyncio.Event()  # never set
    bridge = Bridge(Scripted("primary://"), shadows=[shadow])
    await bridge.publish(ev(1))
    await settle()
    await bridge.aclose(shadow_timeout=0)
    assert shadow.cancelled
    assert shadow.closed == 1
    assert not shadow.closed_while_in_flight


# -- stats ------------------------------------------------------------------------------


async def test_stats_count_calls_events_bytes_and_latency() -> None:
    primary = Scripted("primary://", failures=[VendorUnavailable("blip")])
    bridge = Bridge(primary, retry=no_wait(2), shadows=[MemoryAdapter()])
    assert bridge.stats()["primary://"]["calls"] == 0
    assert bridge.stats()["primary://"]["latency_p50_ms"] is None
    async with bridge:
        events = [ev(1), ev(2, note="caf\u00e9")]
        await bridge.publish_many(events)
        await bridge.drain_shadows()
        stats = bridge.stats()
    json.dumps(stats)  # plain data
    assert set(stats) == {"primary://", "memory://"}
    primary_stats = stats["primary://"]
    assert primary_stats["role"] == "primary"
    assert primary_stats["calls"] == 2
    assert primary_stats["failures"] == 1
    assert primary_stats["events"] == 2
    assert primary_stats["bytes"] == sum(len(e.data_json) for e in events)
    assert primary_stats["duplicates"] == 0
    assert primary_stats["shadow_dropped"] == 0
    assert primary_stats["latency_p50_ms"] is not None
    assert primary_stats["latency_p99_ms"] is not None
    assert "blip" in str(primary_stats["last_error"])
    assert stats["memory://"]["role"] == "shadow"
    assert stats["memory://"]["events"] == 2


async def test_adapters_with_the_same_name_get_distinct_labels() -> None:
    bridge = Bridge(MemoryAdapter(), fallbacks=[MemoryAdapter()], shadows=[MemoryAdapter()])
    assert list(bridge.stats()) == ["memory://", "memory://#2", "memory://#3"]
    assert [bridge.stats()[label]["role"] for label in bridge.stats()] == [
        "primary",
        "fallback",
        "shadow",
    ]
    assert len(bridge.adapters) == 3
    await bridge.aclose()


# -- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "capability"),
    [
        ("presence", ("presence-room.1",), "presence"),
        ("history", ("orders.1",), "history"),
        ("occupancy", ("orders.1",), "occupancy"),
    ],
)
async def test_an_undeclared_capability_is_refused_before_any_io(
    method: str, args: tuple[str, ...], capability: str
) -> None:
    primary = ReadsUndeclared("publish-only://")
    async with Bridge(primary) as bridge:
        with pytest.raises(CapabilityNotSupported) as caught:
            await getattr(bridge, method)(*args)
    assert primary.reads == []
    assert caught.value.capability == capability
    assert "publish-only://" in str(caught.value)


async def test_reads_go_to_the_primary() -> None:
    primary = ReadsDeclared("primary://")
    fallback = ReadsDeclared("fallback://")
    async with Bridge(primary, fallbacks=[fallback]) as bridge:
        await bridge.presence("presence-room.1")
        await bridge.history("orders.1")
        await bridge.occupancy("orders.1")
    assert primary.reads == ["presence", "history", "occupancy"]
    assert fallback.reads == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit must be 1 to 1000, got 0"),
        ({"limit": 1001}, "limit must be 1 to 1000, got 1001"),
        ({"limit": -5}, "got -5"),
        ({"before": "a", "after": "b"}, "either before= or after=, not both"),
    ],
)
async def test_history_argument_errors(options: dict[str, object], message: str) -> None:
    primary = ReadsDeclared("primary://")
    async with Bridge(primary) as bridge:
        with pytest.raises(ValueError, match=message):
            await bridge.history("orders.1", **options)  # type: ignore[arg-type]
    assert primary.reads == []


@pytest.mark.parametrize("method", ["presence", "history", "occupancy"])
async def test_reads_validate_the_channel(method: str) -> None:
    primary = ReadsDeclared("primary://")
    async with Bridge(primary) as bridge:
        with pytest.raises(InvalidChannel, match="bad channel"):
            await getattr(bridge, method)("bad channel")
    assert primary.reads == []


async def test_reads_are_retried_on_transient_errors() -> None:
    sleeps = Sleeps()

    class FlakyHistory(ReadsDeclared):
        async def history(self, channel: str, **options: object) -> HistoryPage:  # type: ignore[override]
            self.reads.append("history")
            if len(self.reads) < 3:
                raise VendorUnavailable("blip")
            return HistoryPage((), has_more=False)

    primary = FlakyHistory("primary://")
    async with Bridge(primary, retry=no_wait(3, sleeps)) as bridge:
        page = await bridge.history("orders.1")
    assert page.events == ()
    assert primary.reads == ["history"] * 3
    assert len(sleeps.delays) == 2


# -- secrets ----------------------------------------------------------------------------


def _texts(error: BaseException) -> list[str]:
    """Every string an error shows, along its whole chain of causes and contexts."""
    seen: list[str] = []
    current: BaseException | None = error
    while current is not None and len(seen) < 20:
        seen += [str(current), repr(current)]
        for nested in getattr(current, "errors", {}).values():
            seen += [str(nested), repr(nested)]
        current = current.__cause__ or current.__context__
    return seen


async def test_secrets_never_appear_in_repr_errors_stats_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bridge = Bridge.from_url(
        UNREACHABLE,
        fallback_urls=[f"redis://user:{SECRET}@127.0.0.1:1/1"],
        shadow_urls=[f"rediss://:{SECRET}@127.0.0.1:1/2"],
        retry=RetryPolicy(attempts=1),
    )
    shown = [repr(bridge), str(bridge), *(repr(a) for a in bridge.adapters)]
    shown += [a.name for a in bridge.adapters]
    with pytest.raises(DeliveryFailed) as publishing:
        await bridge.publish(ev(1))
    await bridge.drain_shadows()
    shown += _texts(publishing.value)
    for read in (bridge.presence("presence-x"), bridge.history("x"), bridge.occupancy("x")):
        with pytest.raises(VendorUnavailable) as reading:
            await read
        shown += _texts(reading.value)
    shown.append(json.dumps(bridge.stats()))
    await bridge.aclose()
    await bridge.aclose()
    for record in caplog.records:
        shown.append(record.getMessage())
        if record.exc_info:
            shown.append(logging.Formatter().formatException(record.exc_info))
    assert caplog.records, "the failover should have been logged"
    assert "127.0.0.1:1" in repr(bridge)  # the location is shown...
    leaks = [text for text in shown if SECRET in text]
    assert leaks == []  # ...the password never


async def test_a_wrong_password_is_authentication_failed_without_the_secret(
    redis_server: str,
) -> None:
    url = redis_server.replace("redis://", f"redis://rb-no-such-user:{SECRET}@")
    sleeps = Sleeps()
    bridge = Bridge.from_url(url, retry=no_wait(3, sleeps))
    async with bridge:
        with pytest.raises(AuthenticationFailed) as caught:
            await bridge.publish(ev(1))
    assert sleeps.delays == []  # permanent: not retried
    assert all(SECRET not in text for text in _texts(caught.value))
    assert "rb-no-such-user:***@" in str(caught.value)


def test_configuration_errors_do_not_show_secrets() -> None:
    for url in (
        f"mqtt://user:{SECRET}@127.0.0.1:1883",  # an unknown scheme
        f"redis://:{SECRET}@127.0.0.1:6379/0?histroy=5",
        f"redis://:{SECRET}@127.0.0.1:notaport/0",
    ):
        with pytest.raises(ConfigurationError) as caught:
            Bridge.from_url(url)
        assert all(SECRET not in text for text in _texts(caught.value)), url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
        (f"supabase://{SECRET}@p.supabase.co", "supabase://***@p.supabase.co"),
        (
            f"pusher://k:{SECRET}@h/1?tls=false&encryption_master_key={SECRET}&cluster=eu",
            "pusher://k:***@h/1?tls=false&encryption_master_key=***&cluster=eu",
        ),
        (f"memory://?access_token={SECRET}", "memory://?access_token=***"),
        ("redis://h:6379/0?history=5", "redis://h:6379/0?history=5"),
    ],
)
def test_redact_url_masks_credentials_and_secret_options(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# -- configuration ----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No REALTIME_BRIDGE_* variables, and a working directory without a TOML file."""
    for name in list(os.environ):
        if name.startswith("REALTIME_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


async def test_from_settings_defaults_to_memory(clean_env: pytest.MonkeyPatch) -> None:
    async with Bridge.from_settings() as bridge:
        assert isinstance(bridge.primary, MemoryAdapter)
        assert len(bridge.adapters) == 1
        assert bridge.retry.attempts == 4


async def test_from_settings_reads_environment_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REALTIME_BRIDGE_URL", "memory://?history=5")
    clean_env.setenv(
        "REALTIME_BRIDGE_FALLBACK_URLS",
        f"memory://?history=7 , redis://:{SECRET}@127.0.0.1:6379/0?prefix=rbtest-unused",
    )
    clean_env.setenv("REALTIME_BRIDGE_SHADOW_URLS", "memory://")
    clean_env.setenv("REALTIME_BRIDGE_RETRY_ATTEMPTS", "2")
    bridge = Bridge.from_settings()
    async with bridge:
        primary, fallback_memory, fallback_redis, shadow = bridge.adapters
        assert isinstance(primary, MemoryAdapter)
        assert isinstance(fallback_memory, MemoryAdapter)
        assert isinstance(fallback_redis, RedisAdapter)
        assert isinstance(shadow, MemoryAdapter)
        assert bridge.retry.attempts == 2
        assert [s["role"] for s in bridge.stats().values()] == [
            "primary",
            "fallback",
            "fallback",
            "shadow",
        ]
        assert SECRET not in repr(bridge)
        await bridge.publish_many([ev(i) for i in range(10)])
        assert len(await bridge.history("orders.1", limit=100)) == 5  # ?history=5 was read


async def test_from_settings_reads_a_toml_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "realtime_bridge.toml").write_text(
        'url = "memory://?history=3"\n'
        'fallback_urls = ["memory://", "memory://?history=9"]\n'
        "retry_attempts = 6\n"
    )
    async with Bridge.from_settings() as bridge:
        assert len(bridge.adapters) == 3
        assert bridge.retry.attempts == 6
        await bridge.publish_many([ev(i) for i in range(5)])
        assert len(await bridge.history("orders.1")) == 3


async def test_from_settings_reads_a_realtime_bridge_table(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "realtime_bridge.toml").write_text(
        '[realtime_bridge]\nurl = "memory://?history=2"\nshadow_urls = ["memory://"]\n'
    )
    async with Bridge.from_settings() as bridge:
        assert len(bridge.adapters) == 2
        assert list(bridge.stats().values())[1]["role"] == "shadow"
        await bridge.publish_many([ev(i) for i in range(5)])
        assert len(await bridge.history("orders.1")) == 2


async def test_environment_overrides_the_toml_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "realtime_bridge.toml").write_text('url = "nats://not-used"\nretry_attempts = 6\n')
    clean_env.setenv("REALTIME_BRIDGE_URL", "memory://")
    async with Bridge.from_settings() as bridge:
        assert isinstance(bridge.primary, MemoryAdapter)
        assert bridge.retry.attempts == 6


def test_explicit_options_override_settings(clean_env: pytest.MonkeyPatch) -> None:
    retry = RetryPolicy(attempts=9)
    bridge = Bridge.from_settings(retry=retry)
    assert bridge.retry is retry


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:1883", "localhost:6379", "", "REDIS//x"])
def test_an_unknown_scheme_names_the_known_ones(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Bridge.from_url(url)
    message = str(caught.value)
    for scheme in ("memory://", "redis://", "rediss://"):
        assert scheme in message


def test_an_unknown_scheme_in_settings_is_a_configuration_error(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("REALTIME_BRIDGE_FALLBACK_URLS", "memory://,pusherr://k:s@x/1")
    with pytest.raises(ConfigurationError, match="pusherr"):
        Bridge.from_settings()


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("redis://127.0.0.1:6379/0?histroy=5", "histroy"),
        ("redis://127.0.0.1:6379/0?history=0", "history"),
        ("redis://127.0.0.1:6379/0?history=lots", "history"),
        ("redis://127.0.0.1:6379/0?exact=maybe", "exact"),
        ("redis://127.0.0.1:6379/0?timeout=-1", "timeout"),
        ("memory://?bogus=1", "bogus"),
        ("memory://?history=x", "history"),
    ],
)
def test_a_bad_query_option_is_named(url: str, option: str) -> None:
    with pytest.raises(ConfigurationError, match=f"'{option}'"):
        Bridge.from_url(url)


def test_an_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="known options") as caught:
        Bridge.from_url("redis://127.0.0.1:6379/0?histroy=5")
    assert "'history'" in str(caught.value)


# -- lifecycle --------------------------------------------------------------------------


async def test_aclose_twice_is_safe_and_closes_each_adapter_once() -> None:
    adapters = [Scripted("p://"), Scripted("f://"), Scripted("s://")]
    bridge = Bridge(adapters[0], fallbacks=[adapters[1]], shadows=[adapters[2]])
    await bridge.publish(ev(1))
    await bridge.aclose()
    await bridge.aclose()
    assert [a.closed for a in adapters] == [1, 1, 1]
    assert adapters[2].published == adapters[0].published  # the shadow finished first


async def test_async_with_closes_the_adapters() -> None:
    primary = Scripted("p://")
    async with Bridge(primary) as bridge:
        assert bridge.primary is primary
    assert primary.closed == 1
