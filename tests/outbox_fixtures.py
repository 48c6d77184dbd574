"""Helpers for the outbox tests (the fixtures are in ``conftest_outbox``).

Creating and dropping PostgreSQL databases, running a coroutine from
synchronous code, and reading or nudging the outbox rows with plain SQL on
connections of their own, never through the code under test, so a test
checks what is really in the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from realtime_bridge.adapters.base import Adapter
from realtime_bridge.bridge import Bridge
from realtime_bridge.events import Event
from realtime_bridge.outbox import Outbox
from realtime_bridge.outbox.relay import Relay
from realtime_bridge.testing import instant_retry

T = TypeVar("T")

POSTGRES_NOW = "extract(epoch FROM now())::float8"
SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


# -- running a coroutine from synchronous code ---------------------------------------


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` to completion on a fresh event loop in a thread of its own.

    For session fixtures and synchronous tests: the thread keeps this loop
    apart from the one pytest-asyncio manages.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        async def call() -> T:
            return await work()

        try:
            result.append(asyncio.run(call()))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="outbox-fixtures")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


# -- PostgreSQL databases ---------------------------------------------------------------


def database_url(server_dsn: str, name: str) -> str:
    """The DSN of database ``name`` on the server ``server_dsn`` points at."""
    base, _, _ = server_dsn.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def _admin(server_dsn: str) -> Iterator[Any]:
    import psycopg

    conn = psycopg.connect(server_dsn, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def create_database(server_dsn: str, name: str, *, template: str | None = None) -> str:
    # Names are ours (rbtest_ + hex), never user input: safe to splice.
    assert name.startswith("rbtest_") and name.replace("_", "").isalnum(), name
    clause = f" TEMPLATE {template}" if template else ""
    with _admin(server_dsn) as conn:
        conn.execute(f"CREATE DATABASE {name}{clause}")
    return database_url(server_dsn, name)


def drop_database(server_dsn: str, name: str) -> None:
    assert name.startswith("rbtest_") and name.replace("_", "").isalnum(), name
    with _admin(server_dsn) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def random_database_name(kind: str = "") -> str:
    return f"rbtest_{kind}{uuid.uuid4().hex[:12]}"


async def migrate(url: str) -> list[str]:
    """Migrate the outbox database at ``url`` through ``Outbox.migrate()``."""
    outbox = Outbox(url)
    try:
        return await outbox.migrate()
    finally:
        await outbox.aclose()
        await outbox.bridge.aclose()


# -- SQLite ------------------------------------------------------------------------------


def sqlite_url_of(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def sqlite_path_of(url: str) -> str:
    return url.removeprefix("sqlite:///")


def dialect_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


# -- reading and nudging rows with plain SQL ------------------------------------------------


@dataclass(frozen=True)
class StoredRow:
    """One outbox row as the table holds it; times are Unix seconds of the database clock."""

    pk: int
    event_id: str
    channel: str
    type: str
    data: str
    state: str
    seq: int | None
    attempts: int
    last_error: str | None
    created_at: float
    next_attempt_at: float
    sent_at: float | None


_SELECT_PG = (
    "SELECT pk, event_id, channel, type, data::text, state, seq, attempts, last_error, "
    "extract(epoch FROM created_at)::float8, extract(epoch FROM next_attempt_at)::float8, "
    "extract(epoch FROM sent_at)::float8 FROM realtime_outbox ORDER BY pk"
)
_SELECT_SQLITE = (
    "SELECT pk, event_id, channel, type, data, state, seq, attempts, last_error, created_at, "
    "next_attempt_at, sent_at FROM realtime_outbox ORDER BY pk"
)


@contextlib.contextmanager
def sqlite_connection(url: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(sqlite_path_of(url), timeout=30, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def pg_connection(url: str) -> AsyncIterator[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def fetch(url: str, postgres: str, sqlite: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a query, written once per dialect (``$1`` for PostgreSQL, ``?`` for SQLite)."""
    if dialect_of(url) == "postgres":
        async with pg_connection(url) as conn:
            return [tuple(record) for record in await conn.fetch(postgres, *args)]
    with sqlite_connection(url) as conn:
        return conn.execute(sqlite, args).fetchall()


async def execute(url: str, postgres: str, sqlite: str, *args: Any) -> None:
    if dialect_of(url) == "postgres":
        async with pg_connection(url) as conn:
            await conn.execute(postgres, *args)
        return
    with sqlite_connection(url) as conn:
        conn.execute(sqlite, args)


async def stored_rows(url: str) -> list[StoredRow]:
    """Every outbox row, in insertion order."""
    return [StoredRow(*row) for row in await fetch(url, _SELECT_PG, _SELECT_SQLITE)]


async def database_now(url: str) -> float:
    """The database's clock, in Unix seconds."""
    [(now,)] = await fetch(url, f"SELECT {POSTGRES_NOW}", f"SELECT {SQLITE_NOW}")
    return float(now)


async def make_due(url: str) -> None:
    """Every pending row waiting for a retry becomes due now (instead of waiting it out)."""
    await execute(
        url,
        "UPDATE realtime_outbox SET next_attempt_at = now() - interval '1 second' "
        "WHERE state = 'pending'",
        f"UPDATE realtime_outbox SET next_attempt_at = {SQLITE_NOW} - 1 WHERE state = 'pending'",
    )


async def age_sent(url: str, event_ids: Sequence[str], seconds: float) -> None:
    """Pretend these sent rows were sent ``seconds`` ago."""
    for event_id in event_ids:
        await execute(
            url,
            "UPDATE realtime_outbox SET sent_at = now() - make_interval(secs => $2) "
            "WHERE event_id = $1",
            f"UPDATE realtime_outbox SET sent_at = {SQLITE_NOW} - ?2 WHERE event_id = ?1",
            event_id,
            seconds,
        )


async def insert_raw(url: str, event_id: str, channel: str, type_: str, data: str) -> None:
    """An outbox row written behind the library's back: no validation at all."""
    await execute(
        url,
        "INSERT INTO realtime_outbox (event_id, channel, type, data) VALUES ($1, $2, $3, $4)",
        "INSERT INTO realtime_outbox (event_id, channel, type, data) VALUES (?, ?, ?, ?)",
        event_id,
        channel,
        type_,
        data,
    )


async def enqueue_committed(url: str, outbox: Outbox, *events: Event) -> None:
    """Enqueue ``events`` in one committed transaction of the dialect's plain driver."""
    if dialect_of(url) == "postgres":
        async with pg_connection(url) as conn, conn.transaction():
            await outbox.enqueue(conn, *events)
        return
    with sqlite_connection(url) as conn:
        conn.execute("BEGIN")
        await outbox.enqueue(conn, *events)
        conn.execute("COMMIT")


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 20.0, step: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds (a bound, not a claim)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {within}s: {condition}")
        await asyncio.sleep(step)


#: Backoff that keeps a retried row put until a test makes it due.
LONG_BACKOFF = 60.0


async def no_relay_connected(url: str, *, within: float = 20.0) -> None:
    """Wait until closed relays' backends are gone, so a new relay owns every partition."""
    if dialect_of(url) != "postgres":
        return
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'realtime_bridge relay %'"
    )

    async def gone() -> bool:
        [(count,)] = await fetch(url, query, query)
        return bool(count == 0)

    await wait_until(gone, within=within)


def states(rows: Sequence[Any]) -> dict[str, str]:
    """Each stored row's state, by event id."""
    return {row.event_id: row.state for row in rows}


@contextlib.asynccontextmanager
async def relayed(
    url: str, adapter: Adapter, *, bridge: Bridge | None = None, **relay_options: Any
) -> AsyncIterator[tuple[Outbox, Relay]]:
    """An outbox publishing through ``adapter`` (one Bridge attempt per publish: failures
    reach the relay) and one relay; both closed (with the adapter) afterwards."""
    relay_options.setdefault("base_delay", LONG_BACKOFF)
    bridge = bridge or Bridge(adapter, retry=instant_retry(1))
    async with Outbox(url, bridge=bridge) as outbox:
        relay = outbox.relay(**relay_options)
        try:
            yield outbox, relay
        finally:
            await relay.aclose()
