"""The chat's own tables in PostgreSQL: rooms' members, and messages written with their events.

``post`` is the database-first part: the message row and the ``message.created``
event describing it are written in one transaction, on one asyncpg
connection, so both commit or neither does. Nothing reaches a browser before
the commit; the relay publishes the event after it, with the room channel's
next ``seq``. The event's ``data`` is the whole message, so a client needs
nothing else to show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from realtime_bridge import Event
from realtime_bridge.outbox import Outbox

SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_members (
    room_id bigint NOT NULL,
    user_id text NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE TABLE IF NOT EXISTS chat_messages (
    id bigserial PRIMARY KEY,
    room_id bigint NOT NULL,
    user_id text NOT NULL,
    body text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS chat_messages_by_room ON chat_messages (room_id, id);
"""


def room_channel(room_id: int) -> str:
    """Where a room's messages are published: members may subscribe."""
    return f"room.{room_id}"


def presence_channel(room_id: int) -> str:
    """Who is in the room right now: members enter it as themselves."""
    return f"presence-room.{room_id}"


@dataclass(frozen=True)
class Message:
    id: int
    room_id: int
    user: str
    body: str
    sent_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Message:
        return cls(row["id"], row["room_id"], row["user_id"], row["body"], row["sent_at"])

    def as_data(self) -> dict[str, Any]:
        """The message as JSON: the event's ``data``, and what ``GET .../messages`` lists."""
        return {
            "id": self.id,
            "room_id": self.room_id,
            "user": self.user,
            "body": self.body,
            "sent_at": self.sent_at.isoformat(),
        }


class ChatDatabase:
    """The chat's connection pool and queries; ``open`` creates the tables if they are missing."""

    def __init__(self, url: str, outbox: Outbox) -> None:
        self.url = url
        self.outbox = outbox
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the chat database is not open: the app's lifespan opens it")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=10)
        async with self.pool.acquire() as conn:
            await conn.execute(SCHEMA)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def join(self, room_id: int, user: str) -> None:
        await self.pool.execute(
            "INSERT INTO chat_members (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            room_id,
            user,
        )

    async def is_member(self, room_id: int, user: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM chat_members WHERE room_id = $1 AND user_id = $2", room_id, user
        )
        return found is not None

    async def post(self, room_id: int, user: str, body: str) -> tuple[Message, Event]:
        """Store the message and its event in one transaction; both commit, or neither."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO chat_messages (room_id, user_id, body) VALUES ($1, $2, $3) "
                "RETURNING id, room_id, user_id, body, sent_at",
                room_id,
                user,
                body,
            )
            message = Message.from_row(row)
            event = Event(
                channel=room_channel(room_id), type="message.created", data=message.as_data()
            )
            await self.outbox.enqueue(conn, event)
        return message, event

    async def recent(self, room_id: int, limit: int = 50) -> list[Message]:
        """The room's latest ``limit`` messages, oldest first: what a page re-fetches."""
        rows = await self.pool.fetch(
            "SELECT * FROM (SELECT id, room_id, user_id, body, sent_at FROM chat_messages "
            "WHERE room_id = $1 ORDER BY id DESC LIMIT $2) AS latest ORDER BY id",
            room_id,
            limit,
        )
        return [Message.from_row(row) for row in rows]
