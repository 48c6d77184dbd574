"""The relay: publishes committed outbox rows and marks them sent once acknowledged.

One cycle: claim a batch (each channel's rows in commit order, ``seq``
assigned), publish it through the Bridge in the adapters' batch sizes, mark
the rows sent. A transient failure puts the rows back with a backoff (and a
vendor's Retry-After) recorded on the row; the failed rows hold back later
rows of their own channel only. A permanent failure isolates the offending
event and dead-letters it with the reason, while the rest flows. A relay
killed at any point loses nothing: unmarked rows are published again, with
the same ids and seqs (at least once; clients drop duplicates by id).

Seqs are recorded with each row's outcome, not when it is claimed: one write
per row instead of two. The batch claimed while another is in flight is
numbered after it (``floors``), and is thrown away, to be claimed afresh,
whenever some row in flight might stay pending unrecorded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ..bridge import Bridge
from ..errors import (
    AuthenticationFailed,
    CapabilityNotSupported,
    CircuitOpen,
    ConfigurationError,
    DatabaseUnavailable,
    DeliveryFailed,
    PermanentError,
    RateLimited,
    RealtimeBridgeError,
    TransientError,
)
from .database import OutboxDatabase, OutboxRow, OutboxStatus

__all__ = ["Outcome", "Relay", "RelayStats"]

logger = logging.getLogger("realtime_bridge.relay")

# Permanent for a call, but about this relay's setup (a rotated key, a missing extra),
# not about the events: they are retried with backoff, never dead-lettered at once.
_SETUP_ERRORS = (AuthenticationFailed, ConfigurationError, CapabilityNotSupported)


class Outcome(enum.Enum):
    """How one publish attempt of a batch ended."""

    SENT = "sent"
    RETRIED = "retried"
    ISOLATED = "isolated"
    #: Every adapter's circuit breaker refused the call: nothing was sent or recorded.
    REFUSED = "refused"


@dataclass
class RelayStats:
    """What this relay did since it started."""

    cycles: int = 0
    published: int = 0
    retried: int = 0
    dead: int = 0
    #: Batches every circuit breaker refused (left pending as they were, no attempt counted).
    refused: int = 0
    database_errors: int = 0
    unexpected_errors: int = 0
    last_lag_seconds: float | None = None


def _retry_after(exc: BaseException) -> float | None:
    """The longest Retry-After any adapter asked for, if one did."""
    if isinstance(exc, RateLimited):
        return exc.retry_after
    if isinstance(exc, DeliveryFailed):
        waits = [w for e in exc.errors.values() if (w := _retry_after(e)) is not None]
        return max(waits, default=None)
    return None


def _refused_for(exc: BaseException) -> float | None:
    """Seconds until a breaker may let a call through, if breakers alone stopped this publish.

    Then no adapter was called: the rows were not tried, so the relay leaves them
    as they were instead of counting an attempt (an outage must not use up their
    attempts while the breaker keeps the vendor from even seeing them).
    """
    if isinstance(exc, CircuitOpen):
        return exc.retry_in
    if isinstance(exc, DeliveryFailed) and exc.errors:
        waits = [_refused_for(error) for error in exc.errors.values()]
        if all(wait is not None for wait in waits):
            return min(wait for wait in waits if wait is not None)
    return None


class Relay:
    """Moves committed outbox rows to the Bridge; run it as a task or a process."""

    def __init__(
        self,
        database: OutboxDatabase,
        bridge: Bridge,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_attempts: int = 25,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        retention: float = 7 * 86400.0,
        rebalance_interval: float = 2.0,
        status_interval: float | None = None,
    ) -> None:
        self.database = database
        self.bridge = bridge
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retention = retention
        self.rebalance_interval = rebalance_interval
        self.stats = RelayStats()
        #: Refreshed every ``status_interval`` seconds when set (for metrics).
        self.status_interval = status_interval
        self.last_status: OutboxStatus | None = None
        self._next_status = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_rebalance = 0.0
        self._next_cleanup = 0.0
        #: ``time.monotonic()`` before which no publish is tried: a vendor's Retry-After.
        self._vendor_ready_at = 0.0
        #: The batch claimed while the previous one was being published.
        self._next: list[OutboxRow] | None = None
        #: Channels whose rows were just put back: their rows in ``_next`` must wait.
        self._held: set[str] = set()
        #: Every circuit breaker refused the last batch: claim nothing until one lets calls by.
        self._breakers_open = False

    # -- one cycle ----------------------------------------------------------------

    async def run_once(self) -> int:
        """Publish and mark one batch; return how many rows were claimed for it.

        During a backlog (a full batch), the next batch is claimed while this one
        is on its way to the vendor (excluding the rows in flight): the relay does
        not wait for the vendor and the database in turn. Once caught up it claims
        after publishing, so a new row waits for one cycle, not two.
        """
        if self._vendor_wait() > 0:
            self._next = None  # a vendor's Retry-After is running: the rows stay pending
            return 0
        if self._breakers_open:  # every breaker refused the last batch: wait for one
            if not self.bridge.accepting():
                return 0
            self._breakers_open = False
        try:
            claimed = await self._next_batch()
            rows = [row for row in claimed if row.channel not in self._held]
            self._held = set()
            self.stats.cycles += 1
            if rows and len(claimed) >= self.batch_size:  # a backlog: overlap the next claim
                await self._publish_and_claim_next(rows)
            elif rows:  # caught up: publish now, claim what is new afterwards (lowest latency)
                await self._publish(rows)
        except BaseException:
            # The next batch was numbered after rows that may now stay pending unrecorded:
            # claim it afresh, or its seqs could overtake theirs.
            self._next = None
            raise
        return len(claimed)

    async def _next_batch(self) -> list[OutboxRow]:
        if self._next is None:
            return await self.database.claim(self.batch_size)
        rows, self._next = self._next, None
        return rows

    async def _publish_and_claim_next(self, rows: Sequence[OutboxRow]) -> None:
        sending = asyncio.ensure_future(self.bridge.publish_many([row.event() for row in rows]))
        try:
            claimed = await self.database.claim(
                self.batch_size,
                exclude=[row.pk for row in rows],
                floors={row.channel: row.seq for row in rows},  # rows are in seq order
            )
            self._next = claimed or None  # an empty claim goes stale: claim afresh next time
        except BaseException:
            # Unmarked, the batch stays pending and goes out again (at least once).
            await asyncio.gather(sending, return_exceptions=True)
            raise
        await self._publish(rows, sending)

    async def _publish(
        self, rows: Sequence[OutboxRow], sending: Awaitable[object] | None = None
    ) -> Outcome:
        """Publish ``rows`` (or await their ``sending``) and record how it ended."""
        try:
            await (sending or self.bridge.publish_many([row.event() for row in rows]))
        except (TransientError, *_SETUP_ERRORS) as exc:
            if (wait := _refused_for(exc)) is not None:
                self._refused(rows, wait)
                return Outcome.REFUSED
            await self._retry_channel_or_all(rows, exc)
            return Outcome.RETRIED
        except PermanentError as exc:
            await self._isolate(rows, exc)
            return Outcome.ISOLATED
        await self.database.mark_sent(rows)
        self.stats.published += len(rows)
        self.stats.last_lag_seconds = time.time() - rows[-1].created_at.timestamp()
        return Outcome.SENT

    async def _retry(self, rows: Sequence[OutboxRow], exc: RealtimeBridgeError) -> None:
        """Back off these rows, or dead-letter those that used up their attempts."""
        spent = [row for row in rows if row.attempts + 1 >= self.max_attempts]
        if spent:
            await self._dead(spent, f"gave up after {self.max_attempts} attempts: {exc}")
        again = [row for row in rows if row.attempts + 1 < self.max_attempts]
        self._held.update(row.channel for row in again)  # their later rows must wait
        if (wait := _retry_after(exc)) is not None:  # the vendor's word holds for every row
            self._vendor_ready_at = max(self._vendor_ready_at, time.monotonic() + wait)
        if again:
            delay = self._delay(min(row.attempts for row in again), exc)
            await self.database.mark_retry(again, delay, str(exc))
            self.stats.retried += len(again)
            logger.warning(
                "%d event(s) will be retried in %.1fs: %s",
                len(again),
                delay,
                exc,
                extra={"events": len(again), "delay_seconds": round(delay, 3), "error": str(exc)},
            )

    async def _retry_channel_or_all(
        self, rows: Sequence[OutboxRow], exc: RealtimeBridgeError
    ) -> None:
        """Back off the rows, or, when the vendor named the one event it refused (a key that
        may not publish on that channel), only that channel's rows: the others go now."""
        culprit_id = getattr(exc, "event_id", None)
        channel = next((row.channel for row in rows if row.event_id == culprit_id), None)
        if channel is None or len(rows) == 1:
            await self._retry(rows, exc)
            return
        await self._retry([row for row in rows if row.channel == channel], exc)
        if rest := [row for row in rows if row.channel != channel]:
            await self._publish(rest)

    def _refused(self, rows: Sequence[OutboxRow], wait: float) -> None:
        """Leave the rows pending, untouched, and claim nothing until a breaker lets calls by."""
        self._breakers_open = True
        self._next = None  # numbered after these unrecorded rows: it must be claimed afresh
        self.stats.refused += 1
        logger.warning(
            "%d event(s) left pending: every circuit breaker is open (next try in %.1fs)",
            len(rows),
            wait,
            extra={"events": len(rows), "delay_seconds": round(wait, 3)},
        )

    def _vendor_wait(self) -> float:
        """Seconds left of a vendor's Retry-After, which holds back every row (0: none)."""
        return max(0.0, self._vendor_ready_at - time.monotonic())

    def _delay(self, attempts: int, exc: RealtimeBridgeError) -> float:
        backoff = min(self.max_delay, self.base_delay * 2.0**attempts)
        backoff *= random.uniform(0.5, 1.0)  # jitter: relays recovering together spread out
        return max(backoff, _retry_after(exc) or 0.0)

    async def _dead(self, rows: Sequence[OutboxRow], reason: str) -> None:
        await self.database.mark_dead(rows, reason)
        self.stats.dead += len(rows)
        logger.error(
            "dead-lettered %d event(s): %s",
            len(rows),
            reason,
            extra={"events": len(rows), "event_ids": [row.event_id for row in rows]},
        )

    async def _isolate(self, rows: Sequence[OutboxRow], exc: PermanentError) -> None:
        """A permanent failure: find the event(s) at fault, dead-letter them, send the rest."""
        # PayloadTooLarge names its event; so does PublishRejected when the vendor said which.
        culprit_id = getattr(exc, "event_id", None)
        culprits = [row for row in rows if row.event_id == culprit_id]
        if culprits or len(rows) == 1:
            await self._dead(culprits or rows, str(exc))
            rest = [row for row in rows if row not in culprits] if culprits else []
            if rest:
                await self._publish(rest)
            return
        await self._one_by_one(rows)

    async def _one_by_one(self, rows: Sequence[OutboxRow]) -> None:
        """Publish singly, in order; a channel whose event must wait holds only itself back."""
        held: set[str] = set()
        for row in rows:
            if row.channel in held:
                continue  # stays pending; the claim keeps it behind the retried row
            if self._vendor_wait() > 0:
                return  # a Retry-After is running: the rest stays pending, for a later claim
            if await self._publish([row]) is Outcome.RETRIED:
                held.add(row.channel)

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Publish until ``stop()``: rebalance, clean up, claim, wait for work.

        A ``stop()`` that came before this task first ran still counts (an app may
        shut down right after starting); ``async with`` starts each run afresh.
        """
        while not self._stop.is_set():
            try:
                await self._housekeeping()
                if (wait := self._vendor_wait()) > 0:
                    await self._pause(min(wait, self.rebalance_interval))
                    continue
                handled = await self.run_once()
            except DatabaseUnavailable as exc:
                self.stats.database_errors += 1
                logger.warning(
                    "outbox database unavailable, retrying: %s", exc, extra={"error": str(exc)}
                )
                await self._pause(min(self.max_delay, self.base_delay * 2))
                continue
            except Exception:  # a relay must outlive any one bad cycle; say so loudly
                self.stats.unexpected_errors += 1
                logger.exception("relay cycle failed unexpectedly; retrying")
                await self._pause(min(self.max_delay, self.base_delay * 2))
                continue
            if handled < self.batch_size and not self._next:  # nothing claimed is waiting
                await self._pause(self.poll_interval, wake_on_work=True)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_rebalance:
            self._next = None  # claimed under the old partitions: leave it pending
            await self.database.rebalance()
            self._next_rebalance = now + self.rebalance_interval
        if now >= self._next_cleanup:
            await self._delete_expired()
            self._next_cleanup = now + 60.0
        if self.status_interval is not None and now >= self._next_status:
            await self.refresh_status()
            self._next_status = now + self.status_interval

    async def refresh_status(self) -> OutboxStatus:
        """Read the backlog now and keep it as ``last_status`` (what metrics report)."""
        self.last_status = await self.database.status()
        return self.last_status

    async def _delete_expired(self, batch: int = 1000, most: int = 100) -> None:
        """Delete sent rows past retention in small batches: never one long, locking delete."""
        for _ in range(most):
            if await self.database.delete_sent(older_than=self.retention, batch=batch) < batch:
                return

    async def _pause(self, seconds: float, *, wake_on_work: bool = False) -> None:
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._stop.wait())]
        if wake_on_work:
            waits.append(asyncio.ensure_future(self.database.wait_for_work(seconds)))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run()``."""
        self._stop.set()

    async def drain(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Publish until nothing is claimable now; return how many rows were handled.

        ``progress`` is called with the running total after each batch.
        """
        await self.database.rebalance()
        total = 0
        while handled := await self.run_once():
            total += handled
            if progress is not None:
                progress(total)
        return total

    async def __aenter__(self) -> Self:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name="realtime_bridge relay")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        try:
            if self._task is not None:
                try:
                    await self._task
                except asyncio.CancelledError:
                    # Our caller was cancelled while waiting (the relay task is then
                    # cancelled with it): pass that on, never swallow it.
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close this relay's database connection (its partitions go to other relays)."""
        await self.database.aclose()
