"""Django: events written through Django's connection, in the view's own transaction.

``enqueue(event, ...)`` inside ``transaction.atomic()`` inserts the outbox rows
with Django's cursor, next to the model rows of the same transaction: both
commit, or neither. Outside a transaction it refuses, because in Django's
autocommit mode the events would commit on their own, before (or without)
the rows they describe.

Settings come from ``settings.REALTIME_BRIDGE``, a dict of ``BridgeSettings``
keys (``url``, ``fallback_urls``, ``shadow_urls``, ``retry_attempts``, ...;
``REALTIME_BRIDGE_*`` variables fill in what it leaves out), plus ``using``,
the database alias holding the outbox (default ``"default"``). Unless
``database_url`` is given, the relay finds the outbox through that alias's
``DATABASES`` entry, so it always reads the database the views write to.

``INSTALLED_APPS += ["realtime_bridge.integrations.django_app"]`` adds a
migration that creates the outbox tables (``manage.py migrate``, test
databases included) and the ``realtime_relay`` and ``realtime_outbox``
management commands. PostgreSQL and SQLite are supported, as by the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from pydantic import ValidationError

from ..errors import ConfigurationError
from ..events import Event
from ..outbox import Outbox
from ..outbox.enqueue import _PSYCOPG_ARRAYS, _PSYCOPG_ROW, _SQLITE_ROW, Row, rows_of
from ..settings import BridgeSettings

__all__ = [
    "DEFAULT_ALIAS",
    "bridge_settings",
    "enqueue",
    "get_outbox",
    "migrate_outbox",
    "new_outbox",
    "outbox_alias",
    "outbox_database_url",
    "run_relay",
]

DEFAULT_ALIAS = "default"
_SETTING = "REALTIME_BRIDGE"
# Django's cursors take "%s" on every backend (its SQLite cursor turns them into "?").
_SQLITE_ROW_FORMAT = _SQLITE_ROW.replace("?", "%s")


# -- settings --------------------------------------------------------------------------------


def _configured() -> dict[str, Any]:
    """``settings.REALTIME_BRIDGE`` with lower-case keys, checked against what is known."""
    raw = getattr(settings, _SETTING, None) or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"settings.{_SETTING} must be a dict, got {type(raw).__name__}")
    conf = {str(key).lower(): value for key, value in raw.items()}
    known = {*BridgeSettings.model_fields, "using"}
    if unknown := sorted(set(conf) - known):
        raise ConfigurationError(
            f"settings.{_SETTING} has unknown key(s) {unknown}; known: {sorted(known)}"
        )
    return conf


def outbox_alias() -> str:
    """The alias of the database holding the outbox (``REALTIME_BRIDGE["using"]``)."""
    alias = _configured().get("using", DEFAULT_ALIAS)
    if alias not in settings.DATABASES:
        raise ConfigurationError(
            f"settings.{_SETTING}['using'] is {alias!r}, which DATABASES does not define"
        )
    return str(alias)


def bridge_settings() -> BridgeSettings:
    """``BridgeSettings`` from ``settings.REALTIME_BRIDGE``, then ``REALTIME_BRIDGE_*``."""
    conf = _configured()
    conf.pop("using", None)
    alias = outbox_alias()
    if "database_url" not in conf:
        conf["database_url"] = outbox_database_url(alias)
    try:
        return BridgeSettings(**conf)
    except ValidationError as exc:  # name the keys and the rules, never the values (secrets)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"settings.{_SETTING}: {problems}") from None


def outbox_database_url(alias: str = DEFAULT_ALIAS) -> str:
    """The outbox URL of a Django database: ``postgresql://...`` or ``sqlite:///path``."""
    connection = connections[alias]
    config = connection.settings_dict
    name = str(config.get("NAME") or "")
    if connection.vendor == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigurationError(
                f"database {alias!r} is an in-memory (or URI-named) SQLite database, which "
                f"a relay cannot open: set settings.{_SETTING}['database_url'] or use a file"
            )
        return f"sqlite:///{name}"
    if connection.vendor == "postgresql":
        if not name:
            raise ConfigurationError(
                f"database {alias!r} has no NAME: set settings.{_SETTING}['database_url']"
            )
        return _postgres_url(config, name)
    raise ConfigurationError(
        f"database {alias!r} is {connection.vendor}; the outbox supports PostgreSQL and SQLite"
    )


def _postgres_url(config: Mapping[str, Any], name: str) -> str:
    user = quote(str(config.get("USER") or ""), safe="")
    password = quote(str(config.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = str(config.get("HOST") or "")
    query = {}
    if host.startswith("/"):  # a Unix socket directory
        query["host"], host = host, ""
    port = f":{config['PORT']}" if config.get("PORT") else ""
    options = config.get("OPTIONS") or {}
    if "sslmode" in options:
        query["sslmode"] = str(options["sslmode"])
    suffix = f"?{urlencode(query)}" if query else ""
    return f"postgresql://{credentials}{host}{port}/{quote(name, safe='')}{suffix}"


# -- the process's outbox ----------------------------------------------------------------------

_outbox: Outbox | None = None
_outbox_lock = threading.Lock()


def get_outbox() -> Outbox:
    """This process's ``Outbox`` from the settings, built once (again when they change).

    ``enqueue`` needs it only to check events against every adapter's limits;
    it opens no connection of its own.
    """
    global _outbox
    with _outbox_lock:
        if _outbox is None:
            _outbox = new_outbox()
        return _outbox


def new_outbox() -> Outbox:
    """A fresh ``Outbox`` from the settings, for a relay or a command to open and close."""
    return Outbox.from_settings(bridge_settings())


def _forget_outbox(*, setting: str, **_: object) -> None:
    global _outbox
    if setting in {_SETTING, "DATABASES"}:
        with _outbox_lock:
            _outbox = None


setting_changed.connect(_forget_outbox, dispatch_uid="realtime_bridge.forget_outbox")


# -- enqueue ---------------------------------------------------------------------------------


def enqueue(*events: Event, outbox: Outbox | None = None) -> None:
    """Store ``events`` in the open transaction of the outbox's database alias.

    Call it inside ``transaction.atomic(using=...)`` (or a view under
    ``ATOMIC_REQUESTS``). Every event is checked against every configured
    adapter's limits first, so a bad event raises before any insert and the
    transaction is untouched. An event id already stored is skipped.
    """
    bridge = (outbox or get_outbox()).bridge
    alias = outbox_alias()
    connection = connections[alias]
    if connection.get_autocommit():
        raise ConfigurationError(
            f"enqueue() outside a transaction on database {alias!r} would commit the events "
            f"on their own: call it inside transaction.atomic(using={alias!r})"
        )
    bridge.validate(events)
    rows = rows_of(events)
    if rows:
        _insert(connection, rows)


def _insert(connection: BaseDatabaseWrapper, rows: list[Row]) -> None:
    """The outbox's own INSERT statements, run through Django's cursor."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.executemany(_SQLITE_ROW_FORMAT, rows)
        elif connection.vendor != "postgresql":
            raise ConfigurationError(
                f"database {connection.alias!r} is {connection.vendor}; the outbox supports "
                "PostgreSQL and SQLite"
            )
        elif len(rows) == 1:
            cursor.execute(_PSYCOPG_ROW, rows[0])
        else:
            cursor.execute(_PSYCOPG_ARRAYS, [list(column) for column in zip(*rows, strict=True)])


# -- the schema and the relay, for the app's migration and commands ----------------------------


def migrate_outbox(connection: BaseDatabaseWrapper) -> list[str]:
    """Create or update the outbox tables on ``connection`` if it is the outbox's alias.

    SQLite runs the migration on Django's own connection (a test database may
    live in memory, out of any other connection's reach); PostgreSQL through
    the outbox's own, which takes the migration lock the relays respect.
    """
    if connection.alias != outbox_alias():
        return []
    if connection.vendor == "sqlite":
        from ..outbox.sqlite import SqliteDatabase

        connection.ensure_connection()
        raw = connection.connection
        return SqliteDatabase(str(connection.settings_dict["NAME"]))._migrate(raw)
    return asyncio.run(_migrate(outbox_database_url(connection.alias)))


async def _migrate(url: str) -> list[str]:
    outbox = Outbox(url)
    async with outbox:
        return await outbox.migrate()


async def run_relay(
    outbox: Outbox, *, drain: bool = False, batch_size: int = 500, poll_interval: float = 1.0
) -> int:
    """Migrate, then publish until SIGTERM/SIGINT (or, with ``drain``, until nothing is due).

    Returns how many events were published. The outbox is closed afterwards.
    """
    async with outbox:
        await outbox.migrate()
        relay = outbox.relay(batch_size=batch_size, poll_interval=poll_interval)
        try:
            if drain:
                return await relay.drain()
            _stop_on_signals(relay.stop)
            await relay.run()
            return relay.stats.published
        finally:
            await relay.aclose()


def _stop_on_signals(
    stop: Callable[[], None], signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Finish the batch in hand on SIGTERM/SIGINT (only the main thread can handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in signums:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop)
