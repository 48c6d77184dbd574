"""What each real-time vendor would cost, from your own staging traffic.

Measure the traffic (from the outbox's sent rows, or from the events you
published), estimate each vendor's cheapest fitting plan and monthly bill at
1x, 10x and 100x that traffic, and render the answer as a terminal table,
JSON or an HTML report with a chart::

    from realtime_bridge.costs import Traffic, estimate, render_table

    traffic = Traffic.from_events(events, period=timedelta(days=1), subscribers_per_channel=3)
    print(render_table(estimate(traffic)))

Prices come from dated, sourced TOML files shipped with the package
(``realtime_bridge/costs/pricing``); ``load_catalog("ours.toml")`` applies a
team's own prices on top. ``realtime-bridge costs`` does all of it from the
command line. See docs/costs.md.
"""

from __future__ import annotations

from .catalog import Catalog, load_catalog
from .estimate import DEFAULT_MULTIPLIERS, estimate
from .html import render_html
from .models import Figure, Plan, Rate, VendorPricing
from .occupancy import sample_subscribers
from .outbox_traffic import traffic_from_outbox
from .report import (
    REPORT_SCHEMA,
    BreakPoint,
    CostReport,
    Crossover,
    FlaggedFigure,
    Notice,
    PlanEstimate,
    VendorEstimate,
    render_json,
)
from .shadow import (
    ShadowMeasurement,
    load_shadow_stats,
    record_shadow_stats,
    shadow_measurements,
    write_shadow_stats,
)
from .text import render_summary, render_table
from .traffic import ChannelTraffic, Connections, Period, Subscribers, Traffic

__all__ = [
    "DEFAULT_MULTIPLIERS",
    "REPORT_SCHEMA",
    "BreakPoint",
    "Catalog",
    "ChannelTraffic",
    "Connections",
    "CostReport",
    "Crossover",
    "Figure",
    "FlaggedFigure",
    "Notice",
    "Period",
    "Plan",
    "PlanEstimate",
    "Rate",
    "ShadowMeasurement",
    "Subscribers",
    "Traffic",
    "VendorEstimate",
    "VendorPricing",
    "estimate",
    "load_catalog",
    "load_shadow_stats",
    "record_shadow_stats",
    "render_html",
    "render_json",
    "render_summary",
    "render_table",
    "sample_subscribers",
    "shadow_measurements",
    "traffic_from_outbox",
    "write_shadow_stats",
]
