"""Monthly cost against traffic, per vendor, and where two vendors' costs cross.

Bills are step functions (plans, packages) or straight lines (per-unit
usage), so two vendors can trade places several times as traffic grows. The
curve is sampled on a log grid from 0.1x to 1000x; each change of which
vendor is cheaper between two grid points is then narrowed by bisection, so
a crossover's multiplier is exact to a fraction of a percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from .report import CostCurve, Crossover

__all__ = ["CURVE_RANGE", "CostFunction", "cost_curve", "crossovers"]

#: The chart's traffic axis: from a tenth of today's traffic to a thousand times it.
CURVE_RANGE = (0.1, 1000.0)
_POINTS_PER_DECADE = 48
_BISECTIONS = 40

CostFunction = Callable[[float], float | None]


def _grid() -> tuple[float, ...]:
    low, high = (math.log10(v) for v in CURVE_RANGE)
    steps = round((high - low) * _POINTS_PER_DECADE)
    return tuple(10 ** (low + (high - low) * i / steps) for i in range(steps + 1))


def cost_curve(costs: Mapping[str, CostFunction]) -> CostCurve:
    grid = _grid()
    return CostCurve(grid, {vendor: tuple(cost(m) for m in grid) for vendor, cost in costs.items()})


def _sign(a: float | None, b: float | None) -> int | None:
    """-1 if ``a`` is cheaper, 1 if ``b`` is, 0 on a tie, None if either is unknown."""
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


def _narrow(a: CostFunction, b: CostFunction, low: float, high: float, before: int) -> float:
    """The multiplier in ``[low, high]`` where the cheaper of the two stops being ``before``."""
    for _ in range(_BISECTIONS):
        middle = math.sqrt(low * high)
        if _sign(a(middle), b(middle)) == before:
            low = middle
        else:
            high = middle
    return high


def _pair(
    names: tuple[str, str], a: CostFunction, b: CostFunction, grid: tuple[float, ...]
) -> list[Crossover]:
    found = []
    last_sign, last_at = 0, grid[0]
    for m in grid:
        sign = _sign(a(m), b(m))
        if sign is None:
            last_sign = 0  # a gap in either curve: no crossing through it
            continue
        if sign and last_sign and sign != last_sign:
            at = _narrow(a, b, last_at, m, last_sign)
            below, above = names if last_sign < 0 else names[::-1]
            cheaper = a if above == names[0] else b
            found.append(Crossover(below, above, at, cheaper(at)))
        if sign:
            last_sign, last_at = sign, m
    return found


def crossovers(curve: CostCurve, costs: Mapping[str, CostFunction]) -> tuple[Crossover, ...]:
    """Every point where two vendors swap places as the cheaper one, by multiplier."""
    vendors = list(costs)
    found = []
    for i, first in enumerate(vendors):
        for second in vendors[i + 1 :]:
            found += _pair((first, second), costs[first], costs[second], curve.multipliers)
    return tuple(sorted(found, key=lambda c: (c.at_multiplier, c.cheaper_below, c.cheaper_above)))
