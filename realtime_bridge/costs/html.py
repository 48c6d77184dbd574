"""The cost report as one self-contained HTML file: the answer first, then the why.

No external file, script or font: the chart is inline SVG and the style sits
in the page, so the file can be mailed, attached to a ticket or opened from
CI artefacts years later and still read the same. Every value is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC
from html import escape

from .chart import render_chart
from .findings import number
from .models import UNITS
from .report import CostReport, PlanEstimate, VendorEstimate
from .text import money, times

__all__ = ["render_html"]

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { margin-top: 1.8em; font-size: 1.2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
.muted { color: #666; } .flag { color: #b35900; } .warn { color: #a01818; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border-bottom: 1px solid #ddd; padding: .35em .7em; text-align: left;
         vertical-align: top; }
th { background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #e8f6ee; font-weight: 600; }
figure { margin: 1em 0; } figure svg { width: 100%; height: auto; }
ul { padding-left: 1.3em; } li { margin: .2em 0; }
details { margin: .6em 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; cells are pre-escaped HTML (``<td>`` attributes included, if any)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<td{cls}>{escape(text)}</td>"


def _svg(report: CostReport) -> str:
    svg = render_chart(report).decode("utf-8")
    return svg[svg.index("<svg") :]


def _traffic(report: CostReport) -> str:
    t = report.traffic
    rows = [
        (
            "Period",
            f"{t.period.start.astimezone(UTC):%Y-%m-%d %H:%M} to "
            f"{t.period.end.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
            f"({number(t.period.hours)} hours)",
        ),
        ("Events", f"{number(t.events)} ({number(t.bytes)} bytes), on {len(t.channels)} channels"),
        ("Largest event", f"{number(t.largest_event())} bytes"),
        ("Subscribers per event", f"{number(t.fan_out)} ({t.subscribers.source})"),
        ("Peak connections", f"{number(t.connections.peak)} ({t.connections.source})"),
        ("Peak day", f"{number(t.peak_day_events)} events"),
        ("Peak rate", f"{number(t.peak_events_per_second)} events/s"),
        ("A month at 1x", f"{number(round(t.events * t.month_factor))} events published"),
    ]
    return _table(["Measured", ""], ([_td(k), _td(v)] for k, v in rows))


def _cell(estimate: PlanEstimate, best: bool) -> str:
    mark = " *" if estimate.flagged else ""
    if not estimate.fits:
        return _td(f"no listed plan fits{mark}", "warn")
    return _td(f"{estimate.plan}: {money(estimate.cost)}{mark}", "best" if best else "")


def _answer(report: CostReport) -> str:
    cheapest = {m: set(report.cheapest(m)[0]) for m in report.multipliers}
    headers = ["Vendor", *(f"{times(m)} traffic" for m in report.multipliers), "Breaks first"]
    rows = []
    for vendor in report.vendors:
        cells = [_td(vendor.name)]
        cells += [_cell(e, vendor.vendor in cheapest[e.multiplier]) for e in vendor.estimates]
        point = vendor.breaks_first
        cells.append(_td(point.message if point else "no limit known"))
        rows.append(cells)
    return _table(headers, rows)


def _crossovers(report: CostReport) -> str:
    if not report.crossovers:
        return "<p class='muted'>No crossovers between 0.1x and 1000x.</p>"
    names = {v.vendor: v.name for v in report.vendors}
    items = "".join(
        f"<li>at {escape(times(c.at_multiplier))}: {escape(names[c.cheaper_above])} becomes "
        f"cheaper than {escape(names[c.cheaper_below])} ({escape(money(c.cost))}/month)</li>"
        for c in report.crossovers
    )
    return f"<ol>{items}</ol>"


def _warnings(report: CostReport) -> Iterator[str]:
    for notice in report.warnings:
        yield f"<li class='warn'>{escape(notice.message)}</li>"
    for vendor in report.vendors:
        seen: dict[str, list[str]] = {}
        for estimate in vendor.estimates:
            for notice in estimate.warnings:
                seen.setdefault(notice.message, []).append(times(estimate.multiplier))
        for message, where in seen.items():
            yield (
                f"<li><b>{escape(vendor.name)}</b> [{escape(', '.join(where))}]: "
                f"{escape(message)}</li>"
            )


def _shadow(report: CostReport) -> str:
    if not report.shadow:
        return (
            "<p class='muted'>No shadow measurements: run staging with shadow adapters and pass "
            "the file <code>write_shadow_stats</code> writes as <code>--shadow-stats</code>.</p>"
        )
    names = {v.vendor: v.name for v in report.vendors}
    headers = ["Vendor", "Adapter", "Role", "Calls", "Error rate", "p50 ms", "p99 ms"]
    headers += ["Rejected", "Dropped"]
    rows = []
    for m in report.shadow:
        rate = "-" if m.error_rate is None else f"{100 * m.error_rate:.2f}%"
        p50 = "-" if m.latency_p50_ms is None else f"{m.latency_p50_ms:g}"
        p99 = "-" if m.latency_p99_ms is None else f"{m.latency_p99_ms:g}"
        rejected = "-" if m.rejected is None else str(m.rejected)
        values = [str(m.calls), rate, p50, p99, rejected, str(m.dropped)]
        vendor = names.get(m.vendor, m.vendor)
        rows.append([_td(vendor), _td(m.label), _td(m.role), *(_td(v, "num") for v in values)])
    return _table(headers, rows)


def _detail(vendor: VendorEstimate) -> str:
    parts = [f"<details><summary>{escape(vendor.name)}</summary>"]
    if vendor.note:
        parts.append(f"<p class='flag'>{escape(vendor.note)}</p>")
    parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in vendor.notes) + "</ul>")
    for estimate in vendor.estimates:
        parts.append(_estimate(estimate))
    parts.append("<h3>Breaks, nearest first</h3><ul>")
    parts += [f"<li>{escape(b.message)}</li>" for b in vendor.breaks] or ["<li>none known</li>"]
    parts.append("</ul><h3>Sources</h3><ul>")
    for source, as_of in vendor.sources:
        when = as_of.isoformat() if as_of else "date unknown"
        parts.append(f"<li>{escape(source)} (as of {escape(when)})</li>")
    parts.append("</ul></details>")
    return "".join(parts)


def _estimate(estimate: PlanEstimate) -> str:
    title = f"At {times(estimate.multiplier)}: {estimate.plan}, {money(estimate.cost)}/month"
    items = [[_td(item.item), _td(money(item.amount), "num")] for item in estimate.items]
    usage = [
        [_td(UNITS[unit][0]), _td(number(round(value, 2)), "num")]
        for unit, value in estimate.usage.items()
    ]
    flags = "".join(
        f"<li class='flag'>{escape(f.what)}: {escape(f.caveat)}</li>" for f in estimate.flagged
    )
    return (
        f"<h3>{escape(title)}</h3>{_table(['Bill', 'USD'], items)}"
        f"{_table(['Usage counted', ''], usage)}"
        + (f"<p>Uncertain figures used:</p><ul>{flags}</ul>" if flags else "")
    )


def render_html(report: CostReport) -> str:
    """The whole report as one HTML page, chart included (needs the ``costs`` extra)."""
    chart = _svg(report)
    warnings = "".join(_warnings(report)) or "<li class='muted'>none</li>"
    assumptions = "".join(f"<li>{escape(a)}</li>" for a in report.assumptions)
    details = "".join(_detail(v) for v in report.vendors)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Real-time vendor costs from staging traffic</title>
<style>{_STYLE}</style></head>
<body>
<h1>Real-time vendor costs, from your staging traffic</h1>
<p class="muted">Generated {escape(report.generated_at.isoformat())} by realtime_bridge.
Prices change: every figure below carries its date and source; * marks an estimate resting on
a figure the sources left uncertain, undated or unknown.</p>
<h2>What each vendor would cost per month</h2>
{_answer(report)}
<h2>Cost as traffic grows</h2>
<figure>{chart}</figure>
<h3>Crossovers</h3>
{_crossovers(report)}
<h2>Warnings</h2>
<ul>{warnings}</ul>
<h2>Measured in staging</h2>
{_traffic(report)}
<h2>Shadow comparison</h2>
{_shadow(report)}
<h2>Each vendor in detail</h2>
{details}
<h2>Assumptions</h2>
<ul>{assumptions}</ul>
</body></html>
"""
