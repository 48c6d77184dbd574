"""A staging cost comparison: synthetic traffic through shadows, then the HTML report.

In staging, the app runs as in production with the vendors under evaluation as
shadows (``REALTIME_BRIDGE_SHADOW_URLS``): every batch the primary publishes is
copied to each shadow in the background, and ``bridge.stats()`` records how
each one behaved. A few days later ``realtime-bridge costs`` prices that
traffic at each vendor. This script does the whole round in one process, in
seconds, with nothing to sign up for:

- the primary is ``memory://``; the shadows are the Ably, Supabase and
  Liveblocks emulators of ``realtime_bridge.testing``, served here on free
  ports (add real ones, or soketi's ``pusher://`` URL, with ``--shadow``);
- a simulated staging day of a small shop (order updates, a support chat,
  large inventory snapshots) is replayed through the Bridge at ``--rate``
  events per second;
- the shadows' measurements go to a JSON file (``write_shadow_stats``, what a
  staging process writes), are read back (``load_shadow_stats``, what the
  report reads), and the HTML report with its chart goes to the path given.

Run (needs the ``costs`` extra for the chart: ``pip install 'realtime-bridge[costs]'``):

    python examples/staging_costs.py costs.html
    python examples/staging_costs.py costs.html --events 2000 \\
        --shadow 'pusher://KEY:SECRET@127.0.0.1:6001/APP_ID?tls=false'

The replay compresses a day into seconds, so the shadows see a far higher
rate than the day had. The Supabase emulator is therefore set to the Pro
plan's quota (500 messages/s), and the replay paced under it; the report
prices the day as simulated (each event's ``ts``), not the replay.
tests/test_examples_smoke.py runs this script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from realtime_bridge import Bridge, Event
from realtime_bridge.costs import (
    Period,
    ShadowMeasurement,
    Traffic,
    estimate,
    load_shadow_stats,
    render_html,
    render_summary,
    write_shadow_stats,
)

#: The simulated staging day (any past day would do: the report prices its length).
DAY = Period(datetime(2026, 8, 3, tzinfo=UTC), datetime(2026, 8, 4, tzinfo=UTC))
ORDER_CHANNELS = 40
STATUSES = ("new", "paid", "packed", "shipped", "delivered")
#: Subscribers per channel, as `--sample-occupancy` would have sampled them in staging.
SUBSCRIBERS = {
    **{f"orders.{n}": 2.0 for n in range(ORDER_CHANNELS)},
    "chat.support": 12.0,
    "inventory.snapshot": 30.0,
}
#: Browsers connected at the busiest moment, as the gateway's or load balancer's metrics say.
PEAK_CONNECTIONS = 150
#: Supabase Pro's messages-per-second quota: the emulated project is a Pro one.
SUPABASE_QUOTA = 500


def synthetic_day(count: int, seed: int) -> list[Event]:
    """``count`` events spread over the simulated day, in time order; the same for one seed.

    Mostly small order updates; some chat messages; a few inventory snapshots
    of about 6 KB, under every vendor's size limit (the Bridge checks each
    event against every shadow too, and refuses the batch otherwise).
    """
    rng = random.Random(seed)
    span = DAY.end - DAY.start
    events = []
    for n in range(count):
        at = DAY.start + span * ((n + rng.random()) / count)
        roll = rng.random()
        if roll < 0.75:
            order = rng.randrange(ORDER_CHANNELS)
            status = rng.choice(STATUSES)
            data = {"id": order, "status": status, "total_cents": rng.randrange(500, 50_000)}
            events.append(Event(channel=f"orders.{order}", type="order.updated", data=data, ts=at))
        elif roll < 0.97:
            user = f"customer-{rng.randrange(300)}"
            data = {"user": user, "body": "hello " * rng.randrange(3, 60)}
            events.append(Event(channel="chat.support", type="message.created", data=data, ts=at))
        else:
            stock = {f"sku-{sku:04d}": rng.randrange(100) for sku in range(300)}
            events.append(
                Event(channel="inventory.snapshot", type="inventory.changed", data=stock, ts=at)
            )
    return events


@contextlib.asynccontextmanager
async def emulated_vendors() -> AsyncIterator[list[str]]:
    """The Ably, Supabase and Liveblocks emulators, served on free ports: their adapter URLs."""
    from realtime_bridge.testing import ably, liveblocks, supabase

    ably_project = ably.AblyEmulator()
    supabase_project = supabase.SupabaseEmulator(messages_per_second=SUPABASE_QUOTA)
    liveblocks_project = liveblocks.LiveblocksEmulator()
    async with (
        ably.serve(ably_project) as ably_base,
        supabase.serve(supabase_project) as supabase_base,
        liveblocks.serve(liveblocks_project) as liveblocks_base,
    ):
        yield [
            f"ably://{ably_project.key}@{host_of(ably_base)}?tls=false",
            f"supabase://{supabase_project.service_key}@{host_of(supabase_base)}"
            f"?tls=false&messages_per_second={SUPABASE_QUOTA}",
            f"liveblocks://{liveblocks_project.secret}@{host_of(liveblocks_base)}?tls=false",
        ]


def host_of(base_url: str) -> str:
    return base_url.removeprefix("http://")


async def replay(bridge: Bridge, events: Sequence[Event], *, rate: float, batch: int) -> None:
    """Publish ``events`` in batches, paced at ``rate`` events per second (a staging pace)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for first in range(0, len(events), batch):
        await asyncio.sleep(max(0.0, started + first / rate - loop.time()))
        await bridge.publish_many(events[first : first + batch])


async def measure_shadows(
    events: Sequence[Event], stats_path: Path, *, rate: float, extra_shadows: Sequence[str]
) -> list[ShadowMeasurement]:
    """Replay ``events`` through memory:// with the shadows; what their stats file says."""
    async with emulated_vendors() as emulated:
        bridge = Bridge.from_url("memory://", shadow_urls=[*emulated, *extra_shadows])
        async with bridge:
            await replay(bridge, events, rate=rate, batch=25)
            await bridge.drain_shadows(within=30)  # copies still queued would count as rejected
            write_shadow_stats(bridge, stats_path)  # what the staging process writes
    return load_shadow_stats(stats_path)  # what `realtime-bridge costs --shadow-stats` reads


def describe(measurement: ShadowMeasurement, width: int) -> str:
    """One line per adapter: what it took, refused and failed, and how fast."""
    p50 = measurement.latency_p50_ms
    latency = "n/a" if p50 is None else f"{p50:.1f} ms"
    rejected = "-" if measurement.rejected is None else measurement.rejected
    return (
        f"  {measurement.role:8} {measurement.label:{width}}  events {measurement.events:>6}  "
        f"rejected {rejected:>4}  failures {measurement.failures:>3}  p50 {latency}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    output: Path = args.output
    stats_path: Path = args.stats or output.with_name(f"{output.stem}.shadow-stats.json")
    events = synthetic_day(args.events, args.seed)
    measurements = asyncio.run(
        measure_shadows(events, stats_path, rate=args.rate, extra_shadows=args.shadow)
    )
    traffic = Traffic.from_events(
        events, period=DAY, subscribers_per_channel=SUBSCRIBERS, peak_connections=PEAK_CONNECTIONS
    )
    report = estimate(traffic, shadow=measurements)
    output.write_text(render_html(report), "utf-8")
    print(render_summary(report))
    print("shadows:")
    width = max(len(measurement.label) for measurement in measurements)
    for measurement in measurements:
        print(describe(measurement, width))
    print(f"shadow stats: {stats_path}")
    print(f"HTML report:  {output}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("output", type=Path, help="where to write the HTML report")
    parser.add_argument(
        "--stats",
        type=Path,
        help="the shadow stats file (default: NAME.shadow-stats.json beside OUTPUT)",
    )
    parser.add_argument("--events", type=positive_int, default=600, help="events in the day")
    parser.add_argument("--rate", type=positive_float, default=250.0, help="events/s replayed")
    parser.add_argument("--seed", type=int, default=7, help="the synthetic day's seed (7)")
    parser.add_argument(
        "--shadow",
        action="append",
        default=[],
        metavar="URL",
        help="another shadow adapter URL (soketi's pusher://, a vendor's staging app); repeatable",
    )
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


if __name__ == "__main__":
    main()
