"""``manage.py realtime_outbox migrate|status|dead ...``: the CLI's outbox commands.

The same commands as ``realtime-bridge outbox ...``, on the outbox database
Django's settings name, so nobody copies a database URL out of the settings.
The URL reaches the CLI through ``REALTIME_BRIDGE_DATABASE_URL`` for the
duration of the call, never on its command line: an argument parser quotes
arguments back in its errors, and this one holds a password.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime_bridge import cli
from realtime_bridge.errors import RealtimeBridgeError
from realtime_bridge.integrations.django import bridge_settings

_VARIABLE = "REALTIME_BRIDGE_DATABASE_URL"


class Command(BaseCommand):
    help = (
        "The realtime-bridge outbox commands (migrate, status, dead list|retry|purge) on the "
        "outbox database of settings.REALTIME_BRIDGE; e.g. `realtime_outbox status --json`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("outbox_args", nargs=argparse.REMAINDER, metavar="COMMAND ...")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            database = bridge_settings().database_url
        except RealtimeBridgeError as exc:
            raise CommandError(str(exc)) from exc
        assert database is not None  # bridge_settings always fills it in
        with _variable(_VARIABLE, database.get_secret_value()):
            code = cli.main(["outbox", *options["outbox_args"]])
        if code:
            raise SystemExit(code)


@contextmanager
def _variable(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved
