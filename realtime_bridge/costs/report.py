"""The cost report as data, and its JSON form (stable keys, documented in docs/costs.md).

``estimate()`` builds a ``CostReport``; the renderers (``render_json`` here,
``render_table`` in ``text.py``, ``render_html`` in ``html.py``) only format
it, so the terminal, the JSON and the HTML always say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .plans import CostItem
from .shadow import ShadowMeasurement
from .traffic import Traffic

__all__ = [
    "REPORT_SCHEMA",
    "BreakPoint",
    "CostCurve",
    "CostReport",
    "Crossover",
    "FlaggedFigure",
    "Notice",
    "PlanEstimate",
    "VendorEstimate",
    "render_json",
]

REPORT_SCHEMA = "realtime_bridge.costs/1"


@dataclass(frozen=True)
class Notice:
    """A warning worth a reader's attention; ``code`` is stable, ``message`` is prose."""

    code: str
    message: str


@dataclass(frozen=True)
class FlaggedFigure:
    """A figure the estimate rests on that the sources left uncertain, undated or unknown.

    ``kind`` is ``"figure"``, or ``"plan"``/``"vendor"`` when the whole plan or the
    vendor's whole pricing is flagged (then only ``note`` is set).
    """

    what: str
    value: float | None
    as_of: date | None
    source: str | None
    note: str | None
    kind: str = "figure"

    @property
    def undated_only(self) -> bool:
        """Known and unremarked, only its date is missing."""
        return self.kind == "figure" and self.value is not None and not self.note

    @property
    def caveat(self) -> str:
        if self.kind != "figure":
            return self.note or "uncertain"
        reasons = ["unknown"] if self.value is None else []
        reasons += ["date unknown"] if self.as_of is None else []
        reasons += [self.note] if self.note else []
        return "; ".join(reasons) or "uncertain"


@dataclass(frozen=True)
class PlanEstimate:
    """One vendor at one traffic multiplier: the plan, the bill, what to watch."""

    multiplier: float
    plan: str
    fits: bool
    cost: float | None
    items: tuple[CostItem, ...]
    usage: Mapping[str, float]
    warnings: tuple[Notice, ...]
    flagged: tuple[FlaggedFigure, ...]


@dataclass(frozen=True)
class BreakPoint:
    """The first limit growing traffic would hit, and at what multiple of today's traffic.

    ``at_multiplier`` is 0 when the limit is already passed at any traffic (an
    event too large), ``scope`` says whether a platform limit (every plan) or
    the largest listed plan gives out.
    """

    unit: str
    at_multiplier: float
    limit: float
    scope: str
    plan: str | None
    message: str


@dataclass(frozen=True)
class VendorEstimate:
    vendor: str
    name: str
    uncertain: bool
    note: str | None
    notes: tuple[str, ...]
    sources: tuple[tuple[str, date | None], ...]
    estimates: tuple[PlanEstimate, ...]
    #: Every limit growing traffic would hit, nearest first.
    breaks: tuple[BreakPoint, ...]

    @property
    def breaks_first(self) -> BreakPoint | None:
        return self.breaks[0] if self.breaks else None

    def at(self, multiplier: float) -> PlanEstimate:
        for estimate in self.estimates:
            if estimate.multiplier == multiplier:
                return estimate
        raise KeyError(f"no estimate at {multiplier}x for {self.vendor}")


@dataclass(frozen=True)
class Crossover:
    """Where two vendors' monthly costs cross as traffic grows."""

    cheaper_below: str
    cheaper_above: str
    at_multiplier: float
    cost: float | None


@dataclass(frozen=True)
class CostCurve:
    """Monthly cost per vendor over a range of multipliers (None: unknown there)."""

    multipliers: tuple[float, ...]
    costs: Mapping[str, tuple[float | None, ...]]


@dataclass(frozen=True)
class CostReport:
    generated_at: datetime
    traffic: Traffic
    multipliers: tuple[float, ...]
    vendors: tuple[VendorEstimate, ...]
    crossovers: tuple[Crossover, ...]
    curve: CostCurve
    assumptions: tuple[str, ...]
    warnings: tuple[Notice, ...]
    shadow: tuple[ShadowMeasurement, ...]

    def vendor(self, name: str) -> VendorEstimate:
        for vendor in self.vendors:
            if vendor.vendor == name:
                return vendor
        raise KeyError(f"no vendor {name!r} in this report")

    def cheapest(self, multiplier: float) -> tuple[list[str], float | None]:
        """The vendors with the lowest known bill at ``multiplier`` (ties: all of them)."""
        costs = {v.vendor: v.at(multiplier).cost for v in self.vendors}
        known = {vendor: cost for vendor, cost in costs.items() if cost is not None}
        if not known:
            return [], None
        lowest = min(known.values())
        return [vendor for vendor, cost in known.items() if cost == lowest], lowest

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see docs/costs.md, "The JSON report")."""
        return {
            "schema": REPORT_SCHEMA,
            "generated_at": self.generated_at.isoformat(),
            "multipliers": list(self.multipliers),
            "traffic": traffic_json(self.traffic),
            "assumptions": list(self.assumptions),
            "warnings": [_notice(n) for n in self.warnings],
            "vendors": [_vendor(v) for v in self.vendors],
            "cheapest": [_cheapest(self, m) for m in self.multipliers],
            "crossovers": [_crossover(c) for c in self.crossovers],
            "chart": {
                "multipliers": [_round(m, 4) for m in self.curve.multipliers],
                "monthly_cost": {
                    v: [_money(c) for c in costs] for v, costs in self.curve.costs.items()
                },
            },
            "shadow": [_shadow(s) for s in self.shadow],
        }


def render_json(report: CostReport) -> str:
    """The report as indented JSON text."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


# -- pieces of the JSON document --------------------------------------------------------


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None:
        return None
    rounded = round(float(value), digits)
    return 0.0 if rounded == 0 else rounded


def _money(value: float | None) -> float | None:
    return _round(value, 2)


def _date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _size_histogram(traffic: Traffic) -> list[dict[str, int]]:
    """Events by envelope size, in power-of-two buckets (``max_bytes`` inclusive)."""
    buckets: dict[int, int] = {}
    for (envelope, _), count in traffic.sizes.items():
        ceiling = 64
        while ceiling < envelope:
            ceiling *= 2
        buckets[ceiling] = buckets.get(ceiling, 0) + count
    return [{"max_bytes": b, "events": n} for b, n in sorted(buckets.items())]


def traffic_json(traffic: Traffic) -> dict[str, Any]:
    busiest = traffic.busiest_channel
    top = sorted(traffic.channels.items(), key=lambda i: (-i[1].events, i[0]))[:10]
    subscribers = traffic.subscribers
    return {
        "period": {
            "start": traffic.period.start.isoformat(),
            "end": traffic.period.end.isoformat(),
            "hours": _round(traffic.period.hours),
        },
        "events": traffic.events,
        "bytes": traffic.bytes,
        "channels": len(traffic.channels),
        "month_factor": _round(traffic.month_factor, 4),
        "events_per_month": round(traffic.events * traffic.month_factor),
        "peak_day_events": _round(traffic.peak_day_events),
        "peak_events_per_second": traffic.peak_events_per_second,
        "peak_concurrent_channels": traffic.peak_concurrent_channels,
        "largest_event_bytes": traffic.largest_event(),
        "busiest_channel": None
        if busiest is None
        else {
            "channel": busiest[0],
            "peak_events_per_second": busiest[1].peak_events_per_second,
            "events": busiest[1].events,
        },
        "subscribers": {
            "per_event": _round(traffic.fan_out),
            "default": _round(subscribers.default),
            "sampled_channels": len(subscribers.per_channel),
            "source": subscribers.source,
        },
        "connections": {
            "peak": _round(traffic.connections.peak),
            "mean": _round(traffic.connections.mean),
            "source": traffic.connections.source,
        },
        "top_channels": [
            {
                "channel": name,
                "events": c.events,
                "bytes": c.bytes,
                "active_hours": c.active_hours,
                "peak_events_per_second": c.peak_events_per_second,
                "subscribers": _round(subscribers.of(name)),
            }
            for name, c in top
        ],
        "hourly": [{"hour": h.isoformat(), "events": n} for h, n in traffic.hourly.items()],
        "size_histogram": _size_histogram(traffic),
    }


def _notice(notice: Notice) -> dict[str, str]:
    return {"code": notice.code, "message": notice.message}


def _flagged(flag: FlaggedFigure) -> dict[str, Any]:
    return {
        "figure": flag.what,
        "kind": flag.kind,
        "value": flag.value,
        "as_of": _date(flag.as_of),
        "source": flag.source,
        "caveat": flag.caveat,
    }


def _item(item: CostItem) -> dict[str, Any]:
    return {
        "item": item.item,
        "unit": item.unit,
        "quantity": _round(item.quantity),
        "amount": _money(item.amount),
    }


def _estimate(estimate: PlanEstimate) -> dict[str, Any]:
    return {
        "multiplier": estimate.multiplier,
        "plan": estimate.plan,
        "fits": estimate.fits,
        "monthly_cost": _money(estimate.cost),
        "cost_items": [_item(i) for i in estimate.items],
        "usage": {unit: _round(value) for unit, value in estimate.usage.items()},
        "warnings": [_notice(n) for n in estimate.warnings],
        "uncertain": [_flagged(f) for f in estimate.flagged],
    }


def _break(point: BreakPoint | None) -> dict[str, Any] | None:
    if point is None:
        return None
    return {
        "unit": point.unit,
        "at_multiplier": _round(point.at_multiplier),
        "limit": point.limit,
        "scope": point.scope,
        "plan": point.plan,
        "message": point.message,
    }


def _vendor(vendor: VendorEstimate) -> dict[str, Any]:
    return {
        "vendor": vendor.vendor,
        "name": vendor.name,
        "uncertain": vendor.uncertain,
        "note": vendor.note,
        "notes": list(vendor.notes),
        "sources": [{"source": s, "as_of": _date(d)} for s, d in vendor.sources],
        "estimates": [_estimate(e) for e in vendor.estimates],
        "breaks_first": _break(vendor.breaks_first),
        "breaks": [_break(b) for b in vendor.breaks],
    }


def _cheapest(report: CostReport, multiplier: float) -> dict[str, Any]:
    vendors, cost = report.cheapest(multiplier)
    return {"multiplier": multiplier, "vendors": vendors, "monthly_cost": _money(cost)}


def _crossover(crossover: Crossover) -> dict[str, Any]:
    return {
        "cheaper_below": crossover.cheaper_below,
        "cheaper_above": crossover.cheaper_above,
        "at_multiplier": _round(crossover.at_multiplier),
        "monthly_cost": _money(crossover.cost),
    }


def _shadow(measurement: ShadowMeasurement) -> dict[str, Any]:
    return {
        "adapter": measurement.label,
        "vendor": measurement.vendor,
        "role": measurement.role,
        "calls": measurement.calls,
        "failures": measurement.failures,
        "error_rate": _round(measurement.error_rate, 4),
        "events": measurement.events,
        "rejected": measurement.rejected,
        "dropped": measurement.dropped,
        "latency_p50_ms": measurement.latency_p50_ms,
        "latency_p99_ms": measurement.latency_p99_ms,
        "last_error": measurement.last_error,
    }
