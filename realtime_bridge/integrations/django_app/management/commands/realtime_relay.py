"""``manage.py realtime_relay``: publish committed outbox rows until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime_bridge.errors import RealtimeBridgeError
from realtime_bridge.integrations.django import new_outbox, run_relay


class Command(BaseCommand):
    help = (
        "Publish committed realtime_bridge outbox rows through the adapters of "
        "settings.REALTIME_BRIDGE, until SIGTERM or SIGINT (finishing the batch in hand)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drain", action="store_true", help="publish what is due, then exit")
        parser.add_argument("--batch-size", type=int, default=500, help="rows per claim")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            published = asyncio.run(
                run_relay(
                    new_outbox(),
                    drain=options["drain"],
                    batch_size=options["batch_size"],
                    poll_interval=options["poll"],
                )
            )
        except RealtimeBridgeError as exc:  # a setup problem: one line, not a traceback
            raise CommandError(str(exc)) from exc
        if options["drain"]:
            self.stdout.write(f"drained: {published} event(s) published")
