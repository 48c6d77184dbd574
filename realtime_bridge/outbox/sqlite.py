"""The outbox on SQLite: the embedded default, for one relay process.

SQLite has one writer at a time, so there is nothing to partition: the relay
claims in one ``BEGIN IMMEDIATE`` transaction. The standard ``sqlite3``
module is blocking, so each call runs in a worker thread, on one connection
guarded by a lock. Times are Unix seconds from SQLite's own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import ConfigurationError, CursorNotFound, DatabaseUnavailable
from . import sql
from .database import DeadRow, OutboxDatabase, OutboxRow, OutboxStatus

__all__ = ["SqliteDatabase"]

T = TypeVar("T")
NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_ROW = "pk, event_id, channel, type, v, data, created_at, seq, attempts"


def _row(values: Sequence[Any]) -> OutboxRow:
    pk, event_id, channel, type_, v, data, created_at, seq, attempts = values
    created = datetime.fromtimestamp(created_at, UTC)
    return OutboxRow(pk, event_id, channel, type_, v, data, created, seq, attempts)


class SqliteDatabase(OutboxDatabase):
    """One SQLite file (or ``:memory:``), used from a worker thread."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._wake = asyncio.Event()

    @classmethod
    def from_url(cls, url: str) -> SqliteDatabase:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
        path = urlsplit(url).path.removeprefix("/")
        if not path:
            raise ConfigurationError(
                f"the SQLite URL {url!r} names no file; e.g. sqlite:///outbox.db"
            )
        return cls(path)

    def notify(self) -> None:
        """Wake a waiting relay in this process (SQLite has no LISTEN/NOTIFY)."""
        self._wake.set()

    # -- plumbing ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            self._conn = conn
        return self._conn

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                try:
                    return work(self._connection())
                except sqlite3.OperationalError as exc:
                    raise DatabaseUnavailable(
                        f"SQLite: {exc}", adapter=f"sqlite:///{self.path}"
                    ) from exc

        return await asyncio.to_thread(locked)

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def aclose(self) -> None:
        def close(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self._run(close)

    # -- schema -------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        return await self._run(self._migrate)

    def _migrate(self, conn: sqlite3.Connection) -> list[str]:
        with self._transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS realtime_outbox_migrations ("
                f"name TEXT PRIMARY KEY, applied_at REAL NOT NULL DEFAULT ({NOW}))"
            )
            applied = {r[0] for r in conn.execute("SELECT name FROM realtime_outbox_migrations")}
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'realtime_outbox'"
            ).fetchone()
            fresh = not applied and exists is None
            if fresh:
                _script(conn, sql.schema("sqlite"))
            done = []
            for name, text in sql.migrations("sqlite"):
                if name not in applied:
                    if not fresh:
                        _script(conn, text)
                    conn.execute(
                        "INSERT INTO realtime_outbox_migrations (name) VALUES (?)", (name,)
                    )
                    done.append(name)
            return done

    # -- the relay's work --------------------------------------------------------

    async def claim(
        self,
        limit: int,
        *,
        exclude: Sequence[int] = (),
        floors: Mapping[str, int] | None = None,
    ) -> list[OutboxRow]:
        # One relay, one writer: seqs are recorded as they are claimed, so ``floors``
        # (what the relay has in flight) is already counted in last_seq.
        return await self._run(lambda conn: self._claim(conn, limit, exclude))

    def _claim(
        self, conn: sqlite3.Connection, limit: int, exclude: Sequence[int]
    ) -> list[OutboxRow]:
        with self._transaction(conn):
            batch = conn.execute(
                f"SELECT pk, channel, seq FROM realtime_outbox o WHERE state = 'pending' "
                f"AND next_attempt_at <= {NOW} AND pk NOT IN ({_marks(exclude)}) "
                "AND NOT EXISTS (SELECT 1 FROM realtime_outbox w "
                "WHERE w.channel = o.channel AND w.state = 'pending' AND w.attempts > 0 "
                f"AND w.next_attempt_at > {NOW} AND w.pk < o.pk) ORDER BY pk LIMIT ?",
                (*exclude, limit),
            ).fetchall()
            _assign_seqs(conn, [(pk, channel) for pk, channel, seq in batch if seq is None])
            pks = [pk for pk, _, _ in batch]
            rows = conn.execute(
                f"SELECT {_ROW} FROM realtime_outbox WHERE pk IN ({_marks(pks)}) ORDER BY pk", pks
            ).fetchall()
        return [_row(values) for values in rows]

    async def mark_sent(self, rows: Sequence[OutboxRow]) -> None:
        await self._update(
            f"UPDATE realtime_outbox SET state = 'sent', sent_at = {NOW}, last_error = NULL "
            "WHERE pk IN ({marks})",
            [row.pk for row in rows],
        )

    async def mark_retry(self, rows: Sequence[OutboxRow], delay: float, error: str) -> None:
        await self._update(
            "UPDATE realtime_outbox SET attempts = attempts + 1, last_error = ?, "
            f"next_attempt_at = {NOW} + ? WHERE pk IN ({{marks}})",
            [row.pk for row in rows],
            (error, delay),
        )

    async def mark_dead(self, rows: Sequence[OutboxRow], reason: str) -> None:
        await self._update(
            "UPDATE realtime_outbox SET state = 'dead', attempts = attempts + 1, last_error = ? "
            "WHERE pk IN ({marks})",
            [row.pk for row in rows],
            (reason,),
        )

    async def _update(
        self, statement: str, pks: Sequence[int], before: tuple[Any, ...] = ()
    ) -> None:
        if not pks:
            return
        text = statement.replace("{marks}", _marks(pks))
        await self._run(lambda conn: conn.execute(text, (*before, *pks)))

    async def wait_for_work(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), within)
        self._wake.clear()

    # -- operations -----------------------------------------------------------------

    async def status(self) -> OutboxStatus:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'pending'), "
                "count(*) FILTER (WHERE state = 'pending' AND attempts > 0), "
                "count(*) FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state = 'sent'), "
                f"{NOW} - min(created_at) FILTER (WHERE state = 'pending'), "
                f"count(*) FILTER (WHERE state = 'sent' AND sent_at > {NOW} - 60) "
                "FROM realtime_outbox"
            ).fetchone()
        )
        return OutboxStatus(row[0], row[1], row[2], row[3], row[4], row[5])

    async def dead_rows(self, *, limit: int, channel: str | None) -> list[DeadRow]:
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT event_id, channel, type, attempts, last_error, created_at "
                "FROM realtime_outbox WHERE state = 'dead' AND (? IS NULL OR channel = ?) "
                "ORDER BY pk LIMIT ?",
                (channel, channel, limit),
            ).fetchall()
        )
        return [
            DeadRow(e, c, t, a, r, datetime.fromtimestamp(at, UTC)) for e, c, t, a, r, at in rows
        ]

    async def retry_dead(self, *, event_ids: Sequence[str], channel: str | None) -> int:
        return await self._dead(
            f"UPDATE realtime_outbox SET state = 'pending', attempts = 0, next_attempt_at = {NOW}",
            event_ids,
            channel,
        )

    async def purge_dead(self, *, event_ids: Sequence[str], channel: str | None) -> int:
        return await self._dead("DELETE FROM realtime_outbox", event_ids, channel)

    async def _dead(self, action: str, event_ids: Sequence[str], channel: str | None) -> int:
        ids = f"event_id IN ({_marks(event_ids)})" if event_ids else "1"
        text = f"{action} WHERE state = 'dead' AND {ids} AND (? IS NULL OR channel = ?)"
        cursor = await self._run(lambda conn: conn.execute(text, (*event_ids, channel, channel)))
        return cursor.rowcount

    async def history(
        self, channel: str, *, limit: int, before: str | None, after: str | None
    ) -> tuple[list[OutboxRow], bool]:
        return await self._run(lambda conn: _history(conn, channel, limit, before, after))

    async def delete_sent(self, *, older_than: float, batch: int) -> int:
        cursor = await self._run(
            lambda conn: conn.execute(
                "DELETE FROM realtime_outbox WHERE pk IN (SELECT pk FROM realtime_outbox "
                f"WHERE state = 'sent' AND sent_at < {NOW} - ? LIMIT ?)",
                (older_than, batch),
            )
        )
        return cursor.rowcount


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _script(conn: sqlite3.Connection, text: str) -> None:
    """Run a script inside the open transaction (``executescript`` would commit first).

    Comment lines are dropped, then ``;`` splits statements: our scripts never put
    a ``;`` inside a string.
    """
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    for statement in code.split(";"):
        if statement.strip():
            conn.execute(statement)


def _assign_seqs(conn: sqlite3.Connection, fresh: list[tuple[int, str]]) -> None:
    """Give each newly claimed row its channel's next seq, in claim (pk) order."""
    last: dict[str, int] = {}
    updates = []
    for pk, channel in fresh:
        if channel not in last:
            found = conn.execute(
                "SELECT last_seq FROM realtime_outbox_channels WHERE channel = ?", (channel,)
            ).fetchone()
            last[channel] = found[0] if found else 0
        last[channel] += 1
        updates.append((last[channel], pk))
    conn.executemany("UPDATE realtime_outbox SET seq = ? WHERE pk = ?", updates)
    conn.executemany(
        "INSERT INTO realtime_outbox_channels (channel, last_seq) VALUES (?, ?) "
        "ON CONFLICT (channel) DO UPDATE SET last_seq = excluded.last_seq",
        list(last.items()),
    )


def _history(
    conn: sqlite3.Connection, channel: str, limit: int, before: str | None, after: str | None
) -> tuple[list[OutboxRow], bool]:
    cursor = after if after is not None else before
    bound = None
    if cursor is not None:
        found = conn.execute(
            "SELECT seq FROM realtime_outbox WHERE event_id = ? AND channel = ? AND state = 'sent'",
            (cursor, channel),
        ).fetchone()
        if found is None:
            raise CursorNotFound(f"event {cursor} is not in the outbox history of {channel}")
        bound = found[0]
    newest_first = after is None
    where, order = ("seq < ?", "seq DESC") if newest_first else ("seq > ?", "seq")
    condition = f"AND {where}" if bound is not None else ""
    params = (channel, bound, limit + 1) if bound is not None else (channel, limit + 1)
    found_rows = conn.execute(
        f"SELECT {_ROW} FROM realtime_outbox WHERE channel = ? AND state = 'sent' {condition} "
        f"ORDER BY {order} LIMIT ?",
        params,
    ).fetchall()
    rows = [_row(values) for values in found_rows[:limit]]
    if newest_first:
        rows.reverse()
    return rows, len(found_rows) > limit
