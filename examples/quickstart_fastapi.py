"""The quickstart's app: FastAPI publishing database-first, the vendor named by one variable.

Run (from a clone, or anywhere with ``pip install realtime-bridge fastapi``):

    export REALTIME_BRIDGE_URL=memory://        # or redis://, pusher://, ably://, ...
    export REALTIME_BRIDGE_DATABASE_URL=sqlite:///quickstart.db
    uvicorn --factory examples.quickstart_fastapi:create_app

    curl -X PUT localhost:8000/orders/42 -H 'content-type: application/json' -d '{"status": "paid"}'
    curl localhost:8000/orders/42/events

docs/quickstart.md walks through it; tests/test_docs_site.py runs it on every adapter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from realtime_bridge import Event
from realtime_bridge.outbox import Outbox


class OrderChange(BaseModel):
    status: str


def create_app() -> FastAPI:
    # REALTIME_BRIDGE_URL picks the vendor, REALTIME_BRIDGE_DATABASE_URL the database.
    outbox = Outbox.from_settings()
    bridge = outbox.bridge
    database = outbox.database_url.removeprefix("sqlite:///")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await outbox.migrate()  # the outbox's tables; idempotent
        with sqlite3.connect(database) as db:
            db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, status TEXT)")
        async with bridge, outbox, outbox.relay():  # the relay publishes what commits
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.outbox = outbox  # for other routes, and for tests

    @app.put("/orders/{order_id}")
    async def change_order(order_id: int, change: OrderChange) -> dict[str, str]:
        order = {"id": order_id, "status": change.status}
        event = Event(channel=f"orders.{order_id}", type="order.updated", data=order)
        db = sqlite3.connect(database)
        try:
            with db:  # one transaction: the order and its event commit together, or neither
                db.execute(
                    "INSERT INTO orders VALUES (:id, :status) "
                    "ON CONFLICT (id) DO UPDATE SET status = excluded.status",
                    order,
                )
                await outbox.enqueue(db, event)
        finally:
            db.close()
        return {"event_id": event.id}

    @app.get("/orders/{order_id}/events")
    async def order_events(order_id: int) -> list[dict[str, Any]]:
        # The vendor's own history, or the outbox's sent rows where it keeps none.
        page = await bridge.history(f"orders.{order_id}", limit=50)
        return [event.model_dump(mode="json") for event in page]

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), port=8000)
