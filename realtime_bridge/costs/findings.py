"""The warnings that matter for one vendor at one traffic level.

A bill alone does not decide: a team also needs to know what the vendor
would refuse (events over Pusher's 10 KB, publishes past Ably's 50 msg/s on
a channel), which quota chose the plan (Supabase's messages per second,
Pusher's peak day), and how close the plan is to its limits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .models import UNITS, Figure, VendorPricing
from .plans import Choice, Exceeded, choose, price_plan
from .report import Notice
from .traffic import Traffic

__all__ = ["findings", "number", "possessive"]

#: Usage at this share of a limit earns a "near the limit" warning.
NEAR = 0.8


def number(value: float) -> str:
    """A count for prose: whole numbers with separators, small ones with decimals."""
    if value == int(value) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def possessive(name: str) -> str:
    """``Ably's``, ``Pusher Channels'``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _label(unit: str) -> str:
    return UNITS[unit][0]


def _why(figure: Figure) -> str:
    return f"; {figure.note}" if figure.note else ""


def _exceeded(plan: str, e: Exceeded) -> str:
    what = "quota" if e.kind == "quota" else "limit"
    return f"{_label(e.unit)} {number(e.usage)} > {possessive(plan)} {what} of {number(e.limit)}"


def findings(
    pricing: VendorPricing, traffic: Traffic, usage: Mapping[str, float], choice: Choice, k: float
) -> tuple[Notice, ...]:
    """Every warning for ``pricing``'s vendor at ``k`` times the traffic, most serious first."""
    return (
        *_fit(choice),
        *_platform(pricing, traffic, usage, k),
        *_peak_day(pricing, usage, choice),
        *_ruled_out(pricing, usage, choice),
        *_near(choice, usage),
    )


def _fit(choice: Choice) -> Iterator[Notice]:
    plan = choice.fit.plan
    for e in choice.beyond:
        yield Notice("beyond_every_plan", f"no plan holds this: {_exceeded(plan.name, e)}")
    if choice.fit.exceeded:
        problems = "; ".join(_exceeded(plan.name, e) for e in choice.fit.exceeded)
        yield Notice("no_plan_fits", f"no listed plan fits: {problems}")
    if choice.fit.unknown_limits:
        units = ", ".join(_label(u) for u in choice.fit.unknown_limits)
        yield Notice("limits_unknown", f"{possessive(plan.name)} limits on {units} are unknown")
    if choice.fit.fits and choice.fit.cost is None:
        yield Notice("price_unknown", f"{plan.name}: price unknown{_why(plan.price)}")


def _platform(
    pricing: VendorPricing, traffic: Traffic, usage: Mapping[str, float], k: float
) -> Iterator[Notice]:
    for unit, figure in pricing.limits.items():
        limit = figure.value
        if limit is None or unit not in usage or usage[unit] <= limit:
            continue
        if unit == "message_bytes":
            yield _too_large(pricing, traffic, limit, figure)
        elif unit == "channel_messages_per_second":
            yield _channel_rate(pricing, traffic, limit, figure, k)
        else:
            text = (
                f"{_label(unit)} {number(usage[unit])} > "
                f"{possessive(pricing.name)} limit of {number(limit)}"
            )
            yield Notice("platform_limit", text + _why(figure))


def _too_large(pricing: VendorPricing, traffic: Traffic, limit: float, figure: Figure) -> Notice:
    over = traffic.events_over(limit, with_name=pricing.counting == "ably")
    share = 100 * over / traffic.events if traffic.events else 0.0
    text = (
        f"{number(over)} of {number(traffic.events)} events ({share:.2g}%) in the measured period "
        f"are larger than {number(limit)} bytes: {pricing.name} would refuse them"
    )
    return Notice("events_too_large", text + _why(figure))


def _channel_rate(
    pricing: VendorPricing, traffic: Traffic, limit: float, figure: Figure, k: float
) -> Notice:
    hot = sorted(
        ((c.peak_events_per_second * k, name) for name, c in traffic.channels.items()),
        reverse=True,
    )
    over = [(rate, name) for rate, name in hot if rate > limit]
    shown = ", ".join(f"{name} ({number(rate)}/s)" for rate, name in over[:3])
    more = f" and {len(over) - 3} more" if len(over) > 3 else ""
    text = (
        f"{len(over)} channel(s) would pass {possessive(pricing.name)} {number(limit)} "
        f"messages/s per channel at peak: {shown}{more}"
    )
    return Notice("channel_rate", text + _why(figure))


def _peak_day(
    pricing: VendorPricing, usage: Mapping[str, float], choice: Choice
) -> Iterator[Notice]:
    """A daily quota must hold the peak day: say so when an average day needs less."""
    peak = usage.get("messages_per_day")
    if peak is None or not choice.fit.fits:
        return
    average = round(usage["messages_per_month"] * 12 / 365)
    smaller = choose(pricing.plans, {**usage, "messages_per_day": average}).fit.plan
    if smaller.name != choice.fit.plan.name:
        yield Notice(
            "daily_quota_peak",
            f"the peak day needs {number(peak)} messages, an average day {number(average)}: "
            f"{smaller.name} would hold an average day but refuse publishes on peak days",
        )


def _ruled_out(
    pricing: VendorPricing, usage: Mapping[str, float], choice: Choice
) -> Iterator[Notice]:
    """Why not the plan listed before this one (cheaper, or as cheap): what chose this one."""
    chosen = choice.fit.plan
    price = chosen.price.value
    if price is None or not choice.fit.fits:
        return
    before = pricing.plans[: pricing.plans.index(chosen)]
    cheaper = [p for p in before if p.price.value is not None and p.price.value <= price]
    if not cheaper:
        return
    beyond = {e.unit for e in choice.beyond}
    fit = price_plan(cheaper[-1], {u: v for u, v in usage.items() if u not in beyond})
    if fit.exceeded:
        reasons = "; ".join(_exceeded(cheaper[-1].name, e) for e in fit.exceeded)
        yield Notice("plan_driver", f"{chosen.name} rather than {cheaper[-1].name}: {reasons}")


def _near(choice: Choice, usage: Mapping[str, float]) -> Iterator[Notice]:
    if not choice.fit.fits:
        return
    plan = choice.fit.plan
    capped = {u: f for u, f in plan.included.items() if u not in plan.overage}
    for unit, figure in {**capped, **plan.limits}.items():
        limit = figure.value
        if limit and unit in usage and NEAR * limit <= usage[unit] <= limit:
            share = 100 * usage[unit] / limit
            yield Notice(
                "near_limit",
                f"{_label(unit)} at {share:.0f}% of {possessive(plan.name)} {number(limit)}",
            )
