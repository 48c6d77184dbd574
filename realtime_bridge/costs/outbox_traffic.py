"""Measuring traffic from the outbox: the events that were actually sent, as sent.

The outbox keeps sent rows for ``retention`` (7 days by default), so in
staging it already holds what a vendor would have billed: per row, the
channel, the type, the stored data, the seq and the commit time. The size
counted is the encoded envelope (``Event.encode()``, what every adapter
sends), rebuilt exactly as the relay rebuilds it; only the data's length is
read, not the data, so a month of rows streams through quickly and in
constant memory per channel.

Rows are read through the outbox's own database layer (its connection
handling, error mapping and URL redaction), in commit order: one streamed
query on PostgreSQL (a server-side cursor), one on SQLite (in a worker
thread, as the SQLite layer runs everything).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..events import Event
from ..outbox.database import database_for
from .traffic import Period, Subscribers, Traffic, TrafficBuilder

__all__ = ["traffic_from_outbox"]

_COLUMNS = "channel, type, event_id, v, seq, created_at"
_POSTGRES = (
    f"SELECT {_COLUMNS}, octet_length(data::text) FROM realtime_outbox "
    "WHERE state = 'sent' AND created_at >= $1 AND created_at < $2 ORDER BY created_at, pk"
)
_SQLITE = (
    f"SELECT {_COLUMNS}, length(CAST(data AS BLOB)) FROM realtime_outbox "
    "WHERE state = 'sent' AND created_at >= ? AND created_at < ? ORDER BY created_at, pk"
)
_PREFETCH = 2000
_EMPTY_DATA = 2  # the b"{}" the envelope is rebuilt with, replaced by the data's length


def _add(builder: TrafficBuilder, row: Iterable[Any]) -> None:
    channel, type_, event_id, v, seq, created_at, data_bytes = row
    ts = created_at if isinstance(created_at, datetime) else datetime.fromtimestamp(created_at, UTC)
    shell = Event.from_stored(
        id=event_id, type=type_, channel=channel, data_json=b"{}", v=v, seq=seq, ts=ts
    )
    size = len(shell.encode()) - _EMPTY_DATA + int(data_bytes)
    builder.add(channel, size, len(type_.encode()), ts)


async def _read_postgres(database: Any, builder: TrafficBuilder) -> None:
    period = builder.period
    async with database._session() as conn, conn.transaction(readonly=True):
        cursor = conn.cursor(_POSTGRES, period.start, period.end, prefetch=_PREFETCH)
        async for record in cursor:
            _add(builder, record)


async def _read_sqlite(database: Any, builder: TrafficBuilder) -> None:
    period = builder.period
    bounds = (period.start.timestamp(), period.end.timestamp())

    def read(conn: sqlite3.Connection) -> None:
        rows = conn.execute(_SQLITE, bounds)
        while batch := rows.fetchmany(_PREFETCH):
            for row in batch:
                _add(builder, row)

    await database._run(read)


async def traffic_from_outbox(
    database_url: str,
    period: Period,
    *,
    subscribers: Subscribers | None = None,
    peak_connections: float | None = None,
    mean_connections: float | None = None,
) -> Traffic:
    """The traffic of the rows sent from the outbox at ``database_url``, committed in
    ``period`` (PostgreSQL or SQLite; the same URL the relay uses).

    ``subscribers`` defaults to one per channel, assumed; sample them with
    ``sample_subscribers`` or state them. ``peak_connections`` defaults to an
    estimate (see ``Traffic``).
    """
    database = database_for(database_url)
    builder = TrafficBuilder(period)
    try:
        if database.dialect == "postgres":
            await _read_postgres(database, builder)
        else:
            await _read_sqlite(database, builder)
    finally:
        await database.aclose()
    return builder.build(
        subscribers=subscribers or Subscribers.assumed(1.0),
        peak_connections=peak_connections,
        mean_connections=mean_connections,
    )
