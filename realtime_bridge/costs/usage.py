"""A month of each vendor's billable units, from measured traffic at a multiplier.

Scaling model, kept simple enough to state in one line: at ``k`` times the
traffic, every count and rate is ``k`` times the measured one (events, bytes,
connections, channels, per-second peaks, per-channel peaks included), while
the subscribers per channel and the size of each event stay as measured.
Scaling the busiest channel's rate with the rest is the pessimistic choice: it
shows a per-channel limit that growth spread over new channels would not hit.
"""

from __future__ import annotations

from collections.abc import Callable

from .counting import (
    GIB,
    ably_bandwidth_allowance,
    ably_chunks,
    collaboration_minutes,
    connection_minutes,
    pusher_messages,
    supabase_messages,
)
from .models import UNITS
from .traffic import MONTH_HOURS, Traffic

__all__ = ["Usage", "base_usage", "scale_usage", "usage"]

Usage = dict[str, float]

#: Units counted in whole numbers: rounded once scaled.
_WHOLE = {
    "messages_per_day",
    "messages_per_month",
    "peak_connections",
    "concurrent_channels",
    "connection_minutes",
    "channel_minutes",
    "collaboration_minutes",
}


def usage(rule: str, traffic: Traffic, multiplier: float) -> Usage:
    """The units ``rule``'s vendor bills and limits, for a month at ``multiplier``."""
    return scale_usage(base_usage(rule, traffic), multiplier)


def base_usage(rule: str, traffic: Traffic) -> Usage:
    """A month of the measured traffic (1x), unrounded: ``scale_usage`` takes it from here."""
    return _RULES[rule](traffic)


def scale_usage(base: Usage, multiplier: float) -> Usage:
    """``base`` at ``multiplier`` times the traffic; whole-number units rounded."""
    if not multiplier > 0:
        raise ValueError(f"multiplier must be more than 0, got {multiplier}")
    scaled = {}
    for unit, value in base.items():
        grown = value * multiplier if UNITS[unit][1] else value
        scaled[unit] = float(round(grown)) if unit in _WHOLE else grown
    return scaled


def _monthly(traffic: Traffic, count: float) -> float:
    return count * traffic.month_factor


def _common(traffic: Traffic) -> Usage:
    busiest = traffic.busiest_channel
    channel_bytes = max((c.peak_bytes_per_second for c in traffic.channels.values()), default=0)
    return {
        "peak_connections": traffic.connections.peak,
        "channel_messages_per_second": float(busiest[1].peak_events_per_second if busiest else 0),
        "channel_bytes_per_second": float(channel_bytes),
        "message_bytes": float(traffic.largest_event()),
    }


def _pusher(traffic: Traffic) -> Usage:
    fan_out = traffic.fan_out
    return {
        **_common(traffic),
        "messages_per_day": pusher_messages(traffic.peak_day_events, fan_out),
        "messages_per_month": _monthly(traffic, pusher_messages(traffic.events, fan_out)),
    }


def _ably_mean_chunks(traffic: Traffic) -> float:
    if not traffic.events:
        return 1.0
    chunks = sum(ably_chunks(e + n) * count for (e, n), count in traffic.sizes.items())
    return chunks / traffic.events


def _ably(traffic: Traffic) -> Usage:
    chunks = _ably_mean_chunks(traffic)
    fan_out = traffic.fan_out
    messages = _monthly(traffic, (traffic.events + traffic.deliveries) * chunks)
    sent = sum((e + n) * count for (e, n), count in traffic.sizes.items()) * (1 + fan_out)
    over = max(0.0, _monthly(traffic, sent) - ably_bandwidth_allowance(messages))
    return {
        **_common(traffic),
        "message_bytes": float(traffic.largest_event(with_name=True)),
        "messages_per_month": messages,
        "messages_per_second": traffic.peak_events_per_second * (1 + fan_out) * chunks,
        "concurrent_channels": float(traffic.peak_concurrent_channels),
        "connection_minutes": connection_minutes(traffic.connections.mean, MONTH_HOURS),
        "channel_minutes": _monthly(traffic, traffic.channel_active_hours * 60),
        "bandwidth_gib": over / GIB,
    }


def _supabase(traffic: Traffic) -> Usage:
    return {
        **_common(traffic),
        "messages_per_month": _monthly(traffic, supabase_messages(traffic.events, traffic.fan_out)),
        "messages_per_second": float(traffic.peak_events_per_second),
    }


def _liveblocks(traffic: Traffic) -> Usage:
    return {
        "peak_connections": traffic.connections.peak,
        "collaboration_minutes": collaboration_minutes(
            traffic.connections.mean, traffic.fan_out, MONTH_HOURS
        ),
    }


def _redis(traffic: Traffic) -> Usage:
    fan_out = traffic.fan_out
    return {
        **_common(traffic),
        "messages_per_month": _monthly(traffic, traffic.events + traffic.deliveries),
        "messages_per_second": traffic.peak_events_per_second * (1 + fan_out),
        "bandwidth_gib": _monthly(traffic, traffic.bytes * (1 + fan_out)) / GIB,
    }


_RULES: dict[str, Callable[[Traffic], Usage]] = {
    "pusher": _pusher,
    "ably": _ably,
    "supabase": _supabase,
    "liveblocks": _liveblocks,
    "redis": _redis,
}
