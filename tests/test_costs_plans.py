"""The plan picker at every plan boundary: just under, at, and just over each quota.

Boundaries are read from the shipped catalog (so the tests follow the data), and
a few are also checked against the figures reference/vendors.md gives, so a
mistyped price file fails here too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from realtime_bridge import Event
from realtime_bridge.costs import CostReport, Period, Traffic, estimate, load_catalog
from realtime_bridge.costs.models import Figure, Plan
from realtime_bridge.costs.plans import choose, choose_plan, price_plan

CATALOG = load_catalog()


def plan(vendor: str, name: str) -> Plan:
    return next(p for p in CATALOG[vendor].plans if p.name == name)


def limit(vendor: str, name: str, unit: str) -> float:
    value = plan(vendor, name).limits[unit].value
    assert value is not None
    return value


def included(vendor: str, name: str, unit: str) -> float:
    value = plan(vendor, name).included[unit].value
    assert value is not None
    return value


def pick(vendor: str, **usage: float) -> tuple[str, float | None]:
    choice = choose(CATALOG[vendor].plans, usage)
    return choice.fit.plan.name, choice.cost


# -- the data matches the sources ------------------------------------------------------------


def test_the_shipped_figures_are_the_ones_the_sources_give() -> None:
    assert [(p.name, p.price.value) for p in CATALOG["pusher"].plans][:3] == [
        ("Sandbox", 0),
        ("Startup", 49),
        ("Pro", 99),
    ]
    assert limit("pusher", "Growth Plus", "messages_per_day") == 90_000_000
    assert CATALOG["pusher"].limits["message_bytes"].value == 10_240
    assert limit("ably", "Free", "messages_per_month") == 6_000_000
    assert plan("ably", "Standard").overage["messages_per_month"].price.value == 2.50
    assert CATALOG["ably"].limits["channel_messages_per_second"].value == 50
    assert included("supabase", "Pro (spend cap off)", "messages_per_month") == 5_000_000
    assert plan("supabase", "Team").price.value is None  # the sources give no Team price


def test_every_figure_carries_a_source_and_the_uncertain_ones_say_why() -> None:
    for vendor in CATALOG:
        for p in vendor.plans:
            figures = [p.price, *p.included.values(), *p.limits.values()]
            figures += [rate.price for rate in p.overage.values()]
            for figure in figures:
                assert figure.source
                if figure.uncertain:
                    assert figure.note, (vendor.vendor, p.name, figure)


# -- Pusher: the daily quota and connections ------------------------------------------------


@pytest.mark.parametrize(
    ("lower", "upper"),
    [("Sandbox", "Startup"), ("Startup", "Pro"), ("Plus", "Growth Plus")],
)
def test_pusher_daily_quota_boundaries(lower: str, upper: str) -> None:
    quota = limit("pusher", lower, "messages_per_day")
    assert pick("pusher", messages_per_day=quota - 1)[0] == lower
    assert pick("pusher", messages_per_day=quota)[0] == lower
    assert pick("pusher", messages_per_day=quota + 1) == (upper, plan("pusher", upper).price.value)


def test_pusher_connection_boundary() -> None:
    cap = limit("pusher", "Sandbox", "peak_connections")
    assert pick("pusher", peak_connections=cap, messages_per_day=10) == ("Sandbox", 0)
    assert pick("pusher", peak_connections=cap + 1, messages_per_day=10) == ("Startup", 49)


def test_past_the_largest_listed_pusher_plan_the_price_is_unknown() -> None:
    quota = limit("pusher", "Growth Plus", "messages_per_day")
    assert pick("pusher", messages_per_day=quota) == ("Growth Plus", 1199)
    assert pick("pusher", messages_per_day=quota + 1) == ("Enterprise", None)


# -- Ably: a capped free plan, then usage billed on a base price ------------------------------


def test_ably_free_holds_exactly_its_monthly_messages() -> None:
    cap = limit("ably", "Free", "messages_per_month")
    assert pick("ably", messages_per_month=cap) == ("Free", 0)
    name, cost = pick("ably", messages_per_month=cap + 1)
    rate = plan("ably", "Standard").overage["messages_per_month"]
    base = plan("ably", "Standard").price.value
    assert name == "Standard"
    assert base is not None and rate.price.value is not None
    assert cost == round(base + (cap + 1) / rate.per * rate.price.value, 2)


@pytest.mark.parametrize("unit", ["peak_connections", "concurrent_channels", "messages_per_second"])
def test_ably_plan_caps(unit: str) -> None:
    free, standard = limit("ably", "Free", unit), limit("ably", "Standard", unit)
    assert pick("ably", **{unit: free})[0] == "Free"
    assert pick("ably", **{unit: free + 1})[0] == "Standard"
    assert pick("ably", **{unit: standard})[0] == "Standard"
    assert pick("ably", **{unit: standard + 1})[0] == "Pro"


def test_an_event_too_large_for_standard_needs_pro() -> None:
    standard = limit("ably", "Standard", "message_bytes")
    assert pick("ably", message_bytes=standard, peak_connections=300)[0] == "Standard"
    assert pick("ably", message_bytes=standard + 1, peak_connections=300)[0] == "Pro"


# -- Supabase: included quotas, spend cap, whole packages -------------------------------------


def test_supabase_message_quota_boundaries() -> None:
    free = included("supabase", "Free", "messages_per_month")
    pro = included("supabase", "Pro (spend cap on)", "messages_per_month")
    assert pick("supabase", messages_per_month=free) == ("Free", 0)
    assert pick("supabase", messages_per_month=free + 1) == ("Pro (spend cap on)", 25)
    assert pick("supabase", messages_per_month=pro) == ("Pro (spend cap on)", 25)
    # One message past the included amount buys a whole package of 1M.
    assert pick("supabase", messages_per_month=pro + 1) == ("Pro (spend cap off)", 27.5)


def test_supabase_peak_connection_packages() -> None:
    pro = included("supabase", "Pro (spend cap off)", "peak_connections")
    assert pick("supabase", peak_connections=pro) == ("Pro (spend cap on)", 25)
    assert pick("supabase", peak_connections=pro + 1) == ("Pro (spend cap off)", 35)
    assert pick("supabase", peak_connections=pro + 1000) == ("Pro (spend cap off)", 35)
    assert pick("supabase", peak_connections=pro + 1001) == ("Pro (spend cap off)", 45)


def test_supabase_billing_example_whole_packages_of_both() -> None:
    # 7.2M messages and 1,200 peak connections on Pro: 3 packages of 1M, 1 of 1,000.
    fit = price_plan(
        plan("supabase", "Pro (spend cap off)"),
        {"messages_per_month": 7_200_000, "peak_connections": 1_200},
    )
    assert fit.cost == 25 + 3 * 2.50 + 1 * 10


def test_supabase_messages_per_second_quota_chooses_the_plan() -> None:
    free = limit("supabase", "Free", "messages_per_second")
    capped = limit("supabase", "Pro (spend cap on)", "messages_per_second")
    top = limit("supabase", "Pro (spend cap off)", "messages_per_second")
    assert pick("supabase", messages_per_second=free)[0] == "Free"
    assert pick("supabase", messages_per_second=free + 1)[0] == "Pro (spend cap on)"
    assert pick("supabase", messages_per_second=capped + 1)[0] == "Pro (spend cap off)"
    choice = choose(CATALOG["supabase"].plans, {"messages_per_second": top + 1})
    assert not choice.fit.fits and choice.cost is None  # no listed plan: the report says so
    assert [e.unit for e in choice.fit.exceeded] == ["messages_per_second"]


# -- the generic rules ---------------------------------------------------------------------------


def figure(value: float | None) -> Figure:
    return Figure(value=value, as_of=None, source="test")


def test_a_plan_whose_limit_is_unknown_is_never_picked() -> None:
    assert pick("liveblocks", peak_connections=1, collaboration_minutes=1)[0] == "Pro"
    fit = price_plan(plan("liveblocks", "Free"), {"peak_connections": 1})
    assert fit.unknown_limits == ("peak_connections",) and not fit.fits


def test_a_size_no_plan_holds_is_set_aside_not_used_to_refuse_every_plan() -> None:
    small = Plan(name="small", price=figure(10), limits={"message_bytes": figure(100)})
    large = Plan(
        name="large",
        price=figure(50),
        limits={"message_bytes": figure(200), "peak_connections": figure(10)},
    )
    choice = choose([small, large], {"message_bytes": 500, "peak_connections": 5})
    assert choice.fit.plan.name == "small" and choice.cost == 10
    assert [e.unit for e in choice.beyond] == ["message_bytes"]


def test_when_nothing_fits_the_closest_plan_is_named() -> None:
    tiny = Plan(name="tiny", price=figure(1), limits={"peak_connections": figure(10)})
    big = Plan(name="big", price=figure(9), limits={"peak_connections": figure(100)})
    fit = choose_plan([tiny, big], {"peak_connections": 150})
    assert fit.plan.name == "big" and not fit.fits


# -- the warnings that matter ---------------------------------------------------------------------


def codes(report: CostReport, vendor: str, multiplier: float = 1.0) -> dict[str, str]:
    return {n.code: n.message for n in report.vendor(vendor).at(multiplier).warnings}


def test_pusher_warns_when_the_peak_day_needs_more_than_an_average_day() -> None:
    start = datetime(2026, 8, 3, tzinfo=UTC)
    quiet = [start + timedelta(seconds=600 * n) for n in range(100)]
    busy = [start + timedelta(days=1, seconds=20 * n) for n in range(3000)]
    events = [Event(channel="orders.1", type="order.updated", ts=at) for at in [*quiet, *busy]]
    traffic = Traffic.from_events(
        events,
        period=Period(start, start + timedelta(days=2)),
        subscribers_per_channel=99,
        peak_connections=10,
    )
    report = estimate(traffic, vendors=["pusher"])
    assert report.vendor("pusher").at(1).plan == "Startup"
    warning = codes(report, "pusher")["daily_quota_peak"]
    assert "the peak day needs 300,000 messages" in warning
    assert "Sandbox would hold an average day but refuse publishes on peak days" in warning


def test_refused_events_hot_channels_and_per_second_quotas_are_warned() -> None:
    at = datetime(2026, 8, 3, 12, tzinfo=UTC)
    burst = [Event(channel="prices", type="price.changed", ts=at) for _ in range(150)]
    large = Event(channel="orders.1", type="order.updated", data={"x": "y" * 11_000}, ts=at)
    traffic = Traffic.from_events([*burst, large], period=timedelta(days=1), peak_connections=90)
    report = estimate(traffic)
    pusher = codes(report, "pusher")
    assert pusher["events_too_large"].startswith("1 of 151 events")
    assert pusher["near_limit"] == "peak concurrent connections at 90% of Sandbox's 100"
    assert "prices (150/s)" in codes(report, "ably")["channel_rate"]
    supabase = codes(report, "supabase")
    assert report.vendor("supabase").at(1).plan == "Pro (spend cap on)"
    assert supabase["plan_driver"] == (
        "Pro (spend cap on) rather than Free: messages per second at peak 151 > Free's limit of 100"
    )
