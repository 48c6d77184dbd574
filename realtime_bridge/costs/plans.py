"""Pricing a plan for a month's usage, and picking the cheapest plan that fits.

One rule for every vendor, driven by the plan's data:

- the bill is the base ``price`` plus, per unit with an ``overage`` rate, the
  usage past the ``included`` amount at that rate (in whole packages if the
  rate says so);
- a plan does not fit if usage passes one of its ``limits``, or passes an
  ``included`` amount that has no overage rate (a quota the plan refuses to
  exceed);
- a plan whose limit for a unit in use is unknown is not picked: whether it
  fits cannot be told.

The cheapest fitting plan with a known price wins (the earlier in the catalog
on a tie); failing that, a fitting plan of unknown price (Enterprise: the
bill is "unknown"); failing that, the plan closest to fitting, with what it
exceeds, so the report can say no listed plan fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .counting import whole_packages
from .models import UNITS, Figure, Plan, Rate

__all__ = ["Choice", "CostItem", "Exceeded", "PlanFit", "choose", "choose_plan", "price_plan"]


@dataclass(frozen=True)
class CostItem:
    """One line of a bill: what, how many units, how much (None: price unknown)."""

    item: str
    unit: str | None
    quantity: float | None
    amount: float | None
    figure: Figure


@dataclass(frozen=True)
class Exceeded:
    """Usage past a limit or a capped quota of a plan."""

    unit: str
    usage: float
    limit: float
    figure: Figure
    kind: str  # "limit" or "quota"


@dataclass(frozen=True)
class PlanFit:
    """A plan priced for some usage: its bill, and whatever it cannot hold."""

    plan: Plan
    items: tuple[CostItem, ...]
    exceeded: tuple[Exceeded, ...]
    unknown_limits: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return not self.exceeded and not self.unknown_limits

    @property
    def cost(self) -> float | None:
        """The month's bill; None if any part of it is priced "unknown"."""
        amounts = [item.amount for item in self.items]
        if any(amount is None for amount in amounts):
            return None
        return round(sum(a for a in amounts if a is not None), 2)


def _charge(unit: str, over: float, rate: Rate) -> CostItem:
    quantity = float(whole_packages(over, rate.per)) if rate.package else over / rate.per
    price = rate.price.value
    amount = None if price is None else quantity * price
    what = f"{unit} past the included amount"
    return CostItem(what, unit, over, amount, rate.price)


def price_plan(plan: Plan, usage: Mapping[str, float]) -> PlanFit:
    """Price ``plan`` for ``usage`` and list what it cannot hold."""
    items = [CostItem("base price", None, None, plan.price.value, plan.price)]
    exceeded: list[Exceeded] = []
    unknown: list[str] = []
    for unit, used in usage.items():
        limit = plan.limits.get(unit)
        if limit is not None:
            if limit.value is None:
                unknown.append(unit)
            elif used > limit.value:
                exceeded.append(Exceeded(unit, used, limit.value, limit, "limit"))
        included = plan.included.get(unit)
        allowance = (included.value or 0.0) if included is not None else 0.0
        over = used - allowance
        rate = plan.overage.get(unit)
        if over <= 0:
            continue
        if rate is not None:
            items.append(_charge(unit, over, rate))
        elif included is not None:
            exceeded.append(Exceeded(unit, used, allowance, included, "quota"))
    return PlanFit(plan, tuple(items), tuple(exceeded), tuple(unknown))


def choose_plan(plans: Sequence[Plan], usage: Mapping[str, float]) -> PlanFit:
    """The cheapest plan that holds ``usage`` (see the module docstring for the order)."""
    fits = [price_plan(plan, usage) for plan in plans]
    priced = [fit for fit in fits if fit.fits and fit.cost is not None]
    if priced:
        return min(priced, key=lambda fit: fit.cost or 0.0)
    unpriced = [fit for fit in fits if fit.fits]
    if unpriced:
        return unpriced[0]
    candidates = [fit for fit in fits if not fit.unknown_limits] or fits
    return min(candidates, key=lambda fit: (len(fit.exceeded), _worst(fit), fits.index(fit)))


def _worst(fit: PlanFit) -> float:
    """How far past its limits a plan is: the largest usage / limit among them."""
    return max((e.usage / e.limit if e.limit else math.inf for e in fit.exceeded), default=0.0)


@dataclass(frozen=True)
class Choice:
    """The plan for some usage, and whatever no plan of the vendor can hold at all."""

    fit: PlanFit
    #: Usage past the chosen plan's limits that every other plan refuses too: the plan
    #: was chosen without it, and the report warns instead.
    beyond: tuple[Exceeded, ...]

    @property
    def cost(self) -> float | None:
        """The bill, if a plan holds the rest of the usage and its price is known."""
        return self.fit.cost if self.fit.fits else None


def _held_by_none(plans: Sequence[Plan], usage: Mapping[str, float]) -> set[str]:
    """Units that do not grow with traffic (an event's size) and that no plan holds."""
    return {
        unit
        for unit, used in usage.items()
        if not UNITS[unit][1] and all(price_plan(plan, {unit: used}).exceeded for plan in plans)
    }


def choose(plans: Sequence[Plan], usage: Mapping[str, float]) -> Choice:
    """``choose_plan``, after setting aside what no plan holds whatever the traffic: an
    event too large for every plan is refused on each of them, and must not make every
    plan look unfit for the rest of the traffic."""
    beyond = _held_by_none(plans, usage)
    fit = choose_plan(plans, {u: v for u, v in usage.items() if u not in beyond})
    past = price_plan(fit.plan, usage).exceeded
    return Choice(fit, tuple(e for e in past if e.unit in beyond))
