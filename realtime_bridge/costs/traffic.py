"""The measured traffic a cost estimate starts from: what was sent, where, when, how big.

Vendors bill on different things (Pusher on the busiest day, Ably on every
delivery in 5 KiB chunks, Supabase on monthly totals and peaks), so
``Traffic`` keeps enough to answer each: counts and bytes per channel, events
per UTC hour, a histogram of event sizes, per-second peaks, and how many
subscribers each event reaches and how many clients connect at once.

The last two are not in the outbox: they come from occupancy samples taken
through the adapters, or from stated assumptions, and the report says which.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from ..events import Event

__all__ = [
    "MONTH_HOURS",
    "ChannelTraffic",
    "Connections",
    "Period",
    "Subscribers",
    "Traffic",
    "TrafficBuilder",
    "estimate_connections",
]

#: A month, as cloud bills average it: 365 days x 24 hours / 12.
MONTH_HOURS = 730.0


@dataclass(frozen=True)
class Period:
    """The measured span ``[start, end)``, in aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"period {name} must be timezone-aware, got a naive datetime")
        if self.end <= self.start:
            raise ValueError(
                f"period end ({self.end.isoformat()}) must be after its start "
                f"({self.start.isoformat()})"
            )

    @classmethod
    def ending(cls, end: datetime, length: timedelta) -> Period:
        return cls(end - length, end)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    @property
    def length(self) -> str:
        """How long, for people: ``168 hours``, ``12 minutes``, ``40 seconds``."""
        seconds = (self.end - self.start).total_seconds()
        if seconds >= 3600:
            return f"{seconds / 3600:,.4g} hours"
        if seconds >= 60:
            return f"{seconds / 60:.3g} minutes"
        return f"{seconds:.3g} seconds"

    def full_days(self) -> list[date]:
        """The UTC days entirely inside the period (Pusher's quota resets at 00:00 UTC)."""
        first = self.start.astimezone(UTC)
        day = first.date() if first.time() == datetime.min.time() else first.date() + _DAY
        days = []
        while datetime.combine(day + _DAY, datetime.min.time(), UTC) <= self.end:
            days.append(day)
            day += _DAY
        return days


_DAY = timedelta(days=1)


@dataclass(frozen=True)
class ChannelTraffic:
    """One channel's share: events, bytes, hours it was active, per-second peaks."""

    events: int
    bytes: int
    active_hours: int
    peak_events_per_second: int
    peak_bytes_per_second: int


@dataclass(frozen=True)
class Subscribers:
    """How many subscribers receive each event of a channel: sampled, or assumed."""

    default: float
    per_channel: Mapping[str, float] = field(default_factory=dict)
    source: Literal["assumed", "sampled"] = "assumed"

    def __post_init__(self) -> None:
        values = [("default", self.default), *self.per_channel.items()]
        for name, value in values:
            if value < 0:
                raise ValueError(f"subscribers of {name!r} must be 0 or more, got {value}")

    @classmethod
    def assumed(cls, per_channel: float) -> Subscribers:
        return cls(float(per_channel))

    @classmethod
    def sampled(cls, samples: Mapping[str, float], *, default: float) -> Subscribers:
        """Measured counts per channel; ``default`` for the channels not sampled."""
        return cls(float(default), dict(samples), "sampled")

    def of(self, channel: str) -> float:
        return self.per_channel.get(channel, self.default)


@dataclass(frozen=True)
class Connections:
    """Concurrent client connections: the peak, and the mean (for connection-minutes)."""

    peak: float
    mean: float
    source: Literal["stated", "estimated"]

    def __post_init__(self) -> None:
        if self.peak < 0 or self.mean < 0:
            raise ValueError(f"connections must be 0 or more, got peak {self.peak}")


@dataclass(frozen=True)
class Traffic:
    """What was published in ``period``, and who received it."""

    period: Period
    events: int
    bytes: int
    channels: Mapping[str, ChannelTraffic]
    #: Events per UTC hour (keyed by the hour's start).
    hourly: Mapping[datetime, int]
    #: Distinct channels that carried an event, per UTC hour.
    hourly_channels: Mapping[datetime, int]
    #: ``(envelope bytes, event-type bytes) -> events``: the envelope is what Pusher and
    #: Supabase carry; Ably adds the message name (the type) to the size it bills.
    sizes: Mapping[tuple[int, int], int]
    peak_events_per_second: int
    peak_bytes_per_second: int
    subscribers: Subscribers
    connections: Connections

    # -- derived figures -------------------------------------------------------------

    @property
    def month_factor(self) -> float:
        """Multiply a count over the period by this to get a month's."""
        return MONTH_HOURS / self.period.hours

    @property
    def deliveries(self) -> float:
        """Event deliveries to subscribers: each channel's events x its subscribers."""
        return sum(c.events * self.subscribers.of(n) for n, c in self.channels.items())

    @property
    def fan_out(self) -> float:
        """Subscribers per event, weighted by each channel's events."""
        return self.deliveries / self.events if self.events else self.subscribers.default

    @property
    def peak_day_events(self) -> float:
        """Events on the busiest full UTC day, or the average day if busier (or no full day)."""
        per_day: Counter[date] = Counter()
        for hour, count in self.hourly.items():
            per_day[hour.astimezone(UTC).date()] += count
        average = self.events * 24 / self.period.hours
        return max([average, *(per_day[day] for day in self.period.full_days())])

    @property
    def peak_concurrent_channels(self) -> int:
        return max(self.hourly_channels.values(), default=0)

    @property
    def channel_active_hours(self) -> int:
        return sum(c.active_hours for c in self.channels.values())

    @property
    def busiest_channel(self) -> tuple[str, ChannelTraffic] | None:
        """The channel with the highest per-second peak (ties: most events)."""
        if not self.channels:
            return None
        return max(self.channels.items(), key=lambda i: (i[1].peak_events_per_second, i[1].events))

    def largest_event(self, *, with_name: bool = False) -> int:
        """Bytes of the largest envelope (plus the type's bytes, as Ably measures)."""
        return max((e + (n if with_name else 0) for e, n in self.sizes), default=0)

    def events_over(self, limit: float, *, with_name: bool = False) -> int:
        """How many events are larger than ``limit`` bytes."""
        return sum(
            count
            for (envelope, name), count in self.sizes.items()
            if envelope + (name if with_name else 0) > limit
        )

    # -- variations ------------------------------------------------------------------

    def with_subscribers(self, subscribers: Subscribers) -> Traffic:
        """The same traffic reaching ``subscribers``; estimated connections follow them."""
        changed = dataclasses.replace(self, subscribers=subscribers)
        if self.connections.source == "estimated":
            return changed.with_connections(estimate_connections(changed, None))
        return changed

    def with_connections(self, connections: Connections) -> Traffic:
        return dataclasses.replace(self, connections=connections)

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_events(
        cls,
        events: Iterable[Event],
        *,
        period: Period | timedelta | None = None,
        subscribers_per_channel: float | Mapping[str, float] | Subscribers = 1.0,
        peak_connections: float | None = None,
        mean_connections: float | None = None,
    ) -> Traffic:
        """The traffic of ``events`` (as published: ``Event.encode()`` is what is sent).

        ``period`` is the span the events stand for: a ``timedelta`` ends at the
        latest event's ``ts`` (or now); by default, from the first event's ``ts`` to
        the last, and at least an hour (the report warns that so short a span makes
        a shaky month). Events without ``ts`` count at the period's start.
        ``subscribers_per_channel``: one number for every channel (an assumption),
        or counts per channel (samples; 1 for a channel not listed).
        ``peak_connections``: if not given, estimated from channels and subscribers.
        """
        events = list(events)
        span = _period_of(events, period)
        builder = TrafficBuilder(span)
        for event in sorted(events, key=lambda e: _aware(e.ts) if e.ts else span.start):
            at = _aware(event.ts) if event.ts else span.start
            builder.add(event.channel, len(event.encode()), len(event.type.encode()), at)
        return builder.build(
            subscribers=_subscribers(subscribers_per_channel),
            peak_connections=peak_connections,
            mean_connections=mean_connections,
        )


def _period_of(events: list[Event], period: Period | timedelta | None) -> Period:
    if isinstance(period, Period):
        return period
    stamps = [_aware(event.ts) for event in events if event.ts is not None]
    end = max(stamps) + _TICK if stamps else datetime.now(UTC)
    if period is not None:
        return Period.ending(end, period)
    start = min(stamps, default=end)
    return Period(min(start, end - _MINIMUM_SPAN), end)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_TICK = timedelta(microseconds=1)  # the period is [start, end): the last event is inside
_MINIMUM_SPAN = timedelta(hours=1)


def _subscribers(given: float | Mapping[str, float] | Subscribers) -> Subscribers:
    if isinstance(given, Subscribers):
        return given
    if isinstance(given, Mapping):
        return Subscribers.sampled(given, default=1.0)
    return Subscribers.assumed(given)


class _ChannelTally:
    """Running counts of one channel while events stream past in time order."""

    __slots__ = (
        "active_hours",
        "bytes",
        "events",
        "hour",
        "peak",
        "peak_bytes",
        "second",
        "second_bytes",
        "second_events",
    )

    def __init__(self) -> None:
        self.events = self.bytes = self.active_hours = 0
        self.hour: datetime | None = None
        self.second = -1
        self.second_events = self.second_bytes = self.peak = self.peak_bytes = 0

    def add(self, size: int, hour: datetime, second: int) -> bool:
        """Count one event; True if it is the channel's first in this hour."""
        self.events += 1
        self.bytes += size
        if second != self.second:
            self.second, self.second_events, self.second_bytes = second, 0, 0
        self.second_events += 1
        self.second_bytes += size
        self.peak = max(self.peak, self.second_events)
        self.peak_bytes = max(self.peak_bytes, self.second_bytes)
        if hour == self.hour:
            return False
        self.hour = hour
        self.active_hours += 1
        return True

    def freeze(self) -> ChannelTraffic:
        return ChannelTraffic(
            self.events, self.bytes, self.active_hours, self.peak, self.peak_bytes
        )


class TrafficBuilder:
    """Accumulates events streamed in time order (the outbox reader and ``from_events``).

    Memory grows with channels, hours and distinct sizes, never with events, so a
    month of staging traffic streams through in constant space per channel.
    """

    def __init__(self, period: Period) -> None:
        self.period = period
        self._channels: dict[str, _ChannelTally] = {}
        self._hourly: Counter[datetime] = Counter()
        self._hourly_channels: Counter[datetime] = Counter()
        self._sizes: Counter[tuple[int, int]] = Counter()
        self._all = _ChannelTally()

    def add(self, channel: str, size: int, name_bytes: int, at: datetime) -> None:
        """One event of ``size`` envelope bytes, at ``at`` (not earlier than the last)."""
        at = at.astimezone(UTC)
        hour = at.replace(minute=0, second=0, microsecond=0)
        second = int(at.timestamp())
        tally = self._channels.get(channel)
        if tally is None:
            tally = self._channels[channel] = _ChannelTally()
        if tally.add(size, hour, second):
            self._hourly_channels[hour] += 1
        self._all.add(size, hour, second)
        self._hourly[hour] += 1
        self._sizes[(size, name_bytes)] += 1

    def build(
        self,
        *,
        subscribers: Subscribers,
        peak_connections: float | None = None,
        mean_connections: float | None = None,
    ) -> Traffic:
        traffic = Traffic(
            period=self.period,
            events=self._all.events,
            bytes=self._all.bytes,
            channels={name: tally.freeze() for name, tally in sorted(self._channels.items())},
            hourly=dict(sorted(self._hourly.items())),
            hourly_channels=dict(sorted(self._hourly_channels.items())),
            sizes=dict(sorted(self._sizes.items())),
            peak_events_per_second=self._all.peak,
            peak_bytes_per_second=self._all.peak_bytes,
            subscribers=subscribers,
            connections=Connections(0, 0, "estimated"),
        )
        stated = estimate_connections(traffic, peak_connections, mean_connections)
        return traffic.with_connections(stated)


def estimate_connections(
    traffic: Traffic, peak: float | None, mean: float | None = None
) -> Connections:
    """Stated connections, or an estimate: the busiest hour's channels x subscribers each.

    The estimate counts one connection per subscription (a client on two channels
    counts twice), and takes the mean to be the peak: both err towards the bill
    being higher, never lower.
    """
    if peak is None:
        estimate = traffic.peak_concurrent_channels * traffic.fan_out
        return Connections(estimate, estimate if mean is None else mean, "estimated")
    return Connections(float(peak), float(peak if mean is None else mean), "stated")
