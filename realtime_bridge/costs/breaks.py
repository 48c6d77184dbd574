"""What breaks first as traffic grows: the nearest limit no upgrade within the listed
plans can lift.

Two kinds compete. A platform limit (the same on every plan: Pusher's 10 KB,
Ably's 50 msg/s per channel) breaks at ``limit / usage`` times today's
traffic. The listed plans give out where no plan with a known price holds
the usage any more: found by bisection on the multiplier, since "some plan
fits" only gets harder as traffic grows. Units that do not grow with traffic
(an event's size) break at once or never.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

from .findings import number, possessive
from .models import UNITS, Plan, VendorPricing
from .plans import price_plan
from .report import BreakPoint
from .usage import Usage, scale_usage

__all__ = ["breaks", "breaks_first"]

_LOW, _HIGH = 1e-6, 1e9
_STEPS = 80


def _times(multiplier: float) -> str:
    if multiplier <= 0:
        return "already at any traffic"
    if multiplier < 1:
        return f"already at today's traffic ({number(multiplier)}x would fit)"
    return f"at {number(round(multiplier, 2))}x today's traffic"


def _platform(pricing: VendorPricing, base: Usage) -> Iterator[BreakPoint]:
    for unit, figure in pricing.limits.items():
        limit, used = figure.value, base.get(unit)
        if limit is None or used is None:
            continue
        if UNITS[unit][1]:
            at = limit / used if used > 0 else math.inf
        else:
            at = 0.0 if used > limit else math.inf
        if math.isfinite(at):
            text = (
                f"{possessive(pricing.name)} limit of {number(limit)} {UNITS[unit][0]} "
                f"(on every plan) is passed {_times(at)}"
            )
            yield BreakPoint(unit, at, limit, "platform", None, text)


def _fits(plans: Sequence[Plan], usage: Mapping[str, float]) -> Plan | None:
    for plan in plans:
        if price_plan(plan, usage).fits:
            return plan
    return None


def _plans_ceiling(pricing: VendorPricing, base: Usage) -> BreakPoint | None:
    priced = [plan for plan in pricing.plans if plan.price.value is not None]
    growing = {u: v for u, v in base.items() if UNITS[u][1]}
    if not priced or _fits(priced, scale_usage(growing, _HIGH)) is not None:
        return None
    low, high = _LOW, _HIGH
    if _fits(priced, scale_usage(growing, low)) is None:
        low = 0.0
    else:
        for _ in range(_STEPS):
            middle = math.sqrt(low * high)
            if _fits(priced, scale_usage(growing, middle)) is None:
                high = middle
            else:
                low = middle
    last = _fits(priced, scale_usage(growing, low)) if low else None
    plan = last or priced[-1]
    exceeded = price_plan(plan, scale_usage(growing, high)).exceeded
    unit, limit = (exceeded[0].unit, exceeded[0].limit) if exceeded else ("", 0.0)
    unpriced = [p.name for p in pricing.plans if p.price.value is None]
    beyond = f"; beyond it: {', '.join(unpriced)} (price unknown)" if unpriced else ""
    text = (
        f"{plan.name}, the largest listed plan that fits, passes its {number(limit)} "
        f"{UNITS[unit][0] if unit else 'limits'} {_times(low)}{beyond}"
    )
    return BreakPoint(unit, low, limit, "plans", plan.name, text)


def _fixed(pricing: VendorPricing, base: Usage) -> Iterator[BreakPoint]:
    """Units that do not grow (an event's size) that no priced plan holds: broken now."""
    priced = [plan for plan in pricing.plans if plan.price.value is not None]
    for unit, used in base.items():
        if UNITS[unit][1] or not priced:
            continue
        if all(price_plan(plan, {unit: used}).exceeded for plan in priced):
            biggest = max(
                (p.limits[unit].value or 0.0 for p in priced if unit in p.limits), default=0.0
            )
            text = (
                f"{UNITS[unit][0]} {number(used)} > {number(biggest)} on every listed plan: "
                f"{_times(0.0)}"
            )
            yield BreakPoint(unit, 0.0, biggest, "plans", None, text)


def breaks_first(pricing: VendorPricing, base: Usage) -> BreakPoint | None:
    """The nearest break for the vendor, from the 1x usage ``base``."""
    found = breaks(pricing, base)
    return found[0] if found else None


def breaks(pricing: VendorPricing, base: Usage) -> tuple[BreakPoint, ...]:
    """Every break found, nearest first: platform limits, and where the listed plans end."""
    fixed = [u for u in base if not UNITS[u][1]]
    candidates = [
        *_platform(pricing, base),
        *_fixed(pricing, base),
    ]
    ceiling = _plans_ceiling(pricing, {u: v for u, v in base.items() if u not in fixed})
    if ceiling is not None:
        candidates.append(ceiling)
    return tuple(sorted(candidates, key=lambda point: point.at_multiplier))
