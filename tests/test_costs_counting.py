"""Each vendor's counting rule against the vendor's own worked examples, then applied to
measured traffic.

The worked examples are the vendors' (reference/vendors.md cites them): Pusher's
"one publish to 50 subscribers counts as 51", Ably's "a 16 KiB message counts as 4,
a 50 KiB message as 10" and "1 inbound plus 1 outbound per subscriber", Supabase's
"1 for the send plus 1 per receiving client" and over-usage "billed in whole 1M
packages". The traffic tests build events whose counts are known by construction
and check the month each vendor would bill.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime_bridge import Event
from realtime_bridge.costs import Period, Traffic
from realtime_bridge.costs.counting import (
    ABLY_CHUNK_BYTES,
    ably_bandwidth_allowance,
    ably_chunks,
    ably_messages,
    connection_minutes,
    pusher_messages,
    supabase_messages,
    whole_packages,
)
from realtime_bridge.costs.traffic import MONTH_HOURS
from realtime_bridge.costs.usage import usage

KIB = 1024
START = datetime(2026, 8, 3, tzinfo=UTC)  # a Monday, 00:00 UTC


# -- the rules, against the vendors' examples --------------------------------------------


def test_pusher_counts_one_publish_to_50_subscribers_as_51() -> None:
    assert pusher_messages(1, 50) == 51


def test_pusher_counts_a_publish_asking_for_channel_info_twice() -> None:
    assert pusher_messages(1, 50, with_info=True) == 52
    assert pusher_messages(10, 0) == 10  # a publish nobody receives still counts


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (16 * KIB, 4),  # Ably's example
        (50 * KIB, 10),  # Ably's example
        (0, 1),
        (1, 1),
        (5 * KIB, 1),
        (5 * KIB + 1, 2),
    ],
)
def test_ably_bills_messages_in_5_kib_chunks(size: int, chunks: int) -> None:
    assert ably_chunks(size) == chunks


@given(st.integers(min_value=0, max_value=10_000_000))
def test_ably_chunks_cover_the_size_and_no_more(size: int) -> None:
    chunks = ably_chunks(size)
    assert chunks * ABLY_CHUNK_BYTES >= size
    assert chunks == 1 or (chunks - 1) * ABLY_CHUNK_BYTES < size


def test_ably_counts_one_inbound_and_one_per_subscriber_each_chunked() -> None:
    assert ably_messages(200, 5) == 6
    assert ably_messages(200, 5, echo=True) == 7  # a realtime publisher with echo on
    assert ably_messages(16 * KIB, 2) == 4 * 3


def test_ably_includes_5_kib_of_bandwidth_per_message() -> None:
    assert ably_bandwidth_allowance(1000) == 1000 * 5 * KIB


def test_supabase_counts_the_send_and_each_receiving_client() -> None:
    assert supabase_messages(1, 10) == 11
    assert supabase_messages(3, 0) == 3


@pytest.mark.parametrize(
    ("over", "packages"),
    [(2_200_000, 3), (2_000_000, 2), (1, 1), (0, 0), (-5, 0)],
)
def test_over_usage_is_billed_in_whole_packages(over: int, packages: int) -> None:
    assert whole_packages(over, 1_000_000) == packages


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="size_bytes"):
        ably_chunks(-1)
    with pytest.raises(ValueError, match="package"):
        whole_packages(10, 0)


def test_connection_minutes_are_connections_times_minutes() -> None:
    assert connection_minutes(10, 2) == 1200


# -- the rules applied to a month of traffic ---------------------------------------------


def event(n: int, channel: str, at: datetime, *, pad: int = 0) -> Event:
    return Event(
        id=f"evt-{n:06d}", channel=channel, type="order.updated", data={"pad": "x" * pad}, ts=at
    )


def a_month(events: list[Event], **options: object) -> Traffic:
    """Traffic over exactly one billing month (so nothing is scaled)."""
    period = Period(START, START + timedelta(hours=MONTH_HOURS))
    return Traffic.from_events(events, period=period, **options)  # type: ignore[arg-type]


def test_a_month_of_pusher_messages_is_publishes_plus_deliveries() -> None:
    events = [event(n, "orders.1", START + timedelta(minutes=n)) for n in range(10)]
    month = usage("pusher", a_month(events, subscribers_per_channel=50), 1)
    assert month["messages_per_month"] == pusher_messages(10, 50) == 510


def test_pusher_is_billed_on_the_peak_day_not_the_average_one() -> None:
    quiet = [event(n, "orders.1", START + timedelta(minutes=n)) for n in range(100)]
    busy_day = START + timedelta(days=1)
    busy = [event(100 + n, "orders.1", busy_day + timedelta(minutes=n)) for n in range(300)]
    traffic = Traffic.from_events(
        quiet + busy, period=Period(START, START + timedelta(days=2)), subscribers_per_channel=2
    )
    assert traffic.peak_day_events == 300
    assert usage("pusher", traffic, 1)["messages_per_day"] == pusher_messages(300, 2)
    assert usage("pusher", traffic, 10)["messages_per_day"] == 10 * pusher_messages(300, 2)


def test_ably_chunks_large_events_for_every_subscriber() -> None:
    small = event(1, "orders.1", START)
    large = event(2, "orders.1", START + timedelta(seconds=1), pad=15 * KIB)
    traffic = a_month([small, large], subscribers_per_channel=3)
    large_size = len(large.encode()) + len(large.type)  # Ably adds the name to the size
    expected = ably_messages(len(small.encode()) + len(small.type), 3)
    expected += ably_messages(large_size, 3)
    assert ably_chunks(large_size) == 4
    assert usage("ably", traffic, 1)["messages_per_month"] == expected == 4 + 16


def test_supabase_counts_sends_and_receivers_per_channel() -> None:
    events = [event(n, "orders.1", START + timedelta(minutes=n)) for n in range(4)]
    events += [event(10 + n, "orders.2", START + timedelta(minutes=n)) for n in range(6)]
    traffic = a_month(events, subscribers_per_channel={"orders.1": 10, "orders.2": 1})
    assert usage("supabase", traffic, 1)["messages_per_month"] == (
        supabase_messages(4, 10) + supabase_messages(6, 1)
    )


def test_a_week_is_scaled_to_a_month_of_730_hours() -> None:
    events = [event(n, "orders.1", START + timedelta(hours=n)) for n in range(168)]
    week = Traffic.from_events(
        events, period=Period(START, START + timedelta(days=7)), subscribers_per_channel=0
    )
    assert usage("supabase", week, 1)["messages_per_month"] == 730
    assert usage("supabase", week, 100)["messages_per_month"] == 73_000


def test_sizes_do_not_grow_with_traffic_but_rates_do() -> None:
    events = [event(n, "orders.1", START, pad=100) for n in range(3)]
    traffic = a_month(events)
    once, hundredfold = usage("ably", traffic, 1), usage("ably", traffic, 100)
    assert hundredfold["message_bytes"] == once["message_bytes"] == len(events[0].encode()) + 13
    assert once["channel_messages_per_second"] == 3
    assert hundredfold["channel_messages_per_second"] == 300


def test_connection_minutes_come_from_the_mean_connections() -> None:
    traffic = a_month([event(1, "orders.1", START)], peak_connections=100, mean_connections=40)
    month = usage("ably", traffic, 1)
    assert month["peak_connections"] == 100
    assert month["connection_minutes"] == connection_minutes(40, MONTH_HOURS)
    # Liveblocks bills a user-minute only in rooms of 2 or more people: here 1 per channel.
    assert usage("liveblocks", traffic, 2)["collaboration_minutes"] == 0
    shared = a_month([event(1, "orders.1", START)], mean_connections=40, subscribers_per_channel=2)
    assert usage("liveblocks", shared, 2)["collaboration_minutes"] == connection_minutes(
        80, MONTH_HOURS
    )


def test_redis_counts_nothing_a_vendor_bills_only_what_sizes_servers() -> None:
    traffic = a_month([event(1, "orders.1", START)], subscribers_per_channel=4)
    assert set(usage("redis", traffic, 1)) >= {"peak_connections", "messages_per_second"}
    assert usage("redis", traffic, 1)["messages_per_second"] == 5  # 1 in, 4 out


# -- measuring: what Traffic keeps ---------------------------------------------------------


def test_traffic_keeps_sizes_hours_channels_and_peaks_as_published() -> None:
    events = [
        event(1, "orders.1", START + timedelta(seconds=0.1)),
        event(2, "orders.1", START + timedelta(seconds=0.9), pad=500),
        event(3, "orders.2", START + timedelta(seconds=0.5)),
        event(4, "orders.1", START + timedelta(hours=2, seconds=3)),
    ]
    traffic = Traffic.from_events(
        events, period=timedelta(hours=3), subscribers_per_channel=2, peak_connections=None
    )
    assert traffic.events == 4
    assert traffic.bytes == sum(len(e.encode()) for e in events)
    assert sum(traffic.sizes.values()) == 4
    assert traffic.largest_event() == len(events[1].encode())
    assert traffic.hourly == {START: 3, START + timedelta(hours=2): 1}
    assert traffic.hourly_channels == {START: 2, START + timedelta(hours=2): 1}
    one = traffic.channels["orders.1"]
    assert (one.events, one.active_hours, one.peak_events_per_second) == (3, 2, 2)
    assert traffic.peak_events_per_second == 3
    assert traffic.period.end == events[-1].ts + timedelta(microseconds=1)
    # Estimated: the busiest hour's two channels, two subscribers each.
    assert traffic.connections.peak == 4
    assert traffic.connections.source == "estimated"
    assert traffic.fan_out == 2


def test_sampled_subscribers_move_an_estimated_connection_count() -> None:
    from realtime_bridge.costs import Subscribers

    traffic = a_month([event(1, "orders.1", START)])
    sampled = traffic.with_subscribers(Subscribers.sampled({"orders.1": 30}, default=1))
    assert sampled.fan_out == 30
    assert sampled.connections.peak == 30
    stated = a_month([event(1, "orders.1", START)], peak_connections=5)
    assert stated.with_subscribers(Subscribers.assumed(30)).connections.peak == 5


def test_bad_periods_and_counts_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Period(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="must be after its start"):
        Period(START, START)
    with pytest.raises(ValueError, match=r"subscribers of 'orders\.1'"):
        a_month([], subscribers_per_channel={"orders.1": -1})


def test_without_a_period_the_events_span_at_least_an_hour() -> None:
    events = [event(n, "orders.1", START + timedelta(minutes=n)) for n in range(3)]
    traffic = Traffic.from_events(events)
    assert traffic.period.end == START + timedelta(minutes=2, microseconds=1)
    assert traffic.period.hours == 1
    untimed = Traffic.from_events([Event(channel="orders.1", type="order.updated")])
    assert untimed.events == 1 and untimed.period.hours == 1
