"""The Bridge: one publish / presence / history interface over any adapter.

It validates every event against the limits of every configured adapter
before sending anything (so an event that one vendor would reject fails now,
not after a failover), sends batches to the primary adapter with retries and
a circuit breaker, fails over to the fallbacks in order when the primary's
retries are spent, copies the same events to shadow adapters without ever
waiting for them, and meters all of it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from .adapters.base import Adapter, Capability, HistoryPage, Member, Occupancy, PublishResult
from .errors import CircuitOpen, DeliveryFailed, InvalidEvent, RealtimeBridgeError, TransientError
from .events import Event, validate_channel
from .metering import AdapterStats, Meter
from .retry import BreakerState, CircuitBreaker, RetryPolicy
from .settings import BridgeSettings, adapter_from_url
from .shadows import ShadowLane
from .webhooks import WebhookEvent

__all__ = ["Bridge", "HistorySource", "PublishReceipt"]

logger = logging.getLogger("realtime_bridge")
T = TypeVar("T")

MAX_HISTORY_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class PublishReceipt:
    """What ``publish_many`` did: which adapter delivered, which ids it dropped as duplicates."""

    adapter: str | None
    published: int
    duplicates: tuple[str, ...] = ()
    failed_over: bool = False


@dataclass
class _Progress:
    """How far one batch got: events acknowledged so far, ids dropped as duplicates."""

    sent: int = 0
    duplicates: list[str] = field(default_factory=list)


class HistorySource(Protocol):
    """Where history comes from when the primary adapter keeps none (the outbox)."""

    async def history(
        self, channel: str, *, limit: int, before: str | None, after: str | None
    ) -> HistoryPage: ...


class _Route:
    """One configured adapter with its role, breaker and counters."""

    def __init__(self, adapter: Adapter, label: str, breaker: CircuitBreaker, stats: AdapterStats):
        self.adapter = adapter
        self.label = label
        self.breaker = breaker
        self.stats = stats


class Bridge:
    """Publishes events to a primary adapter, falls back, shadows, and meters.

    Build it with ``Bridge.from_url(...)`` or ``Bridge.from_settings()``, or pass
    adapters you configured yourself. Use it as an async context manager so
    connections and pending shadow copies are closed.
    """

    def __init__(
        self,
        primary: Adapter,
        *,
        fallbacks: Sequence[Adapter] = (),
        shadows: Sequence[Adapter] = (),
        retry: RetryPolicy | None = None,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_pending_shadows: int = 256,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.meter = Meter()
        self._clock = clock
        self._closed = False
        #: Answers ``history()`` when the primary keeps none (the outbox sets itself here).
        self.history_source: HistorySource | None = None

        def route(adapter: Adapter, role: str) -> _Route:
            label = self._unique_label(adapter.name)
            breaker = CircuitBreaker(
                failure_threshold=failure_threshold, reset_timeout=reset_timeout, clock=clock
            )
            return _Route(adapter, label, breaker, self.meter.register(label, role))

        self._primary = route(primary, "primary")
        self._fallbacks = [route(adapter, "fallback") for adapter in fallbacks]
        self._shadows = [route(adapter, "shadow") for adapter in shadows]
        self._lanes = [
            ShadowLane(
                r.label,
                functools.partial(self._send_copy, r),
                r.stats,
                capacity=max_pending_shadows,
            )
            for r in self._shadows
        ]

    def _unique_label(self, name: str) -> str:
        label, n = name, 1
        while label in self.meter.snapshot():
            n += 1
            label = f"{name}#{n}"
        return label

    # -- construction ----------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        fallback_urls: Iterable[str] = (),
        shadow_urls: Iterable[str] = (),
        **options: Any,
    ) -> Bridge:
        """A Bridge whose adapters are named by URLs (see ``realtime_bridge.settings``)."""
        primary = adapter_from_url(url)
        fallbacks = [adapter_from_url(u) for u in fallback_urls]
        shadows = [adapter_from_url(u) for u in shadow_urls]
        return cls(primary, fallbacks=fallbacks, shadows=shadows, **options)

    @classmethod
    def from_settings(cls, settings: BridgeSettings | None = None, **options: Any) -> Bridge:
        """A Bridge from ``REALTIME_BRIDGE_*`` variables or ``realtime_bridge.toml``."""
        settings = settings or BridgeSettings()
        options.setdefault("retry", RetryPolicy(attempts=settings.retry_attempts))
        options.setdefault("failure_threshold", settings.circuit_failure_threshold)
        options.setdefault("reset_timeout", settings.circuit_reset_seconds)
        return cls.from_url(
            settings.url.get_secret_value(),
            fallback_urls=[u.get_secret_value() for u in settings.fallback_urls],
            shadow_urls=[u.get_secret_value() for u in settings.shadow_urls],
            **options,
        )

    # -- introspection ---------------------------------------------------

    @property
    def primary(self) -> Adapter:
        return self._primary.adapter

    @property
    def adapters(self) -> list[Adapter]:
        """Every configured adapter: primary, fallbacks, then shadows."""
        return [r.adapter for r in self._routes()]

    def _routes(self) -> list[_Route]:
        return [self._primary, *self._fallbacks, *self._shadows]

    def accepting(self) -> bool:
        """Whether a publish could reach an adapter now: some route's breaker is not open.

        A relay whose batch every breaker refused asks this before claiming
        again, so it waits for a breaker (on the Bridge's own clock) instead of
        claiming rows that would only be refused.
        """
        routes = [self._primary, *self._fallbacks]
        return any(route.breaker.state is not BreakerState.OPEN for route in routes)

    def stats(self) -> dict[str, dict[str, object]]:
        """Per-adapter counters: calls, failures, events, bytes, latency percentiles."""
        return self.meter.snapshot()

    def __repr__(self) -> str:
        fallbacks = [r.label for r in self._fallbacks]
        shadows = [r.label for r in self._shadows]
        return f"<Bridge primary={self._primary.label} fallbacks={fallbacks} shadows={shadows}>"

    # -- publishing ------------------------------------------------------

    def validate(self, events: Iterable[Event]) -> list[Event]:
        """Check every event against every configured adapter's limits; raise before any I/O."""
        checked = []
        for event in events:
            if not isinstance(event, Event):
                raise InvalidEvent(f"expected an Event, got {type(event).__name__}")
            for route in self._routes():
                route.adapter.check(event)
            checked.append(event)
        return checked

    async def publish(self, event: Event) -> PublishReceipt:
        """Publish one event; see ``publish_many``."""
        return await self.publish_many([event])

    async def publish_many(self, events: Iterable[Event]) -> PublishReceipt:
        """Publish events in order, batched to each adapter's limit.

        Raises the permanent error of the first adapter that refuses, or
        ``DeliveryFailed`` once the primary and every fallback are spent.
        """
        batch = self.validate(events)
        if not batch:
            return PublishReceipt(adapter=None, published=0)
        self._start_shadows(batch)
        progress = _Progress()
        errors: dict[str, RealtimeBridgeError] = {}
        chain = [self._primary, *self._fallbacks]
        for position, route in enumerate(chain, start=1):
            try:
                await self._send_all(route, batch, progress)
            except TransientError as exc:
                errors[route.label] = exc
                if position < len(chain):
                    logger.warning("publish via %s failed, failing over: %s", route.label, exc)
                continue
            return PublishReceipt(
                adapter=route.label,
                published=len(batch) - len(progress.duplicates),
                duplicates=tuple(progress.duplicates),
                failed_over=route is not self._primary,
            )
        raise DeliveryFailed(errors)

    async def _send_all(self, route: _Route, events: list[Event], progress: _Progress) -> None:
        """Send the events not yet acknowledged, in chunks of the adapter's batch limit."""
        size = route.adapter.limits.max_events_per_batch
        while progress.sent < len(events):
            chunk = events[progress.sent : progress.sent + size]
            result = await self._call(route, functools.partial(route.adapter.publish, chunk))
            progress.sent += len(chunk)
            progress.duplicates.extend(result.duplicates)
            self._count(route.stats, chunk, result)

    def _count(self, stats: AdapterStats, chunk: Sequence[Event], result: PublishResult) -> None:
        stats.events += result.published
        stats.duplicates += len(result.duplicates)
        stats.bytes += sum(len(event.data_json) for event in chunk)

    async def _send_copy(self, route: _Route, events: list[Event]) -> None:
        await self._send_all(route, events, _Progress())

    async def _call(self, route: _Route, attempt: Callable[[], Awaitable[T]]) -> T:
        """One adapter call with retries, the breaker, and timing."""

        async def timed() -> T:
            try:
                route.breaker.before_call(route.label)
            except CircuitOpen:
                route.stats.skipped += 1  # not a call: the adapter was never reached
                raise
            route.stats.calls += 1
            started = self._clock()
            try:
                return await route.breaker.track(attempt)
            except RealtimeBridgeError as exc:
                route.stats.failures += 1
                route.stats.last_error = str(exc)
                raise
            finally:
                route.stats.latencies.append(self._clock() - started)

        return await self.retry.call(timed)

    # -- shadows ---------------------------------------------------------

    def _start_shadows(self, events: list[Event]) -> None:
        for lane in self._lanes:
            lane.offer(events)

    async def drain_shadows(self, within: float | None = None) -> None:
        """Wait up to ``within`` seconds for the shadow copies already queued to be sent."""
        await asyncio.gather(*(lane.drain(within) for lane in self._lanes))

    # -- reading ---------------------------------------------------------

    async def presence(self, channel: str) -> list[Member]:
        """Members present on ``channel``, from the primary adapter."""
        validate_channel(channel)
        route = self._reader(Capability.PRESENCE)
        return await self._call(route, lambda: route.adapter.presence(channel))

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """Up to ``limit`` recent events of ``channel``, oldest first.

        ``before`` / ``after`` are event ids: the page holds events published
        before (or after) that one.
        """
        validate_channel(channel)
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"history limit must be 1 to {MAX_HISTORY_LIMIT}, got {limit}")
        if before is not None and after is not None:
            raise ValueError("history takes either before= or after=, not both")
        if self.history_source is not None and not self.primary.supports(Capability.HISTORY):
            return await self.history_source.history(
                channel, limit=limit, before=before, after=after
            )
        route = self._reader(Capability.HISTORY)
        return await self._call(
            route,
            lambda: route.adapter.history(channel, limit=limit, before=before, after=after),
        )

    async def occupancy(self, channel: str) -> Occupancy:
        """Subscriber and member counts of ``channel``, from the primary adapter."""
        validate_channel(channel)
        route = self._reader(Capability.OCCUPANCY)
        return await self._call(route, lambda: route.adapter.occupancy(channel))

    # -- clients and webhooks (pure computation, no I/O) ----------------

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """What a browser needs to join ``channel``, in the primary adapter's format."""
        self._primary.adapter.require(Capability.CLIENT_AUTH)
        return self._primary.adapter.authorize(channel, user=user, socket_id=socket_id)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a webhook from the primary adapter's vendor and normalise its entries."""
        self._primary.adapter.require(Capability.WEBHOOKS)
        return self._primary.adapter.verify_webhook(headers, body)

    def _reader(self, capability: Capability) -> _Route:
        self._primary.adapter.require(capability)
        return self._primary

    # -- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, *, shadow_timeout: float = 5.0) -> None:
        """Finish pending shadow copies (up to ``shadow_timeout``), then close every adapter."""
        if self._closed:
            return
        self._closed = True
        await self.drain_shadows(shadow_timeout)
        for lane in self._lanes:
            await lane.close()
        for route in self._routes():
            await route.adapter.aclose()
