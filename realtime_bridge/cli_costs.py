"""``realtime-bridge costs``: each vendor's monthly bill, from the outbox's sent traffic.

Kept apart from ``cli.py``, which registers it with ``add_costs_commands``.
The traffic comes from the outbox's database (``--database``, else
``REALTIME_BRIDGE_DATABASE_URL`` or the TOML file, else the embedded SQLite
default), over the last ``--days`` (7) or ``--since`` a time. Fan-out comes
from ``--sample-occupancy`` (asking the configured primary adapter) or
``--subscribers-per-channel``. Output: a table, ``--json``, and with
``--html FILE`` a self-contained HTML report with a chart (``costs`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from .bridge import Bridge
from .errors import ConfigurationError
from .settings import BridgeSettings

__all__ = ["add_costs_commands", "run_costs"]

DEFAULT_DAYS = 7.0


# -- argument types: argparse turns their errors into usage messages ----------------------


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {raw!r}")
    return value


def _not_negative(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number 0 or more, got {raw!r}")
    return value


def _moment(raw: str) -> datetime:
    """An ISO 8601 date or time; UTC unless it names its offset."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO 8601 date or time such as 2026-08-01 or 2026-08-01T09:00Z, got {raw!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _names(raw: str) -> list[str]:
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one vendor, e.g. pusher,ably")
    return names


def _multipliers(raw: str) -> list[float]:
    return [_positive(part.strip()) for part in raw.split(",") if part.strip()] or [1.0]


# -- the command --------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> BridgeSettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "url", None):
        overrides["url"] = SecretStr(args.url)
    try:
        return BridgeSettings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"cannot read realtime_bridge.toml: {exc}") from exc


def _database_url(args: argparse.Namespace, settings: BridgeSettings) -> str:
    from .outbox import DEFAULT_DATABASE_URL

    if args.database:
        return str(args.database)
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return DEFAULT_DATABASE_URL


def _period(args: argparse.Namespace) -> Any:
    from .costs import Period

    now = datetime.now(UTC)
    if args.since is not None:
        if args.since >= now:
            raise ValueError(f"--since {args.since.isoformat()} is not in the past")
        return Period(args.since, now)
    return Period.ending(now, timedelta(days=args.days or DEFAULT_DAYS))


async def _measure(args: argparse.Namespace, settings: BridgeSettings) -> Any:
    from .costs import Subscribers, sample_subscribers, traffic_from_outbox

    assumed = args.subscribers_per_channel
    traffic = await traffic_from_outbox(
        _database_url(args, settings),
        _period(args),
        subscribers=Subscribers.assumed(1.0 if assumed is None else assumed),
        peak_connections=args.peak_connections,
        mean_connections=args.mean_connections,
    )
    if not args.sample_occupancy or not traffic.channels:
        return traffic
    busiest = sorted(traffic.channels, key=lambda name: -traffic.channels[name].events)
    async with Bridge.from_settings(settings) as bridge:
        samples = await sample_subscribers(bridge, busiest, limit=args.sample_limit)
    if not samples:
        return traffic
    default = assumed if assumed is not None else sum(samples.values()) / len(samples)
    return traffic.with_subscribers(Subscribers.sampled(samples, default=default))


def run_costs(args: argparse.Namespace) -> int:
    """Measure, estimate, print; write the HTML report if asked."""
    from .costs import estimate, load_catalog, load_shadow_stats, render_json, render_table

    catalog = load_catalog(args.pricing, vendors=args.vendors)
    shadow = load_shadow_stats(args.shadow_stats) if args.shadow_stats else []
    settings = _settings(args)
    traffic = asyncio.run(_measure(args, settings))
    report = estimate(traffic, catalog, multipliers=args.multipliers, shadow=shadow)
    if args.html:
        from .costs import render_html

        page = render_html(report)
        try:
            Path(args.html).write_text(page, "utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write the HTML report to {args.html!r}: {exc.strerror or exc}"
            ) from exc
        print(f"wrote the HTML report to {args.html}", file=sys.stderr)
    print(render_json(report) if args.json else render_table(report))
    return 0


def add_costs_commands(
    commands: Any,
    add: Callable[..., argparse.ArgumentParser],
    shared: list[argparse.ArgumentParser],
) -> None:
    """Register ``costs`` on the CLI's subcommand parser."""
    costs = add(
        commands,
        "costs",
        run_costs,
        "each vendor's monthly bill at 1x/10x/100x the outbox's sent traffic",
        shared,
    )
    costs.add_argument("--database", metavar="URL", help="outbox database URL")
    when = costs.add_mutually_exclusive_group()
    when.add_argument(
        "--days", type=_positive, metavar="N", help=f"measure the last N days ({DEFAULT_DAYS:g})"
    )
    when.add_argument("--since", type=_moment, metavar="TIME", help="measure from TIME (ISO 8601)")
    costs.add_argument(
        "--subscribers-per-channel",
        type=_not_negative,
        metavar="N",
        help="subscribers receiving each event (default 1, or the sample mean with "
        "--sample-occupancy)",
    )
    costs.add_argument(
        "--sample-occupancy",
        action="store_true",
        help="count each busy channel's subscribers now, through the configured primary adapter",
    )
    costs.add_argument(
        "--sample-limit", type=int, default=50, metavar="N", help="channels to sample (50)"
    )
    costs.add_argument(
        "--peak-connections", type=_not_negative, metavar="N", help="peak concurrent clients"
    )
    costs.add_argument(
        "--mean-connections",
        type=_not_negative,
        metavar="N",
        help="mean concurrent clients, for connection-minutes (default: the peak)",
    )
    costs.add_argument("--pricing", metavar="FILE", help="your own prices (TOML), over ours")
    costs.add_argument(
        "--vendors", type=_names, metavar="LIST", help="only these, e.g. pusher,ably,supabase"
    )
    costs.add_argument(
        "--multipliers",
        type=_multipliers,
        default=[1.0, 10.0, 100.0],
        metavar="LIST",
        help="traffic multipliers to price (1,10,100)",
    )
    costs.add_argument("--html", metavar="FILE", help="also write an HTML report with a chart")
    costs.add_argument(
        "--shadow-stats",
        metavar="FILE",
        help="shadow adapters' measurements, written in staging by write_shadow_stats",
    )
