"""``estimate()``: from measured traffic to each vendor's plan, bill and limits.

For every vendor in the catalog and every traffic multiplier it counts a
month of the vendor's units (``usage.py``), picks the cheapest plan that holds
them (``plans.py``), and notes what the reader should know (``findings.py``,
``flags.py``); then finds what breaks first as traffic grows (``breaks.py``)
and where vendors' costs cross (``curve.py``). The result is data; the
renderers turn it into a table, JSON or HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import partial

from .breaks import breaks
from .catalog import Catalog, load_catalog
from .curve import cost_curve, crossovers
from .findings import findings, number
from .flags import flagged_figures, sources
from .models import VendorPricing
from .plans import choose
from .report import CostReport, Notice, PlanEstimate, VendorEstimate
from .shadow import ShadowMeasurement
from .traffic import MONTH_HOURS, Traffic
from .usage import Usage, base_usage, scale_usage

__all__ = ["DEFAULT_MULTIPLIERS", "estimate"]

DEFAULT_MULTIPLIERS = (1.0, 10.0, 100.0)


def estimate(
    traffic: Traffic,
    catalog: Catalog | None = None,
    *,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    vendors: Iterable[str] | None = None,
    shadow: Sequence[ShadowMeasurement] = (),
    generated_at: datetime | None = None,
) -> CostReport:
    """Each vendor's cheapest fitting plan and monthly bill at each multiplier of ``traffic``.

    ``catalog``: the pricing (default: the shipped one, ``load_catalog()``);
    ``vendors``: only these; ``shadow``: measurements from staging shadows
    (``load_shadow_stats``), shown beside the estimates.
    """
    catalog = catalog or load_catalog()
    if vendors is not None:
        catalog = catalog.only(vendors)
    if not multipliers or any(not m > 0 for m in multipliers):
        raise ValueError(f"multipliers must be numbers above 0, got {list(multipliers)}")
    bases = {pricing.vendor: base_usage(pricing.counting, traffic) for pricing in catalog}
    costs = {v.vendor: partial(_cost, v, bases[v.vendor]) for v in catalog}
    curve = cost_curve(costs)
    return CostReport(
        generated_at=generated_at or datetime.now(UTC),
        traffic=traffic,
        multipliers=tuple(float(m) for m in multipliers),
        vendors=tuple(
            _vendor(pricing, traffic, bases[pricing.vendor], multipliers) for pricing in catalog
        ),
        crossovers=crossovers(curve, costs),
        curve=curve,
        assumptions=assumptions(traffic),
        warnings=tuple(_traffic_warnings(traffic)),
        shadow=tuple(shadow),
    )


def _cost(pricing: VendorPricing, base: Usage, multiplier: float) -> float | None:
    return choose(pricing.plans, scale_usage(base, multiplier)).cost


def _at(pricing: VendorPricing, traffic: Traffic, base: Usage, k: float) -> PlanEstimate:
    usage = scale_usage(base, k)
    choice = choose(pricing.plans, usage)
    return PlanEstimate(
        multiplier=float(k),
        plan=choice.fit.plan.name,
        fits=choice.fit.fits,
        cost=choice.cost,
        items=choice.fit.items,
        usage=usage,
        warnings=findings(pricing, traffic, usage, choice, k),
        flagged=flagged_figures(pricing, choice.fit.plan, usage),
    )


def _vendor(
    pricing: VendorPricing, traffic: Traffic, base: Usage, multipliers: Sequence[float]
) -> VendorEstimate:
    return VendorEstimate(
        vendor=pricing.vendor,
        name=pricing.name,
        uncertain=pricing.uncertain,
        note=pricing.note,
        notes=pricing.notes,
        sources=sources(pricing),
        estimates=tuple(_at(pricing, traffic, base, k) for k in multipliers),
        breaks=breaks(pricing, base),
    )


def assumptions(traffic: Traffic) -> tuple[str, ...]:
    """What the estimate takes for granted, in the words a reader needs to challenge it."""
    subscribers = traffic.subscribers
    if subscribers.source == "sampled":
        fan = (
            f"Subscribers per channel: sampled on {len(subscribers.per_channel)} channel(s); "
            f"{number(subscribers.default)} assumed for the others"
        )
    else:
        fan = (
            f"Subscribers per channel: {number(subscribers.default)}, assumed "
            "(measure it with --sample-occupancy, or state it with --subscribers-per-channel)"
        )
    connections = traffic.connections
    if connections.source == "estimated":
        peak = (
            f"Peak concurrent connections: {number(connections.peak)}, estimated as the busiest "
            "hour's channels x their subscribers (state it with --peak-connections)"
        )
    else:
        peak = f"Peak concurrent connections: {number(connections.peak)}, as stated"
    return (
        fan,
        peak,
        f"Connection-minutes: {number(connections.mean)} connections open all month"
        + (" (the peak: an upper bound)" if connections.mean == connections.peak else ""),
        f"A month is {MONTH_HOURS:g} hours: the measured {number(traffic.period.hours)} hours "
        f"are scaled by {traffic.month_factor:.4g}",
        "At k times the traffic, every count and rate is k times the measured one (events, "
        "bytes, connections, channels, per-second peaks, the busiest channel's too); "
        "subscribers per channel and event sizes stay as measured",
        "Times are commit times (each event's ts); the peak day is the busiest full UTC day "
        "measured, or the average day if that is higher",
        "Ably: sizes are taken to be the same on every channel when chunks meet fan-out",
    )


def _traffic_warnings(traffic: Traffic) -> list[Notice]:
    warnings = []
    if not traffic.events:
        warnings.append(
            Notice("no_traffic", "no events were sent in the period: every bill is a base price")
        )
    if traffic.hourly:
        first = min(traffic.hourly)
        gap = (first - traffic.period.start).total_seconds() / 3600
        if gap > max(24.0, traffic.period.hours / 10):
            warnings.append(
                Notice(
                    "late_first_event",
                    f"the first event came {number(round(gap))} hours into the period "
                    f"({first:%Y-%m-%d %H:00} UTC): if staging only started then, measure from "
                    "there (--since), or the month is underestimated",
                )
            )
    if traffic.events and traffic.period.hours < 24:
        warnings.append(
            Notice(
                "short_period",
                f"only {traffic.period.length} measured: a day or a week of "
                "staging traffic gives a steadier month",
            )
        )
    return warnings
