"""Which figures an estimate rests on that a reader should double-check, and the sources.

An estimate is only as good as its least certain figure, so each one lists
the figures it used that the sources left uncertain, undated or unknown, with
the reason; and each vendor lists every source (URL and date) its figures
came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date

from .models import UNITS, Figure, Plan, VendorPricing
from .report import FlaggedFigure

__all__ = ["flagged_figures", "sources"]


def _flag(what: str, figure: Figure) -> FlaggedFigure:
    note = figure.note if figure.uncertain or figure.value is None or figure.note else None
    return FlaggedFigure(what, figure.value, figure.as_of, figure.source, note)


def _used(
    pricing: VendorPricing, plan: Plan, usage: Mapping[str, float]
) -> Iterator[tuple[str, Figure]]:
    """The figures that priced ``plan`` for ``usage`` or bounded it."""
    yield f"{plan.name}: price", plan.price
    for unit in usage:
        label = UNITS[unit][0]
        if unit in plan.limits:
            yield f"{plan.name}: limit on {label}", plan.limits[unit]
        if unit in plan.included:
            yield f"{plan.name}: included {label}", plan.included[unit]
        if unit in plan.overage:
            yield f"{plan.name}: price of {label}", plan.overage[unit].price
        if unit in pricing.limits:
            yield f"platform limit on {label}", pricing.limits[unit]


def flagged_figures(
    pricing: VendorPricing, plan: Plan, usage: Mapping[str, float]
) -> tuple[FlaggedFigure, ...]:
    """The vendor's, the plan's and the figures' own flags, for this estimate."""
    flags = []
    if pricing.uncertain:
        note = pricing.note or "the sources left this vendor's pricing uncertain"
        flags.append(FlaggedFigure("every figure", None, None, None, note, "vendor"))
    if plan.uncertain:
        note = plan.note or "the sources left this plan uncertain"
        flags.append(FlaggedFigure(f"{plan.name}: the plan", None, None, None, note, "plan"))
    seen = set()
    for what, figure in _used(pricing, plan, usage):
        if figure.flagged and what not in seen:
            seen.add(what)
            flags.append(_flag(what, figure))
    return tuple(flags)


def _figures(pricing: VendorPricing) -> Iterator[Figure]:
    yield from pricing.limits.values()
    for plan in pricing.plans:
        yield plan.price
        yield from plan.included.values()
        yield from plan.limits.values()
        yield from (rate.price for rate in plan.overage.values())


def sources(pricing: VendorPricing) -> tuple[tuple[str, date | None], ...]:
    """Every (source, as_of) the vendor's figures cite, undated last."""
    found = {(figure.source, figure.as_of) for figure in _figures(pricing)}
    return tuple(sorted(found, key=lambda pair: (pair[1] is None, pair[1] or date.min, pair[0])))
