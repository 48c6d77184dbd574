"""The cost report as plain text: a table a person reads in a terminal, then the detail.

First what was measured, then one row per vendor (plan and monthly bill at
each multiplier, ``*`` where an uncertain figure is involved), what breaks
first, crossovers, warnings grouped across multipliers, the uncertain figures,
the assumptions, and the shadow measurements if any.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC

from .findings import number
from .report import CostReport, PlanEstimate, VendorEstimate

__all__ = ["money", "render_summary", "render_table", "times"]


def money(amount: float | None) -> str:
    if amount is None:
        return "unknown"
    return f"${amount:,.0f}" if amount == int(amount) else f"${amount:,.2f}"


def times(multiplier: float) -> str:
    return f"{number(multiplier)}x"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _cell(estimate: PlanEstimate) -> str:
    mark = " *" if estimate.flagged else ""
    if not estimate.fits:
        return f"no plan fits ({estimate.plan}){mark}"
    return f"{estimate.plan} {money(estimate.cost)}{mark}"


def _summary(report: CostReport) -> Iterator[str]:
    t = report.traffic
    start, end = (f"{d.astimezone(UTC):%Y-%m-%d %H:%M}" for d in (t.period.start, t.period.end))
    yield (
        f"Measured: {number(t.events)} events, {number(t.bytes)} bytes, "
        f"{len(t.channels)} channels, over {t.period.length} ({start} to {end} UTC)"
    )
    yield (
        f"  {number(t.fan_out)} subscribers per event ({t.subscribers.source}); peak "
        f"{number(t.connections.peak)} connections ({t.connections.source}); peak "
        f"{number(t.peak_events_per_second)} events/s"
    )
    yield f"  a month at 1x: {number(round(t.events * t.month_factor))} events published"


def _vendors(report: CostReport) -> Iterator[str]:
    header = ["vendor", *(times(m) for m in report.multipliers)]
    rows = [header, ["-" * len(h) for h in header]]
    for vendor in report.vendors:
        rows.append([vendor.name, *(_cell(e) for e in vendor.estimates)])
    yield from _columns(rows)
    names = {v.vendor: v.name for v in report.vendors}
    for multiplier in report.multipliers:
        cheapest, cost = report.cheapest(multiplier)
        if cheapest:
            who = ", ".join(names[vendor] for vendor in cheapest)
            yield f"cheapest at {times(multiplier)}: {who} ({money(cost)}/month)"


def _breaks(report: CostReport) -> Iterator[str]:
    yield "What breaks first:"
    for vendor in report.vendors:
        point = vendor.breaks_first
        yield f"  {vendor.name}: " + (point.message if point else "no limit known")


def _crossovers(report: CostReport) -> Iterator[str]:
    if not report.crossovers:
        return
    names = {v.vendor: v.name for v in report.vendors}
    yield "Crossovers (monthly costs cross as traffic grows):"
    for c in report.crossovers:
        yield (
            f"  at {times(c.at_multiplier)}: {names[c.cheaper_above]} becomes cheaper than "
            f"{names[c.cheaper_below]} ({money(c.cost)}/month)"
        )


def _warnings(vendor: VendorEstimate) -> Iterator[str]:
    """Each distinct warning once, with the multipliers it applies to."""
    seen: dict[str, list[str]] = {}
    for estimate in vendor.estimates:
        for notice in estimate.warnings:
            seen.setdefault(notice.message, []).append(times(estimate.multiplier))
    for message, where in seen.items():
        yield f"  {vendor.name} [{', '.join(where)}]: {message}"


def _flags(vendor: VendorEstimate) -> Iterator[str]:
    """Each flagged figure once; the ones only missing a date, counted on one line."""
    seen: dict[str, str] = {}
    undated = set()
    for flag in (flag for estimate in vendor.estimates for flag in estimate.flagged):
        if flag.undated_only:
            undated.add(flag.what)
        else:
            seen.setdefault(flag.what, flag.caveat)
    for what, caveat in seen.items():
        yield f"  {vendor.name}, {what}: {caveat}"
    if undated:
        yield f"  {vendor.name}: {len(undated)} more figure(s) used have no as_of date"


def _shadow_rows(report: CostReport) -> Iterator[str]:
    names = {v.vendor: v.name for v in report.vendors}
    header = ["vendor", "adapter", "role", "calls", "error rate", "p50 ms", "p99 ms"]
    header += ["rejected", "dropped"]
    rows = [header, ["-" * len(h) for h in header]]
    for m in report.shadow:
        rate = "-" if m.error_rate is None else f"{100 * m.error_rate:.2f}%"
        rows.append(
            [
                names.get(m.vendor, m.vendor),
                m.label,
                m.role,
                str(m.calls),
                rate,
                "-" if m.latency_p50_ms is None else f"{m.latency_p50_ms:g}",
                "-" if m.latency_p99_ms is None else f"{m.latency_p99_ms:g}",
                "-" if m.rejected is None else str(m.rejected),
                str(m.dropped),
            ]
        )
    yield from _columns(rows)


def render_summary(report: CostReport) -> str:
    """The measurement, the bills and what breaks first: the table without its fine print.

    The embedded demo ends with it; ``render_table`` adds crossovers, warnings,
    flagged figures and assumptions.
    """
    lines = [*_summary(report), "", *_vendors(report), "", *_breaks(report)]
    return "\n".join([*lines, "", "(* an uncertain figure: `realtime-bridge costs` says why)"])


def render_table(report: CostReport) -> str:
    """The whole report as text for a terminal (``realtime-bridge costs``)."""
    lines = [*_summary(report), "", *_vendors(report), "", *_breaks(report)]
    lines += ["", *_crossovers(report)] if report.crossovers else []
    warnings = [w for v in report.vendors for w in _warnings(v)]
    warnings = [f"  {n.message}" for n in report.warnings] + warnings
    lines += ["", "Warnings:", *warnings] if warnings else []
    flags = [f for v in report.vendors for f in _flags(v)]
    lines += ["", "Uncertain figures (* in the table):", *flags] if flags else []
    lines += ["", "Assumptions:", *(f"  - {a}" for a in report.assumptions)]
    if report.shadow:
        lines += ["", "Shadow comparison (staging):", *_shadow_rows(report)]
    return "\n".join(lines)
