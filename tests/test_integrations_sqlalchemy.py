"""SQLAlchemy: events written in the ORM session's transaction, explicit or declared on models.

Against real PostgreSQL (psycopg and asyncpg) and SQLite (sqlite3 and
aiosqlite): what commits with the rows is stored and then relayed with
per-channel seqs in commit order; a rollback (whole or a savepoint) leaves no
outbox row; the after-flush hook turns inserts, updates and deletes of
``@realtime`` models into events carrying the whole new state; a declaration
that cannot work is refused when the class is decorated, and an event that
cannot be built raises inside the flush, so nothing commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from outbox_fixtures import dialect_of, fetch, stored_rows
from sqlalchemy import DateTime, ForeignKey, Numeric, String, create_engine, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.base import Limits
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.errors import (
    ConfigurationError,
    InvalidChannel,
    InvalidEvent,
    PayloadTooLarge,
)
from realtime_bridge.integrations.sqlalchemy import (
    declaration_of,
    enqueue,
    publish_changes,
    realtime,
)
from realtime_bridge.outbox import Outbox
from realtime_bridge.testing import FakeAdapter

pytest_plugins = ["conftest_outbox"]

#: The fallback's limit: an event whose data is over 300 bytes is refused.
SMALL = Limits(max_payload_bytes=300, max_events_per_batch=10)


class Base(DeclarativeBase):
    pass


@realtime(
    channel="orders.{id}",
    type={"insert": "order.created", "update": "order.updated", "delete": "order.deleted"},
)
class Order(Base):
    __tablename__ = "rb_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0.00"))
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


@realtime(
    channel=lambda customer: f"customers.{customer.id}.profile",
    type="customer.changed",
    data=lambda customer: {"name": customer.name.title()},
)
class Customer(Base):
    __tablename__ = "rb_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


@realtime(channel="shipments.{order_id}", type="shipment.created", on=("insert",))
class Shipment(Base):
    __tablename__ = "rb_shipments"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("rb_orders.id"))
    carrier: Mapped[str] = mapped_column(String(20))


@realtime(channel="tags.{name}", type="tag.added")
class Tag(Base):  # a name with a space makes a channel no vendor accepts
    __tablename__ = "rb_tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


@realtime(channel="readings.{id}", type="reading.added", data=lambda r: {"at": object()})
class Reading(Base):  # its serialiser returns something JSON cannot hold
    __tablename__ = "rb_readings"
    id: Mapped[int] = mapped_column(primary_key=True)


class AuditLog(Base):  # declares nothing: publishes nothing
    __tablename__ = "rb_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(100))


class Boom(Exception):
    """The application fails after writing: its transaction rolls back."""


# -- fixtures ------------------------------------------------------------------------------


def sqlalchemy_url(url: str, *, asynchronous: bool = False) -> str:
    """``url`` (the outbox's) for SQLAlchemy: psycopg or asyncpg, sqlite or aiosqlite."""
    rest = url.split("://", 1)[1]
    if dialect_of(url) == "postgres":
        return f"postgresql+{'asyncpg' if asynchronous else 'psycopg'}://{rest}"
    return f"sqlite+aiosqlite://{rest}" if asynchronous else f"sqlite://{rest}"


@dataclass
class Setup:
    url: str
    outbox: Outbox
    fake: FakeAdapter
    sessions: sessionmaker[Session]


@pytest.fixture
def database(outbox_url: str) -> Iterator[str]:
    """A migrated outbox database of each dialect, with the models' tables."""
    engine = create_engine(sqlalchemy_url(outbox_url))
    Base.metadata.create_all(engine)
    engine.dispose()
    yield outbox_url


@pytest.fixture
async def setup(database: str) -> AsyncIterator[Setup]:
    """Sync sessions whose flushes publish through an outbox with a fake primary and a
    fallback refusing data over 300 bytes."""
    fake = FakeAdapter()
    engine = create_engine(sqlalchemy_url(database))
    sessions = sessionmaker(engine)
    async with Outbox(database, bridge=Bridge(fake, fallbacks=[MemoryAdapter(limits=SMALL)])) as ob:
        stop = publish_changes(sessions, ob)
        try:
            yield Setup(database, ob, fake, sessions)
        finally:
            stop()
            engine.dispose()


async def drain(outbox: Outbox) -> int:
    relay = outbox.relay()
    try:
        return await relay.drain()
    finally:
        await relay.aclose()


def published(fake: FakeAdapter) -> list[tuple[str, int | None, str, dict[str, Any]]]:
    return [(e.channel, e.seq, e.type, e.data) for e in fake.published]


async def table(url: str, name: str) -> list[tuple[Any, ...]]:
    query = f"SELECT id FROM {name} ORDER BY id"
    return await fetch(url, query, query)


# -- explicit enqueue on a session ----------------------------------------------------------


async def test_enqueue_on_a_sync_session_commits_with_the_rows(setup: Setup) -> None:
    first, lost = Event(channel="audit", type="audit.added"), Event(channel="audit", type="x")
    with setup.sessions.begin() as session:
        session.add(AuditLog(id=1, message="kept"))
        enqueue(setup.outbox, session, first)
    with pytest.raises(Boom), setup.sessions.begin() as session:
        session.add(AuditLog(id=2, message="lost"))
        enqueue(setup.outbox, session, lost)
        raise Boom

    assert await table(setup.url, "rb_audit") == [(1,)]
    assert [(r.event_id, r.state) for r in await stored_rows(setup.url)] == [(first.id, "pending")]
    assert await drain(setup.outbox) == 1
    assert published(setup.fake) == [("audit", 1, "audit.added", {})]


async def test_enqueue_refuses_an_async_session_naming_the_await_form(database: str) -> None:
    engine = create_async_engine(sqlalchemy_url(database, asynchronous=True))
    async with Outbox(database, bridge=Bridge(MemoryAdapter())) as outbox:
        try:
            async with AsyncSession(engine) as session, session.begin():
                with pytest.raises(ConfigurationError, match=r"await outbox\.enqueue"):
                    enqueue(outbox, session, Event(channel="a", type="b"))  # type: ignore[arg-type]
                await outbox.enqueue(session, Event(channel="a", type="b"))  # the async form
        finally:
            await engine.dispose()
    assert [r.channel for r in await stored_rows(database)] == ["a"]


# -- the after-flush hook ------------------------------------------------------------------


async def test_insert_update_delete_publish_the_whole_state_in_commit_order(setup: Setup) -> None:
    with setup.sessions.begin() as session:
        session.add(Order(id=42, status="new", total=Decimal("9.50")))
    with setup.sessions.begin() as session:
        order = session.get(Order, 42)
        assert order is not None
        order.status = "paid"
    with setup.sessions.begin() as session:
        session.delete(session.get(Order, 42))

    assert await drain(setup.outbox) == 3
    events = setup.fake.published
    assert [(e.seq, e.type) for e in events] == [
        (1, "order.created"),
        (2, "order.updated"),
        (3, "order.deleted"),
    ]
    assert {e.channel for e in events} == {"orders.42"}
    assert [e.data["status"] for e in events] == ["new", "paid", "paid"]
    created = events[0].data
    # Every column, the server default included (read back inside the flush).
    assert set(created) == {"id", "status", "total", "note", "created_at"}
    assert (created["id"], Decimal(created["total"]), created["note"]) == (42, Decimal("9.5"), None)
    assert datetime.fromisoformat(created["created_at"]).year >= 2024


async def test_each_flush_writes_its_own_events_in_order(setup: Setup) -> None:
    with setup.sessions.begin() as session:
        order = Order(id=7, status="new")
        session.add(order)
        session.flush()  # the insert's event is written now, next to its row
        order.status = "packed"
        session.add(Order(id=8, status="new"))
    # The second flush (at commit) writes its inserts, then its updates.
    assert [(r.channel, r.type) for r in await stored_rows(setup.url)] == [
        ("orders.7", "order.created"),
        ("orders.8", "order.created"),
        ("orders.7", "order.updated"),
    ]
    await drain(setup.outbox)
    assert sorted((c, s, d["status"]) for c, s, _, d in published(setup.fake)) == [
        ("orders.7", 1, "new"),
        ("orders.7", 2, "packed"),
        ("orders.8", 1, "new"),
    ]


async def test_a_rollback_leaves_no_outbox_row_and_publishes_nothing(setup: Setup) -> None:
    with pytest.raises(Boom), setup.sessions.begin() as session:
        session.add(Order(id=1, status="new"))
        session.flush()  # the event row exists now, in this transaction only
        inside = session.connection().exec_driver_sql("SELECT type FROM realtime_outbox")
        assert inside.all() == [("order.created",)]
        assert await table(setup.url, "rb_orders") == []  # not visible outside it
        raise Boom
    assert await stored_rows(setup.url) == []
    assert await drain(setup.outbox) == 0
    assert setup.fake.published == []


async def test_a_rolled_back_savepoint_takes_its_events_with_it(setup: Setup) -> None:
    with setup.sessions.begin() as session:
        session.add(Order(id=1, status="kept"))
        savepoint = session.begin_nested()
        session.add(Order(id=2, status="dropped"))
        session.flush()
        savepoint.rollback()
    assert [r.channel for r in await stored_rows(setup.url)] == ["orders.1"]
    assert await table(setup.url, "rb_orders") == [(1,)]


async def test_only_declared_models_and_real_changes_publish(setup: Setup) -> None:
    with setup.sessions.begin() as session:
        order = Order(id=3, status="new")
        session.add_all([order, AuditLog(id=1, message="not declared")])
        session.flush()
        session.add(Shipment(id=1, order_id=3, carrier="ups"))
    with setup.sessions.begin() as session:
        order = session.get(Order, 3)
        shipment = session.get(Shipment, 1)
        assert order is not None and shipment is not None
        order.status = "new"  # set, but unchanged: no update
        shipment.carrier = "dhl"  # declared on=("insert",): no update event
        session.delete(shipment)  # nor a delete event
    assert [(r.channel, r.type) for r in await stored_rows(setup.url)] == [
        ("orders.3", "order.created"),
        ("shipments.3", "shipment.created"),
    ]


async def test_a_channel_function_and_a_serialiser_declared_on_the_model(setup: Setup) -> None:
    with setup.sessions.begin() as session:
        session.add(Customer(id=5, name="ada lovelace"))
    await drain(setup.outbox)
    assert published(setup.fake) == [
        ("customers.5.profile", 1, "customer.changed", {"name": "Ada Lovelace"})
    ]


@pytest.mark.postgres
async def test_an_async_session_on_asyncpg_publishes_its_changes(pg_url: str) -> None:
    class WatchedSession(Session):
        pass

    engine = create_async_engine(sqlalchemy_url(pg_url, asynchronous=True))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, sync_session_class=WatchedSession)
    fake = FakeAdapter()
    async with Outbox(pg_url, bridge=Bridge(fake)) as outbox:
        stop = publish_changes(sessions, outbox)
        try:
            async with sessions() as session, session.begin():
                session.add(Order(id=1, status="new"))
            async with sessions() as session, session.begin():
                order = await session.get(Order, 1)
                assert order is not None
                order.status = "paid"
            with pytest.raises(Boom):
                async with sessions() as session, session.begin():
                    session.add(Order(id=2, status="lost"))
                    await session.flush()
                    raise Boom
        finally:
            stop()
            await engine.dispose()
        assert await drain(outbox) == 2
    assert [(c, s, t, d["status"]) for c, s, t, d in published(fake)] == [
        ("orders.1", 1, "order.created", "new"),
        ("orders.1", 2, "order.updated", "paid"),
    ]


async def test_an_async_session_on_aiosqlite_publishes_its_changes(sqlite_url: str) -> None:
    engine = create_async_engine(sqlalchemy_url(sqlite_url, asynchronous=True))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    fake = FakeAdapter()
    async with Outbox(sqlite_url, bridge=Bridge(fake)) as outbox:
        try:
            async with AsyncSession(engine) as session:
                stop = publish_changes(session, outbox)  # this one session only
                async with session.begin():
                    session.add(Customer(id=1, name="grace hopper"))
                stop()
                async with session.begin():
                    session.add(Customer(id=2, name="not watched any more"))
        finally:
            await engine.dispose()
        assert await drain(outbox) == 1
    assert published(fake) == [
        ("customers.1.profile", 1, "customer.changed", {"name": "Grace Hopper"})
    ]


async def test_stop_removes_the_hook(setup: Setup) -> None:
    stop = publish_changes(setup.sessions, setup.outbox)  # a second hook: two events per change
    with setup.sessions.begin() as session:
        session.add(Customer(id=1, name="a"))
    stop()
    with setup.sessions.begin() as session:
        session.add(Customer(id=2, name="b"))
    channels = [r.channel for r in await stored_rows(setup.url)]
    assert channels == ["customers.1.profile", "customers.1.profile", "customers.2.profile"]


# -- events that cannot be built raise inside the flush --------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        pytest.param(
            lambda: Shipment(id=1, order_id=None, carrier="ups"),
            InvalidChannel,
            ["@realtime on Shipment (insert)", "'shipments.{order_id}'", "order_id", "None"],
            id="channel-attribute-is-none",
        ),
        pytest.param(
            lambda: Tag(id=1, name="has space"),
            InvalidChannel,
            ["@realtime on Tag (insert)", "'tags.has space'", "' ' at position 8"],
            id="rendered-channel-not-portable",
        ),
        pytest.param(
            lambda: Reading(id=1),
            InvalidEvent,
            ["@realtime on Reading (insert)", "not JSON-serialisable"],
            id="data-not-json",
        ),
        pytest.param(
            lambda: Order(id=1, status="new", note="x" * 400),
            PayloadTooLarge,
            ["at most 300 bytes", "@realtime events of this flush", "orders.1"],
            id="over-an-adapter-limit",
        ),
    ],
)
async def test_a_bad_event_raises_in_the_flush_and_nothing_commits(
    setup: Setup, make: Callable[[], Base], error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as raised, setup.sessions.begin() as session:
        session.add(AuditLog(id=1, message="written in the same transaction"))
        session.add(make())
    message = "\n".join([str(raised.value), *getattr(raised.value, "__notes__", [])])
    assert all(word in message for word in words), message
    assert message.count("@realtime") == 1, message
    assert await table(setup.url, "rb_audit") == []
    assert await stored_rows(setup.url) == []


# -- declarations refused when the class is decorated --------------------------------------


def declare(**options: Any) -> type[Any]:
    """Apply ``@realtime(**options)`` to a fresh mapped class with ``id`` and ``name``."""

    class Fresh(DeclarativeBase):
        pass

    class Item(Fresh):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(10))

    return realtime(**options)(Item)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"channel": "items.{sku}", "type": "item.changed"}, ["names 'sku'", "Item"]),
        ({"channel": "items/{id}", "type": "item.changed"}, ["'items/{id}'", "'/' at position"]),
        ({"channel": "items.{}", "type": "item.changed"}, ["formats {}", "attributes"]),
        ({"channel": "items.{id.real}", "type": "item.changed"}, ["formats {id.real}"]),
        ({"channel": "items.{id", "type": "item.changed"}, ["'items.{id'"]),
        ({"channel": "items.{id}", "type": "item changed"}, ["insert", "type", "'item changed'"]),
        ({"channel": "items.{id}", "type": "client-item"}, ["reserved prefix"]),
        ({"channel": "items.{id}", "type": "i", "on": ("upsert",)}, ["unknown change ['upsert']"]),
        ({"channel": "items.{id}", "type": "i", "on": ()}, ["on is empty"]),
        (
            {"channel": "items.{id}", "type": {"insert": "item.added"}, "on": ("delete",)},
            ["on names ['delete']", "no type"],
        ),
        ({"channel": 42, "type": "item.changed"}, ["template string or a function"]),
        ({"channel": "items.{id}", "type": "i", "data": {"a": 1}}, ["data must be a function"]),
    ],
)
def test_a_bad_declaration_is_refused_when_the_class_is_decorated(
    options: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        declare(**options)
    message = str(raised.value)
    assert message.startswith("@realtime on Item"), message
    assert all(word in message for word in words), message


def test_realtime_goes_on_a_mapped_class() -> None:
    with pytest.raises(ConfigurationError, match="not mapped"):

        @realtime(channel="plain.{id}", type="plain.changed")
        class Plain:
            id = 1


def test_a_declaration_records_one_type_per_published_change() -> None:
    item = declare(channel="items.{id}.{name}", type="item.changed", on=("update", "insert"))
    declared = declaration_of(item(id=1, name="a"))
    assert declared is not None
    assert dict(declared.types) == {"insert": "item.changed", "update": "item.changed"}
    assert declared.fields == ("id", "name")
    assert declaration_of(AuditLog()) is None


async def test_publish_changes_refuses_what_it_cannot_watch() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")  # never connected
    outbox = Outbox("sqlite:///unused.db", bridge=Bridge(MemoryAdapter()))
    try:
        with pytest.raises(ConfigurationError, match="sync_session_class"):
            publish_changes(async_sessionmaker(engine), outbox)
        with pytest.raises(ConfigurationError, match="cannot watch a str"):
            publish_changes("sessions", outbox)  # type: ignore[arg-type]
    finally:
        await engine.dispose()
        await outbox.bridge.aclose()
