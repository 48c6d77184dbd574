"""The outbox's commands: ``relay`` and ``outbox migrate | status | dead``.

Kept apart from ``cli.py`` so each file stays about one thing; ``cli.py``
registers these with ``add_outbox_commands``. The outbox's database comes
from ``--database``, else ``REALTIME_BRIDGE_DATABASE_URL`` (or the TOML
file), else the embedded SQLite default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import SecretStr

from .outbox import Outbox, OutboxStatus
from .settings import BridgeSettings

__all__ = ["add_outbox_commands"]

Emit = Callable[[argparse.Namespace, object, str], None]
Settings = Callable[[argparse.Namespace], BridgeSettings]
Table = Callable[[list[str], list[list[object]]], str]


def _progress_printer() -> Callable[[int], None] | None:
    """A one-line counter on stderr while draining, only when a person is watching."""
    if not sys.stderr.isatty():
        return None

    def show(done: int) -> None:
        print(f"\rdrained {done} event(s)...", end="", file=sys.stderr, flush=True)

    return show


class OutboxCommands:
    """Handlers sharing the CLI's settings reader, output and table helpers."""

    def __init__(self, settings: Settings, emit: Emit, table: Table) -> None:
        self._settings = settings
        self._emit = emit
        self._table = table

    def _outbox(self, args: argparse.Namespace) -> Outbox:
        settings = self._settings(args)
        if getattr(args, "database", None):
            settings = settings.model_copy(update={"database_url": SecretStr(args.database)})
        return Outbox.from_settings(settings)

    def _with_outbox(
        self, args: argparse.Namespace, work: Callable[[Outbox], Awaitable[Any]]
    ) -> Any:
        async def run() -> Any:
            async with self._outbox(args) as outbox:
                return await work(outbox)

        return asyncio.run(run())

    # -- relay ------------------------------------------------------------------

    def relay(self, args: argparse.Namespace) -> int:
        """Publish committed rows until SIGTERM or SIGINT, finishing the batch in hand."""

        async def run(outbox: Outbox) -> int:
            await outbox.migrate()
            relay = outbox.relay(batch_size=args.batch_size, poll_interval=args.poll)
            if args.metrics_port is not None:
                from .outbox.metrics import serve_metrics  # needs the metrics extra

                serve_metrics(relay, args.metrics_port)
            try:
                if args.drain:
                    return await relay.drain(progress=_progress_printer())
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(NotImplementedError):
                        loop.add_signal_handler(signum, relay.stop)
                await relay.run()
                return relay.stats.published
            finally:
                await relay.aclose()

        published = self._with_outbox(args, run)
        if args.drain:
            print(f"drained: {published} event(s) published")
        return 0

    # -- outbox ... ------------------------------------------------------------

    def migrate(self, args: argparse.Namespace) -> int:
        applied = self._with_outbox(args, lambda outbox: outbox.migrate())
        print(f"applied: {', '.join(applied)}" if applied else "the outbox schema is up to date")
        return 0

    def status(self, args: argparse.Namespace) -> int:
        status: OutboxStatus = self._with_outbox(args, lambda outbox: outbox.status())
        machine = {
            "pending": status.pending,
            "waiting_retry": status.waiting_retry,
            "dead": status.dead,
            "sent": status.sent,
            "oldest_pending_seconds": status.oldest_pending_seconds,
            "sent_last_minute": status.sent_last_minute,
        }
        age = status.oldest_pending_seconds
        rows: list[list[object]] = [
            ["pending", status.pending],
            ["  of which waiting to retry", status.waiting_retry],
            ["oldest pending", "-" if age is None else f"{age:.1f}s"],
            ["dead", status.dead],
            ["sent (kept for history)", status.sent],
            ["sent in the last minute", status.sent_last_minute],
        ]
        self._emit(args, machine, self._table(["outbox", "value"], rows))
        return 0

    def dead(self, args: argparse.Namespace) -> int:
        if args.action == "list":
            return self._list_dead(args)
        if not args.ids and args.channel is None and not args.all:
            raise ValueError(f"dead {args.action}: name event ids, --channel CHANNEL, or --all")

        async def act(outbox: Outbox) -> int:
            if args.action == "retry":
                return await outbox.retry_dead(*args.ids, channel=args.channel)
            return await outbox.purge_dead(*args.ids, channel=args.channel)

        count = self._with_outbox(args, act)
        verb = "queued again" if args.action == "retry" else "purged"
        print(f"{count} dead event(s) {verb}")
        return 0

    def _list_dead(self, args: argparse.Namespace) -> int:
        rows = self._with_outbox(
            args, lambda outbox: outbox.dead(limit=args.limit, channel=args.channel)
        )
        machine = [
            {
                "id": r.event_id,
                "channel": r.channel,
                "type": r.type,
                "attempts": r.attempts,
                "reason": r.reason,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ]
        table = [[r.event_id, r.channel, r.type, r.attempts, r.reason or ""] for r in rows]
        text = self._table(["id", "channel", "type", "attempts", "reason"], table)
        self._emit(args, machine, text if rows else "no dead events")
        return 0


def add_outbox_commands(
    commands: Any,
    add: Callable[..., argparse.ArgumentParser],
    shared: list[argparse.ArgumentParser],
    handlers: OutboxCommands,
) -> None:
    """Register ``relay`` and ``outbox ...`` on the CLI's subcommand parser."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database", metavar="URL", help="outbox database URL")
    relay = add(
        commands, "relay", handlers.relay, "publish committed outbox rows", [*shared, database]
    )
    relay.add_argument("--batch-size", type=int, default=500, help="rows per claim (default 500)")
    relay.add_argument("--poll", type=float, default=1.0, help="seconds between polls (default 1)")
    relay.add_argument("--drain", action="store_true", help="publish what is due, then exit")
    relay.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    relay.add_argument("--log-json", action="store_true", help="log one JSON object per line")

    outbox = commands.add_parser("outbox", help="the outbox's schema, backlog and dead letters")
    sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    add(sub, "migrate", handlers.migrate, "create or update the outbox tables", [*shared, database])
    add(
        sub,
        "status",
        handlers.status,
        "backlog, oldest pending, dead, throughput",
        [*shared, database],
    )
    dead = add(sub, "dead", handlers.dead, "list, retry or purge dead events", [*shared, database])
    dead.add_argument("action", choices=["list", "retry", "purge"])
    dead.add_argument("ids", nargs="*", metavar="ID", help="event ids (retry/purge)")
    dead.add_argument("--channel", help="only this channel")
    dead.add_argument("--all", action="store_true", help="retry/purge every dead event")
    dead.add_argument("--limit", type=int, default=100, help="list at most N (default 100)")
