"""``realtime-bridge demo``: the live page (default) or the narrated tour (``--tour``).

Kept apart from ``cli.py``, which registers it with ``add_demo_commands``.
The live demo needs nothing installed or running: a SQLite file in a
temporary directory, the memory adapter, and the gateway in this process.
``--postgres`` and ``--redis`` run the same demo on those servers instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .cli_emulate import _sigterm_as_interrupt

if TYPE_CHECKING:
    from .demo.live import DemoOptions, LiveDemo

__all__ = ["add_demo_commands"]

LOCAL_POSTGRES = "postgresql://127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def add_demo_commands(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``demo`` on the CLI's subcommand parser."""
    demo = add(commands, "demo", run_demo, "the live demo page, database-first (or --tour)")
    demo.add_argument(
        "--tour", action="store_true", help="print a narrated walk-through instead (no page)"
    )
    demo.add_argument(
        "--postgres",
        nargs="?",
        const=LOCAL_POSTGRES,
        metavar="URL",
        help=f"keep the outbox in PostgreSQL (default URL {LOCAL_POSTGRES}) instead of SQLite",
    )
    demo.add_argument(
        "--redis",
        nargs="?",
        const=LOCAL_REDIS,
        metavar="URL",
        help=f"publish to Redis (default URL {LOCAL_REDIS}) instead of memory://",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8765, help="port (8765; 0 for a free one)")
    demo.add_argument(
        "--interval", type=float, default=0.5, metavar="SECONDS", help="between writes (0.5)"
    )
    until = demo.add_mutually_exclusive_group()
    until.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    until.add_argument("--events", type=int, metavar="N", help="stop after N writes")
    demo.set_defaults(narrated=True)


def run_demo(args: argparse.Namespace) -> int:
    """The tour, or the live demo until Ctrl-C, ``--duration`` or ``--events``."""
    if args.tour:
        from .demo import tour

        asyncio.run(tour.run())
        return 0
    from .demo.live import DemoOptions

    options = DemoOptions(
        database_url=args.postgres,
        redis_url=args.redis,
        host=args.host,
        port=args.port,
        interval=args.interval,
    )
    try:
        with _sigterm_as_interrupt():
            asyncio.run(_live(options, duration=args.duration, events=args.events))
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    return 0


async def _live(options: DemoOptions, *, duration: float | None, events: int | None) -> None:
    from .demo.live import LiveDemo

    async with LiveDemo(options) as demo, demo.serving() as url:
        print(_banner(demo, url), flush=True)
        writing = demo.write(events) if events is not None else demo.write_forever()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await _narrated(demo, writing)
        await demo.settled()
        print(_summary(demo), flush=True)
        print("\nWhat this run's traffic would cost each month, measured from the outbox as")
        print(
            "`realtime-bridge costs` measures staging traffic (a short run makes a shaky month):\n"
        )
        print(await demo.cost_comparison(), flush=True)


async def _narrated(demo: LiveDemo, writing: Awaitable[object]) -> None:
    """Run the writer, printing each commit as it happens."""
    printed = 0

    def catch_up() -> None:
        nonlocal printed
        for event in demo.written[printed:]:
            order = event.data
            print(f"  committed order #{order.id} -> {order.status} (event {event.id})")
        printed = len(demo.written)

    async def narrate() -> None:
        while True:
            catch_up()
            demo.count_clients()
            await asyncio.sleep(0.1)

    narrator = asyncio.create_task(narrate())
    try:
        await writing
    finally:
        narrator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await narrator
        catch_up()


def _banner(demo: LiveDemo, url: str) -> str:
    database = "SQLite" if demo.database_url.startswith("sqlite:") else "PostgreSQL"
    adapter = "memory://" if demo.feed is not None else "Redis"
    return (
        f"realtime_bridge demo: {database} outbox -> relay -> {adapter} -> gateway -> browser\n"
        f"open {url}/ in a browser; Ctrl-C stops"
    )


def _summary(demo: LiveDemo) -> str:
    return (
        f"{len(demo.written)} changes committed, each with its event; all of them published; "
        f"at most {demo.peak_clients} browser(s) connected at once"
    )
