"""Writing outbox rows inside the caller's own transaction, whatever the driver.

The application already holds a transaction: the outbox row must commit or
roll back with the domain rows, so the insert runs on the caller's
connection and never commits by itself. Accepted: SQLAlchemy 2 connections
and sessions (sync and async), asyncpg, psycopg 3 (sync and async), sqlite3
and aiosqlite. Drivers are recognised by their module, so none of them is
imported unless the caller already uses it.

One statement per call, however many events: on PostgreSQL the rows travel
as arrays and are unnested server-side. An event id already in the table is
skipped (``ON CONFLICT DO NOTHING``), so enqueuing twice stores once.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from ..events import Event

__all__ = ["insert_events", "rows_of"]

_COLUMNS = "event_id, channel, type, v, data"

# ``data`` travels as text and becomes json on the server: a JSON codec the application
# set on its connection (asyncpg's ``set_type_codec("json", encoder=json.dumps)``) would
# otherwise encode the already-encoded text again, storing a JSON string.
_PG_ARRAYS = (
    f"INSERT INTO realtime_outbox ({_COLUMNS}) "
    "SELECT * FROM unnest(CAST({ids} AS text[]), CAST({channels} AS text[]), "
    "CAST({types} AS text[]), CAST({versions} AS smallint[]), "
    "CAST(CAST({datas} AS text[]) AS json[])) "
    "ON CONFLICT (event_id) DO NOTHING"
)
# One event (the common case) as plain VALUES: cheaper to plan and run than unnest.
_PG_ROW = (
    f"INSERT INTO realtime_outbox ({_COLUMNS}) "
    "VALUES ({ids}, {channels}, {types}, {versions}, CAST(CAST({datas} AS text) AS json)) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_SQLITE_ROW = f"INSERT OR IGNORE INTO realtime_outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"

_ASYNCPG_NAMES = {"ids": "$1", "channels": "$2", "types": "$3", "versions": "$4", "datas": "$5"}
_ASYNCPG_ROW = _PG_ROW.format(**_ASYNCPG_NAMES)
_ASYNCPG_ARRAYS = _PG_ARRAYS.format(**_ASYNCPG_NAMES)
_PSYCOPG_NAMES = dict.fromkeys(_ASYNCPG_NAMES, "%s")
_PSYCOPG_ROW = _PG_ROW.format(**_PSYCOPG_NAMES)
_PSYCOPG_ARRAYS = _PG_ARRAYS.format(**_PSYCOPG_NAMES)
_SQLALCHEMY_ARRAYS = _PG_ARRAYS.format(**{name: f":{name}" for name in _ASYNCPG_NAMES})

Row = tuple[str, str, str, int, str]


def rows_of(events: Sequence[Event]) -> list[Row]:
    """The column values of each event, ``data`` as the JSON text made at validation."""
    return [(e.id, e.channel, e.type, e.v, e.data_json.decode()) for e in events]


def _columns(rows: list[Row]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


# The classes accepted per driver family, by name (subclasses too): a connection or
# session holds the caller's transaction; an engine or a pool does not, so it is refused.
_ACCEPTED = {
    "asyncpg": {"Connection", "PoolConnectionProxy"},
    "psycopg": {"Connection", "AsyncConnection"},
    "sqlalchemy": {
        "Connection",
        "Session",
        "scoped_session",
        "AsyncConnection",
        "AsyncSession",
        "async_scoped_session",
    },
    "aiosqlite": {"Connection"},
}


def _kind(conn: object) -> str:
    """Which driver family ``conn`` belongs to, from its class's module and name."""
    if isinstance(conn, sqlite3.Connection):
        return "sqlite3"
    for cls in type(conn).__mro__:
        module = cls.__module__.split(".", 1)[0]
        if cls.__name__ in _ACCEPTED.get(module, ()):
            return module
    raise ConfigurationError(
        f"outbox.enqueue cannot use a {type(conn).__module__}.{type(conn).__qualname__}: pass a "
        "SQLAlchemy connection or session, or an asyncpg, psycopg 3, sqlite3 or aiosqlite "
        "connection, in the transaction that writes your domain rows"
    )


async def insert_events(conn: Any, events: Sequence[Event]) -> None:
    """Insert ``events`` on ``conn``, in its current transaction."""
    rows = rows_of(events)
    if not rows:
        return
    kind = _kind(conn)
    if kind == "sqlite3":
        conn.executemany(_SQLITE_ROW, rows)
    elif kind == "aiosqlite":
        await conn.executemany(_SQLITE_ROW, rows)
    elif kind == "asyncpg":
        if len(rows) == 1:
            await conn.execute(_ASYNCPG_ROW, *rows[0])
        else:
            await conn.execute(_ASYNCPG_ARRAYS, *_columns(rows))
    elif kind == "psycopg":
        await _psycopg(conn, rows)
    else:
        await _sqlalchemy(conn, rows)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _psycopg(conn: Any, rows: list[Row]) -> None:
    if len(rows) == 1:
        await _maybe_await(conn.execute(_PSYCOPG_ROW, rows[0]))
    else:
        await _maybe_await(conn.execute(_PSYCOPG_ARRAYS, _columns(rows)))


async def _sqlalchemy(conn: Any, rows: list[Row]) -> None:
    from sqlalchemy import text  # the caller uses SQLAlchemy, so it is installed

    if _sqlalchemy_dialect(conn) == "sqlite":
        statement = text(_SQLITE_ROW.replace("?", ":p{}").format(*range(5)))
        params: Any = [{f"p{i}": value for i, value in enumerate(row)} for row in rows]
    else:
        statement = text(_SQLALCHEMY_ARRAYS)
        ids, channels, types, versions, datas = _columns(rows)
        params = {
            "ids": ids,
            "channels": channels,
            "types": types,
            "versions": versions,
            "datas": datas,
        }
    await _maybe_await(conn.execute(statement, params))


def _sqlalchemy_dialect(conn: Any) -> str:
    """The dialect name of a SQLAlchemy connection, session, or their async forms."""
    dialect = getattr(conn, "dialect", None)
    if dialect is None:  # a Session or AsyncSession: ask its bind
        bind = conn.get_bind() if hasattr(conn, "get_bind") else conn.bind
        dialect = bind.dialect
    return str(dialect.name)
