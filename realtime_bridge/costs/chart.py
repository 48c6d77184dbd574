"""The chart a person decides from: monthly cost against traffic, one line per vendor.

Traffic runs on a log axis from a tenth of today's to a thousand times it,
so today's bill and the bill after years of growth share one picture; cost
is log-scaled too, with free plans drawn on the axis floor. Vertical lines
mark the report's multipliers, numbered dots mark where two vendors swap
places, and a line stops where the price becomes unknown (a custom plan).

matplotlib (the ``costs`` extra) is imported only here, when a chart is
drawn, and only through ``Figure`` and the Agg canvas: no pyplot, no global
backend switch in the caller's process. Every artist that a test (or a
reader of the SVG) looks for carries an id: ``series-<vendor>``,
``crossover-<n>``, ``multiplier-<x>``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from .. import _serving
from .findings import number
from .report import CostReport
from .text import money, times

__all__ = ["COLOURS", "render_chart"]

#: One colour per vendor, the same in every report (colour-blind-safe palette).
COLOURS = {
    "pusher": "#5A3FC0",
    "ably": "#E1402C",
    "supabase": "#1F9E6E",
    "redis": "#B8860B",
    "liveblocks": "#2878B5",
}
_OTHER = "#666666"
_FREE_FLOOR = 1.0  # dollars: where a free plan sits on the log axis
_OUTLIER = 30.0


def _import_matplotlib() -> tuple[Any, Any, Any]:
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:
        raise _serving.missing_extra(
            exc, what="the HTML cost report's chart", extra="costs", modules={"matplotlib"}
        ) from None
    return matplotlib, Figure, FigureCanvasAgg


def _floor(cost: float | None) -> float:
    if cost is None:
        return math.nan
    return max(cost, _FREE_FLOOR)


def _today(report: CostReport) -> dict[str, float | None]:
    """Each vendor's cost at the grid point nearest today's traffic (1x)."""
    grid = report.curve.multipliers
    nearest = min(range(len(grid)), key=lambda i: abs(math.log10(grid[i])))
    return {vendor: costs[nearest] for vendor, costs in report.curve.costs.items()}


def _outliers(report: CostReport) -> tuple[float | None, dict[str, float]]:
    """A cost-axis ceiling that keeps the close race readable, and the vendors above it.

    A vendor costing over 30 times the cheapest today would squash every other
    line to the bottom of the chart: it is left to run off the top, and the
    legend gives its cost today instead.
    """
    today = _today(report)
    known = [c for c in today.values() if c]
    if not known:
        return None, {}
    cheapest = max(min(known), _FREE_FLOOR)
    above = {v: c for v, c in today.items() if c and c > _OUTLIER * cheapest}
    rest = [c for v, cs in report.curve.costs.items() if v not in above for c in cs if c]
    if not above or not rest:
        return None, {}
    return max(rest) * 3, above


def _series(ax: Any, report: CostReport, above: dict[str, float]) -> list[str]:
    """One line per vendor with a known cost somewhere; the names of those without."""
    unpriced: list[str] = []
    drawn: list[str] = []
    names = {v.vendor: v for v in report.vendors}
    for vendor, costs in report.curve.costs.items():
        if all(c is None for c in costs):
            unpriced.append(names[vendor].name)
            continue
        label = names[vendor].name + (" (uncertain pricing)" if names[vendor].uncertain else "")
        if vendor in above:
            label += f": {money(above[vendor])}/month today, off the top of the chart"
        colour = COLOURS.get(vendor, _OTHER)
        ys = [_floor(c) for c in costs]
        (line,) = ax.plot(report.curve.multipliers, ys, color=colour, lw=2.2, label=label)
        line.set_gid(f"series-{vendor}")
        below = len(drawn) % 2 == 1  # alternate labels above and below the lines
        drawn.append(vendor)
        _mark_unknown_tail(ax, report.curve.multipliers, ys, colour, vendor, below=below)
    return unpriced


def _mark_unknown_tail(
    ax: Any, xs: Sequence[float], ys: Sequence[float], colour: str, vendor: str, *, below: bool
) -> None:
    """Where the cost turns unknown (a custom plan, or no listed plan fits), end the line
    with an open circle."""
    for i in range(1, len(ys)):
        if not math.isnan(ys[i - 1]) and math.isnan(ys[i]):
            (dot,) = ax.plot([xs[i - 1]], [ys[i - 1]], "o", ms=7, mfc="white", mec=colour, mew=2)
            dot.set_gid(f"unknown-{vendor}-{i}")
            ax.annotate(
                "no known price beyond",
                (xs[i - 1], ys[i - 1]),
                xytext=(6, -14 if below else 6),
                textcoords="offset points",
                fontsize=8,
                color=colour,
            )


def _multipliers(ax: Any, report: CostReport) -> None:
    for m in report.multipliers:
        line = ax.axvline(m, color="#999999", lw=1, ls=":", zorder=0)
        line.set_gid(f"multiplier-{number(m)}")
        label = "today" if m == 1 else times(m)
        ax.annotate(
            label,
            (m, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
        )


def _crossovers(ax: Any, report: CostReport) -> None:
    for n, crossover in enumerate(report.crossovers, start=1):
        y = _floor(crossover.cost)
        colour = COLOURS.get(crossover.cheaper_above, _OTHER)
        (dot,) = ax.plot(
            [crossover.at_multiplier], [y], "o", ms=9, mfc="white", mec="black", mew=1.2, zorder=5
        )
        dot.set_gid(f"crossover-{n}")
        ax.annotate(
            str(n),
            (crossover.at_multiplier, y),
            ha="center",
            va="center",
            fontsize=7,
            color=colour,
            weight="bold",
            zorder=6,
        )


def _axes(ax: Any, report: CostReport, unpriced: list[str], top: float | None) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(report.curve.multipliers[0], report.curve.multipliers[-1])
    if top is not None:
        ax.set_ylim(_FREE_FLOOR / 1.6, top)
    ax.set_xlabel("Traffic, as a multiple of the measured staging traffic (log scale)")
    ax.set_ylabel("Monthly cost, USD (log scale; free plans on the floor)")
    ax.xaxis.set_major_formatter(_formatter(lambda x: times(x)))
    ax.yaxis.set_major_formatter(_formatter(lambda y: "free" if y <= _FREE_FLOOR else money(y)))
    ax.grid(True, which="major", color="#dddddd", lw=0.8)
    ax.grid(True, which="minor", color="#f0f0f0", lw=0.5)
    t = report.traffic
    ax.set_title(
        f"Monthly cost by vendor as traffic grows (today: {number(t.events)} events in "
        f"{number(t.period.hours)} h, {number(t.fan_out)} subscribers per event)",
        fontsize=10,
    )
    handles, labels = ax.get_legend_handles_labels()
    for name in unpriced:
        (blank,) = ax.plot([], [], " ")
        handles.append(blank)
        labels.append(f"{name}: price unknown (set it with --pricing)")
    if report.crossovers:
        (dot,) = ax.plot([], [], "o", ms=9, mfc="white", mec="black")
        handles.append(dot)
        labels.append("crossover (numbered as listed in the report)")
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncols=2,
        fontsize=8,
        frameon=False,
    )


def _formatter(text: Any) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: text(value))


def render_chart(report: CostReport, *, format: str = "svg") -> bytes:
    """The chart as SVG (for the HTML report) or PNG bytes."""
    matplotlib, figure_class, agg = _import_matplotlib()
    settings = {
        "svg.fonttype": "none",
        "svg.hashsalt": "realtime-bridge-costs",
        "path.simplify": False,  # every computed point is drawn, so the SVG can be checked
    }
    with matplotlib.rc_context(settings):
        figure = figure_class(figsize=(10, 6.4), layout="constrained")
        agg(figure)  # this figure's own Agg canvas: the caller's pyplot backend is untouched
        ax = figure.add_subplot()
        top, above = _outliers(report)
        unpriced = _series(ax, report, above)
        _multipliers(ax, report)
        _crossovers(ax, report)
        _axes(ax, report, unpriced, top)
        out = io.BytesIO()
        metadata = {"Date": None} if format == "svg" else {}
        figure.savefig(out, format=format, metadata=metadata, dpi=110)
    return out.getvalue()
