"""``Outbox.enqueue`` inside the caller's own transaction, on every accepted driver.

Each driver runs the same story against a real database with a small domain
table: what commits with the domain row is stored; a rolled-back transaction
stores, and after a relay drain publishes, nothing; an event id enqueued
twice is stored once; an event one configured adapter would refuse raises
inside the transaction before any insert. An object that is not an accepted
connection is refused with a ``ConfigurationError`` that names what is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from outbox_fixtures import dialect_of, fetch, sqlite_connection, sqlite_path_of, stored_rows

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.base import Limits
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.errors import ConfigurationError, InvalidEvent, PayloadTooLarge
from realtime_bridge.outbox import Outbox
from realtime_bridge.testing import FakeAdapter

pytest_plugins = ["conftest_outbox"]

SMALL = Limits(max_payload_bytes=100, max_events_per_batch=10)


class Boom(Exception):
    """The application fails after writing: its transaction rolls back."""


@dataclass
class Tx:
    """An open transaction of one driver: the object to enqueue on, and a domain write."""

    conn: Any
    add_order: Callable[[int], Awaitable[None]]


Transaction = Callable[[str], AbstractAsyncContextManager[Tx]]


# -- one transaction per driver: commit on success, roll back on an exception ----------------


@asynccontextmanager
async def asyncpg_tx(url: str, *, json_codec: bool = False) -> AsyncIterator[Tx]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if json_codec:  # the recipe from asyncpg's docs, common in applications
            await conn.set_type_codec(
                "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        async with conn.transaction():

            async def add(order: int) -> None:
                await conn.execute("INSERT INTO orders (id) VALUES ($1)", order)

            yield Tx(conn, add)
    finally:
        await conn.close()


def asyncpg_json_codec_tx(url: str) -> AbstractAsyncContextManager[Tx]:
    return asyncpg_tx(url, json_codec=True)


@asynccontextmanager
async def psycopg_sync_tx(url: str) -> AsyncIterator[Tx]:
    import psycopg

    with psycopg.connect(url) as conn, conn.transaction():

        async def add(order: int) -> None:
            conn.execute("INSERT INTO orders (id) VALUES (%s)", (order,))

        yield Tx(conn, add)


@asynccontextmanager
async def psycopg_async_tx(url: str) -> AsyncIterator[Tx]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():

        async def add(order: int) -> None:
            await conn.execute("INSERT INTO orders (id) VALUES (%s)", (order,))

        yield Tx(conn, add)


@asynccontextmanager
async def sqlite3_tx(url: str) -> AsyncIterator[Tx]:
    conn = sqlite3.connect(sqlite_path_of(url), timeout=30)  # implicit BEGIN before DML
    try:

        async def add(order: int) -> None:
            conn.execute("INSERT INTO orders (id) VALUES (?)", (order,))

        try:
            yield Tx(conn, add)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    finally:
        conn.close()


@asynccontextmanager
async def aiosqlite_tx(url: str) -> AsyncIterator[Tx]:
    import aiosqlite

    async with aiosqlite.connect(sqlite_path_of(url), timeout=30) as conn:

        async def add(order: int) -> None:
            await conn.execute("INSERT INTO orders (id) VALUES (?)", (order,))

        try:
            yield Tx(conn, add)
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


def sqlalchemy_url(url: str, driver: str) -> str:
    """``url`` for SQLAlchemy with ``driver`` (an empty driver: SQLAlchemy's default)."""
    rest = url.split("://", 1)[1]
    name = "postgresql" if dialect_of(url) == "postgres" else "sqlite"
    return f"{name}+{driver}://{rest}" if driver else f"{name}://{rest}"


def sa_sync_url(url: str) -> str:
    return sqlalchemy_url(url, "psycopg" if dialect_of(url) == "postgres" else "")


def sa_insert(order: int) -> tuple[Any, dict[str, int]]:
    from sqlalchemy import text

    return text("INSERT INTO orders (id) VALUES (:id)"), {"id": order}


@asynccontextmanager
async def sa_connection_tx(url: str) -> AsyncIterator[Tx]:
    from sqlalchemy import create_engine

    engine = create_engine(sa_sync_url(url))
    try:
        with engine.begin() as conn:

            async def add(order: int) -> None:
                conn.execute(*sa_insert(order))

            yield Tx(conn, add)
    finally:
        engine.dispose()


@asynccontextmanager
async def sa_session_tx(url: str) -> AsyncIterator[Tx]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(sa_sync_url(url))
    try:
        with Session(engine) as session, session.begin():

            async def add(order: int) -> None:
                session.execute(*sa_insert(order))

            yield Tx(session, add)
    finally:
        engine.dispose()


def sa_async_tx(driver: str, *, session: bool) -> Transaction:
    @asynccontextmanager
    async def transaction(url: str) -> AsyncIterator[Tx]:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        engine = create_async_engine(sqlalchemy_url(url, driver))
        try:
            if session:
                async with AsyncSession(engine) as s, s.begin():

                    async def add_via_session(order: int) -> None:
                        await s.execute(*sa_insert(order))

                    yield Tx(s, add_via_session)
            else:
                async with engine.begin() as conn:

                    async def add(order: int) -> None:
                        await conn.execute(*sa_insert(order))

                    yield Tx(conn, add)
        finally:
            await engine.dispose()

    return transaction


DRIVERS: dict[str, tuple[str, Transaction]] = {
    "asyncpg": ("postgres", asyncpg_tx),
    "asyncpg-json-codec": ("postgres", asyncpg_json_codec_tx),
    "psycopg-sync": ("postgres", psycopg_sync_tx),
    "psycopg-async": ("postgres", psycopg_async_tx),
    "sqlalchemy-psycopg-connection": ("postgres", sa_connection_tx),
    "sqlalchemy-psycopg-session": ("postgres", sa_session_tx),
    "sqlalchemy-asyncpg-asyncconnection": ("postgres", sa_async_tx("asyncpg", session=False)),
    "sqlalchemy-asyncpg-asyncsession": ("postgres", sa_async_tx("asyncpg", session=True)),
    "sqlalchemy-psycopg-asyncconnection": ("postgres", sa_async_tx("psycopg", session=False)),
    "sqlalchemy-psycopg-asyncsession": ("postgres", sa_async_tx("psycopg", session=True)),
    "sqlite3": ("sqlite", sqlite3_tx),
    "aiosqlite": ("sqlite", aiosqlite_tx),
    "sqlalchemy-sqlite-connection": ("sqlite", sa_connection_tx),
    "sqlalchemy-sqlite-session": ("sqlite", sa_session_tx),
    "sqlalchemy-aiosqlite-asyncconnection": ("sqlite", sa_async_tx("aiosqlite", session=False)),
    "sqlalchemy-aiosqlite-asyncsession": ("sqlite", sa_async_tx("aiosqlite", session=True)),
}


@dataclass
class Setup:
    url: str
    outbox: Outbox
    fake: FakeAdapter
    transaction: Transaction


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if dialect == "postgres" else [])
        for name, (dialect, _) in DRIVERS.items()
    ]
)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    """A migrated database with an ``orders`` table, and an outbox whose Bridge has a
    fake primary and a fallback that accepts at most 100 bytes of data."""
    dialect, transaction = DRIVERS[request.param]
    url = str(request.getfixturevalue("pg_url" if dialect == "postgres" else "sqlite_url"))
    if dialect == "postgres":
        from outbox_fixtures import pg_connection

        async with pg_connection(url) as conn:
            await conn.execute("CREATE TABLE orders (id integer PRIMARY KEY)")
    else:
        with sqlite_connection(url) as conn:
            conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    fake = FakeAdapter()
    bridge = Bridge(fake, fallbacks=[MemoryAdapter(limits=SMALL)])
    async with Outbox(url, bridge=bridge) as outbox:
        yield Setup(url, outbox, fake, transaction)


async def orders(url: str) -> list[int]:
    rows = await fetch(
        url, "SELECT id FROM orders ORDER BY id", "SELECT id FROM orders ORDER BY id"
    )
    return [row[0] for row in rows]


def event(n: int, channel: str = "orders.1", **data: Any) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n, **data})


# -- the stories ---------------------------------------------------------------------------


async def test_events_commit_with_the_domain_row(setup: Setup) -> None:
    first, second = event(1), event(2, channel="orders.2")
    async with setup.transaction(setup.url) as tx:
        await tx.add_order(1)
        await setup.outbox.enqueue(tx.conn, first, second)
        await setup.outbox.enqueue(tx.conn)  # nothing to enqueue: a no-op

    assert await orders(setup.url) == [1]
    rows = await stored_rows(setup.url)
    assert [(r.event_id, r.channel, r.type, r.state) for r in rows] == [
        (first.id, "orders.1", "order.updated", "pending"),
        (second.id, "orders.2", "order.updated", "pending"),
    ]
    assert [json.loads(r.data) for r in rows] == [{"n": 1}, {"n": 2}]
    assert all(r.seq is None and r.attempts == 0 for r in rows)


async def test_a_rolled_back_transaction_stores_and_publishes_nothing(setup: Setup) -> None:
    lost, kept = event(1), event(2)
    with pytest.raises(Boom):
        async with setup.transaction(setup.url) as tx:
            await tx.add_order(1)
            await setup.outbox.enqueue(tx.conn, lost)
            raise Boom

    assert await orders(setup.url) == []
    assert await stored_rows(setup.url) == []

    async with setup.transaction(setup.url) as tx:
        await tx.add_order(2)
        await setup.outbox.enqueue(tx.conn, kept)
    relay = setup.outbox.relay()
    try:
        assert await relay.drain() == 1
    finally:
        await relay.aclose()
    assert [e.id for e in setup.fake.published] == [kept.id]
    assert setup.fake.published[0].data == {"n": 2}
    assert [r.event_id for r in await stored_rows(setup.url)] == [kept.id]


async def test_the_same_event_id_is_stored_once(setup: Setup) -> None:
    once = event(1)
    async with setup.transaction(setup.url) as tx:
        await tx.add_order(1)
        await setup.outbox.enqueue(tx.conn, once, once)
        await setup.outbox.enqueue(tx.conn, once)
    async with setup.transaction(setup.url) as tx:  # a retried request, later
        await tx.add_order(2)
        await setup.outbox.enqueue(tx.conn, once, event(2))

    assert await orders(setup.url) == [1, 2]
    rows = await stored_rows(setup.url)
    assert [r.event_id for r in rows].count(once.id) == 1
    assert len(rows) == 2


async def test_an_invalid_event_raises_inside_the_transaction_before_any_insert(
    setup: Setup,
) -> None:
    fine, too_big = event(1), event(2, blob="x" * 200)
    async with setup.transaction(setup.url) as tx:
        await tx.add_order(1)
        with pytest.raises(PayloadTooLarge) as raised:
            await setup.outbox.enqueue(tx.conn, fine, too_big)
        # The transaction is untouched: the domain row still commits (on PostgreSQL a
        # failed statement would have aborted the transaction and lost it).
    assert raised.value.event_id == too_big.id
    assert "100 bytes" in str(raised.value)
    assert await orders(setup.url) == [1]
    assert await stored_rows(setup.url) == []


async def test_enqueue_takes_only_events(setup: Setup) -> None:
    async with setup.transaction(setup.url) as tx:
        with pytest.raises(InvalidEvent, match="Event objects"):
            await setup.outbox.enqueue(tx.conn, {"channel": "orders.1"})  # type: ignore[arg-type]
    assert await stored_rows(setup.url) == []


# -- what is not a connection ----------------------------------------------------------------

ACCEPTED = ("SQLAlchemy", "asyncpg", "psycopg", "sqlite3", "aiosqlite")


async def test_an_unsupported_object_is_refused_naming_the_accepted_kinds() -> None:
    outbox = Outbox("sqlite:///unused.db", bridge=Bridge(MemoryAdapter()))
    try:
        for wrong in (object(), "postgresql://localhost/app", 42):
            with pytest.raises(ConfigurationError) as raised:
                await outbox.enqueue(wrong, event(1))
            message = str(raised.value)
            assert all(kind in message for kind in ACCEPTED), message
            assert type(wrong).__name__ in message
    finally:
        await outbox.bridge.aclose()
        await outbox.aclose()


@pytest.mark.postgres
async def test_an_engine_or_pool_is_refused_it_has_no_transaction_of_yours(pg_url: str) -> None:
    """An engine or a pool would write outside the caller's transaction: refused."""
    import asyncpg
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.orm import scoped_session, sessionmaker

    outbox = Outbox(pg_url, bridge=Bridge(MemoryAdapter()))
    engine = create_engine(sa_sync_url(pg_url))
    async_engine = create_async_engine(sqlalchemy_url(pg_url, "asyncpg"))
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    try:
        for wrong in (engine, async_engine, pool):
            with pytest.raises(ConfigurationError) as raised:
                await outbox.enqueue(wrong, event(1))
            assert all(kind in str(raised.value) for kind in ACCEPTED), raised.value
        # A connection taken from the pool, or a scoped session, holds a transaction.
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, event(2))
        session = scoped_session(sessionmaker(engine))
        try:
            await outbox.enqueue(session, event(3))
            session.commit()
        finally:
            session.remove()
    finally:
        await pool.close()
        await async_engine.dispose()
        engine.dispose()
        await outbox.bridge.aclose()
        await outbox.aclose()
    assert [r.data for r in await stored_rows(pg_url)] == ['{"n":2}', '{"n":3}']
