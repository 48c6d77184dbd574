"""The demo's domain: a shop whose orders move through their statuses, database-first.

Each ``Shop.step`` is one transaction on the demo's database. It inserts or
updates an order row **and** enqueues the ``order.updated`` event describing
the row's whole new state, so both commit or neither does. Nothing is
published here: the relay does that after the commit. This is the pattern
the library exists for, at the size of a demo.

The typed events are declared here, so ``realtime-bridge schema
realtime_bridge.demo`` prints a real catalog.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..events import Event
from ..outbox import Outbox

__all__ = ["CHANNEL", "STATUSES", "Order", "OrderUpdated", "Shop"]

#: Every order update goes to this one channel, so its seq orders the whole story.
CHANNEL = "shop.orders"
STATUSES = ("placed", "paid", "packed", "shipped", "delivered")
TABLE = "realtime_bridge_demo_orders"


class Order(BaseModel):
    """The whole new state of an order: a client that missed events rebuilds from one."""

    model_config = ConfigDict(frozen=True)

    id: int
    status: str
    total_cents: int


class OrderUpdated(Event):
    """An order changed. Clients switch on type; data is the order's whole new state."""

    type: Literal["order.updated"] = "order.updated"
    data: Order


class Shop:
    """Writes orders and their events in one transaction each, on SQLite or PostgreSQL."""

    def __init__(self, outbox: Outbox, *, seed: int | None = None) -> None:
        self.outbox = outbox
        self._random = random.Random(seed)
        self._conn: Any = None
        self._open: dict[int, str] = {}  # orders not delivered yet: id -> status
        self._lock = asyncio.Lock()  # one connection: one statement at a time

    @property
    def dialect(self) -> str:
        return "sqlite" if self.outbox.database_url.startswith("sqlite:") else "postgres"

    async def open(self) -> None:
        """Connect, and create the orders table if it is missing."""
        if self.dialect == "sqlite":
            path = self.outbox.database_url.split(":///", 1)[1]
            self._conn = sqlite3.connect(path, timeout=10, isolation_level=None)
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, "
                "status TEXT NOT NULL, total_cents INTEGER NOT NULL)"
            )
            return
        import asyncpg  # the postgres extra

        self._conn = await asyncpg.connect(self.outbox.database_url)
        await self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, "
            "status text NOT NULL, total_cents integer NOT NULL)"
        )

    def _next_change(self) -> tuple[int | None, str, int]:
        """Advance a random open order, or place a new one: (id or None, status, total)."""
        if self._open and self._random.random() < 0.7:
            order_id = self._random.choice(sorted(self._open))
            status = STATUSES[STATUSES.index(self._open[order_id]) + 1]
            return order_id, status, 0
        return None, STATUSES[0], self._random.randrange(500, 20_000, 5)

    async def step(self) -> OrderUpdated:
        """One domain change and its event, committed together."""
        order_id, status, total = self._next_change()
        write = self._write_sqlite if self.dialect == "sqlite" else self._write_postgres
        async with self._lock:
            event = await write(order_id, status, total)
        order = event.data
        if status == STATUSES[-1]:
            del self._open[order.id]
        else:
            self._open[order.id] = status
        return event

    async def _write_sqlite(self, order_id: int | None, status: str, total: int) -> OrderUpdated:
        conn: sqlite3.Connection = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if order_id is None:
                cursor = conn.execute(
                    f"INSERT INTO {TABLE} (status, total_cents) VALUES (?, ?)", (status, total)
                )
                order_id = int(cursor.lastrowid or 0)
            else:
                conn.execute(f"UPDATE {TABLE} SET status = ? WHERE id = ?", (status, order_id))
            row = conn.execute(
                f"SELECT id, status, total_cents FROM {TABLE} WHERE id = ?", (order_id,)
            ).fetchone()
            event = await self._enqueue(conn, Order(id=row[0], status=row[1], total_cents=row[2]))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return event

    async def _write_postgres(self, order_id: int | None, status: str, total: int) -> OrderUpdated:
        async with self._conn.transaction():
            if order_id is None:
                row = await self._conn.fetchrow(
                    f"INSERT INTO {TABLE} (status, total_cents) VALUES ($1, $2) "
                    "RETURNING id, status, total_cents",
                    status,
                    total,
                )
            else:
                row = await self._conn.fetchrow(
                    f"UPDATE {TABLE} SET status = $1 WHERE id = $2 "
                    "RETURNING id, status, total_cents",
                    status,
                    order_id,
                )
            order = Order(id=row["id"], status=row["status"], total_cents=row["total_cents"])
            return await self._enqueue(self._conn, order)

    async def _enqueue(self, conn: Any, order: Order) -> OrderUpdated:
        """The event goes into the same open transaction as the order's row."""
        event = OrderUpdated(channel=CHANNEL, data=order)
        await self.outbox.enqueue(conn, event)
        return event

    async def orders(self) -> list[Order]:
        """Every order as the database has it now: what a client re-fetches after ``reset``."""
        query = f"SELECT id, status, total_cents FROM {TABLE} ORDER BY id"
        if self.dialect == "sqlite":
            rows = self._conn.execute(query).fetchall()
            return [Order(id=r[0], status=r[1], total_cents=r[2]) for r in rows]
        async with self._lock:
            records = await self._conn.fetch(query)
        return [
            Order(id=r["id"], status=r["status"], total_cents=r["total_cents"]) for r in records
        ]

    async def aclose(self) -> None:
        if self._conn is None:
            return
        if self.dialect == "sqlite":
            self._conn.close()
        else:
            await self._conn.close()
        self._conn = None
