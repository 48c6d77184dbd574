"""A fixed week of staging traffic for the cost report's golden test and its chart.

Built by arithmetic, not randomness, so the same events come out on every
machine and Python version: 40 order channels with a busy Wednesday, a
``prices`` channel with a burst every hour, a few events over Pusher's 10 KB,
sampled subscribers on three channels and two assumed elsewhere, and stated
connections. Pusher and Ably trade places several times as it grows, so the
chart has crossovers to mark.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from realtime_bridge import Event
from realtime_bridge.costs import Period, Subscribers, Traffic

START = datetime(2026, 8, 3, tzinfo=UTC)  # a Monday
PERIOD = Period(START, START + timedelta(days=7))
GENERATED_AT = datetime(2026, 8, 10, 9, 0, tzinfo=UTC)
WEEK_SECONDS = 7 * 86400


def _order(n: int) -> Event:
    at = START + timedelta(seconds=(n * 7919) % WEEK_SECONDS)
    pad = 11_000 if n % 997 == 0 else (n * 37) % 2500
    return Event(
        id=f"order-{n:06d}",
        channel=f"orders.{(n * 7) % 40}",
        type="order.updated",
        data={"id": n, "status": "paid", "notes": "x" * pad},
        seq=n,
        ts=at,
    )


def _busy_wednesday(n: int) -> Event:
    at = START + timedelta(days=2, seconds=(n * 131) % 86400)
    return Event(
        id=f"rush-{n:06d}",
        channel=f"orders.{n % 40}",
        type="order.updated",
        data={"id": n, "status": "placed"},
        seq=n,
        ts=at,
    )


def _price_burst(hour: int, k: int) -> Event:
    at = START + timedelta(hours=hour, seconds=30, microseconds=k)
    return Event(
        id=f"price-{hour:04d}-{k:02d}",
        channel="prices",
        type="price.changed",
        data={"sku": k, "cents": 100 + k},
        seq=hour * 100 + k,
        ts=at,
    )


def sample_events() -> list[Event]:
    events = [_order(n) for n in range(4000)]
    events += [_busy_wednesday(n) for n in range(3000)]
    events += [_price_burst(hour, k) for hour in range(0, 168, 1) for k in range(6)]
    return events


def sample_traffic() -> Traffic:
    subscribers = Subscribers.sampled({"prices": 40, "orders.1": 3, "orders.2": 0}, default=2)
    return Traffic.from_events(
        sample_events(),
        period=PERIOD,
        subscribers_per_channel=subscribers,
        peak_connections=180,
        mean_connections=60,
    )
