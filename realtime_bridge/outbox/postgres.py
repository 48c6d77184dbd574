"""The outbox on PostgreSQL, through asyncpg: claims, marks, LISTEN, partitions.

Several relays share the work without stepping on each other's channels:
channels hash into 64 partitions, and a relay publishes only the partitions
it holds a session advisory lock on. Each relay takes a fair share
(64 / live relays, counted by their ``application_name``) and rebalances
every few seconds, so a relay that dies (its connection and locks gone with
it) has its partitions picked up by the others. Within a partition one relay
publishes in order, so each channel keeps its order across relays.

Nothing is leased, and a claim writes nothing: a relay records each row's
outcome and seq in one statement, after the vendor answered. A relay killed
mid-batch leaves its rows pending and unnumbered, and they are published
again, with the same event ids and the same seqs (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg

from ..errors import AuthenticationFailed, CursorNotFound, DatabaseUnavailable
from ..settings import redact_url
from . import sql
from .database import DeadRow, OutboxDatabase, OutboxRow, OutboxStatus

__all__ = ["PARTITIONS", "PostgresDatabase"]

PARTITIONS = 64
_LOCK_CLASS = 0x52424F58  # "RBOX": the first key of every advisory lock we take
_MIGRATION_LOCK = 1000
_APP_NAME = "realtime_bridge relay"
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # A connection the server terminated while it sat idle (a restart) can be left
    # mid-state: "cannot switch to state 12; another operation (2) is in progress".
    asyncpg.InternalClientError,
)


class PostgresDatabase(OutboxDatabase):
    """One asyncpg connection per relay: queries, LISTEN and partition locks."""

    dialect = "postgres"

    def __init__(self, url: str, *, relay: bool = True) -> None:
        self._url = url
        self._label = redact_url(url)
        suffix = uuid.uuid4().hex[:8]
        self._app_name = f"{_APP_NAME} {suffix}" if relay else f"realtime_bridge {suffix}"
        self._conn: asyncpg.Connection[Any] | None = None
        self._wake = asyncio.Event()
        self._owned: set[int] = set()

    @property
    def owned_partitions(self) -> frozenset[int]:
        return frozenset(self._owned)

    # -- connection -------------------------------------------------------

    async def _connection(self) -> asyncpg.Connection[Any]:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._owned.clear()  # locks die with the old connection
        conn = await asyncpg.connect(
            self._url, server_settings={"application_name": self._app_name}
        )
        await conn.add_listener("realtime_outbox", self._on_notify)
        self._conn = conn
        self._wake.set()  # rows may have arrived while disconnected
        return conn

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        """A live connection; connection errors become ``DatabaseUnavailable``, once, here."""
        try:
            yield await self._connection()
        except (
            asyncpg.InvalidPasswordError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ) as exc:
            raise AuthenticationFailed(
                f"PostgreSQL refused the login: {exc}", adapter=self._label
            ) from exc
        except _CONNECTION_ERRORS as exc:
            await self._drop()
            raise DatabaseUnavailable(
                f"cannot reach PostgreSQL: {exc}", adapter=self._label
            ) from exc

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._owned.clear()
        if conn is not None:
            conn.terminate()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        self._owned.clear()
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await conn.close(timeout=5)

    # -- schema -----------------------------------------------------------

    async def migrate(self) -> list[str]:
        async with self._session() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS realtime_outbox_migrations ("
                "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {
                r["name"] for r in await conn.fetch("SELECT name FROM realtime_outbox_migrations")
            }
            fresh = (
                not applied and await conn.fetchval("SELECT to_regclass('realtime_outbox')") is None
            )
            if fresh:
                await conn.execute(sql.schema("postgres"))
            done = []
            for name, text in sql.migrations("postgres"):
                if name not in applied:
                    if not fresh:
                        await conn.execute(text)
                    await conn.execute(
                        "INSERT INTO realtime_outbox_migrations (name) VALUES ($1)", name
                    )
                    done.append(name)
            return done

    # -- partitions -------------------------------------------------------

    async def rebalance(self) -> None:
        async with self._session() as conn:
            relays = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE $1",
                f"{_APP_NAME} %",
            )
            share = math.ceil(PARTITIONS / max(1, relays))
            for partition in sorted(self._owned)[share:]:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_CLASS, partition)
                self._owned.discard(partition)
            free = [p for p in range(PARTITIONS) if p not in self._owned]
            random.shuffle(free)
            for partition in free:
                if len(self._owned) >= share:
                    break
                if await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", _LOCK_CLASS, partition
                ):
                    self._owned.add(partition)

    # -- the relay's work ---------------------------------------------------

    async def claim(
        self,
        limit: int,
        *,
        exclude: Sequence[int] = (),
        floors: Mapping[str, int] | None = None,
    ) -> list[OutboxRow]:
        if not self._owned:
            return []
        floors = floors or {}
        async with self._session() as conn:
            records = await conn.fetch(
                "SELECT * FROM realtime_outbox_claim_v2($1::smallint[], $2, $3::bigint[], "
                "$4::text[], $5::bigint[])",
                sorted(self._owned),
                limit,
                list(exclude),
                list(floors),
                list(floors.values()),
            )
        return [OutboxRow(*record) for record in records]

    async def mark_sent(self, rows: Sequence[OutboxRow]) -> None:
        await self._mark(rows, "state = 'sent', sent_at = now(), last_error = NULL")

    async def mark_retry(self, rows: Sequence[OutboxRow], delay: float, error: str) -> None:
        await self._mark(
            rows,
            "attempts = o.attempts + 1, last_error = $3, "
            "next_attempt_at = now() + make_interval(secs => $4)",
            error,
            delay,
        )

    async def mark_dead(self, rows: Sequence[OutboxRow], reason: str) -> None:
        await self._mark(rows, "state = 'dead', attempts = o.attempts + 1, last_error = $3", reason)

    async def _mark(self, rows: Sequence[OutboxRow], changes: str, *args: object) -> None:
        """Record the rows' outcome and their seqs, and move their channels' last seq."""
        if not rows:
            return
        async with self._session() as conn:
            await conn.execute(
                f"WITH marked AS (UPDATE realtime_outbox o SET seq = m.seq, {changes} "
                "FROM unnest($1::bigint[], $2::bigint[]) AS m (pk, seq) WHERE o.pk = m.pk "
                "RETURNING o.channel, o.seq) "
                "INSERT INTO realtime_outbox_channels AS ch (channel, last_seq) "
                "SELECT channel, max(seq) FROM marked GROUP BY channel ORDER BY channel "
                "ON CONFLICT ON CONSTRAINT realtime_outbox_channels_pkey "
                "DO UPDATE SET last_seq = greatest(ch.last_seq, EXCLUDED.last_seq)",
                [row.pk for row in rows],
                [row.seq for row in rows],
                *args,
            )

    async def wait_for_work(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), within)
        self._wake.clear()

    # -- operations -----------------------------------------------------------

    async def status(self) -> OutboxStatus:
        async with self._session() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, "
                "count(*) FILTER (WHERE state = 'pending' AND attempts > 0) AS waiting, "
                "count(*) FILTER (WHERE state = 'dead') AS dead, "
                "count(*) FILTER (WHERE state = 'sent') AS sent, "
                "extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending')) "
                "AS age, "
                "count(*) FILTER (WHERE state = 'sent' AND sent_at > now() - interval '1 minute') "
                "AS recent FROM realtime_outbox"
            )
        assert row is not None  # an aggregate always returns one row
        age = None if row["age"] is None else float(row["age"])
        return OutboxStatus(
            row["pending"], row["waiting"], row["dead"], row["sent"], age, row["recent"]
        )

    async def dead_rows(self, *, limit: int, channel: str | None) -> list[DeadRow]:
        async with self._session() as conn:
            records = await conn.fetch(
                "SELECT event_id, channel, type, attempts, last_error, created_at "
                "FROM realtime_outbox WHERE state = 'dead' AND ($2::text IS NULL OR channel = $2) "
                "ORDER BY pk LIMIT $1",
                limit,
                channel,
            )
        return [DeadRow(*record) for record in records]

    async def retry_dead(self, *, event_ids: Sequence[str], channel: str | None) -> int:
        return await self._update_dead(
            "UPDATE realtime_outbox SET state = 'pending', attempts = 0, next_attempt_at = now()",
            event_ids,
            channel,
        )

    async def purge_dead(self, *, event_ids: Sequence[str], channel: str | None) -> int:
        return await self._update_dead("DELETE FROM realtime_outbox", event_ids, channel)

    async def _update_dead(self, action: str, event_ids: Sequence[str], channel: str | None) -> int:
        async with self._session() as conn:
            result = await conn.execute(
                f"{action} WHERE state = 'dead' AND (cardinality($1::text[]) = 0 "
                "OR event_id = ANY($1::text[])) AND ($2::text IS NULL OR channel = $2)",
                list(event_ids),
                channel,
            )
        return int(result.rsplit(" ", 1)[-1])

    async def history(
        self, channel: str, *, limit: int, before: str | None, after: str | None
    ) -> tuple[list[OutboxRow], bool]:
        cursor = after if after is not None else before
        async with self._session() as conn:
            bound = None
            if cursor is not None:
                bound = await conn.fetchval(
                    "SELECT seq FROM realtime_outbox WHERE event_id = $1 AND channel = $2 "
                    "AND state = 'sent'",
                    cursor,
                    channel,
                )
                if bound is None:
                    raise CursorNotFound(
                        f"event {cursor} is not in the outbox history of {channel}"
                    )
            newest_first = after is None
            records = await conn.fetch(
                "SELECT pk, event_id, channel, type, v, data, created_at, seq, attempts "
                "FROM realtime_outbox WHERE channel = $1 AND state = 'sent' "
                "AND ($2::bigint IS NULL OR (CASE WHEN $3 THEN seq < $2 ELSE seq > $2 END)) "
                "ORDER BY CASE WHEN $3 THEN -seq ELSE seq END LIMIT $4",
                channel,
                bound,
                newest_first,
                limit + 1,
            )
        rows = [OutboxRow(*record) for record in records[:limit]]
        if newest_first:
            rows.reverse()
        return rows, len(records) > limit

    async def delete_sent(self, *, older_than: float, batch: int) -> int:
        async with self._session() as conn:
            result = await conn.execute(
                "DELETE FROM realtime_outbox WHERE pk IN (SELECT pk FROM realtime_outbox "
                "WHERE state = 'sent' AND sent_at < now() - make_interval(secs => $1) LIMIT $2)",
                older_than,
                batch,
            )
        return int(result.rsplit(" ", 1)[-1])
