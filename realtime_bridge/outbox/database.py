"""What the relay and the operator commands need from the outbox's database.

Two implementations: PostgreSQL (``postgres.py``, asyncpg; several relays
share the work by owning partitions) and SQLite (``sqlite.py``, the embedded
default; one relay). Application code never uses these: it enqueues on its
own connection (``enqueue.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import ConfigurationError
from ..events import Event

__all__ = ["DeadRow", "OutboxDatabase", "OutboxRow", "OutboxStatus", "database_for"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A claimed row: an event, its per-channel ``seq``, and how often it was tried."""

    pk: int
    event_id: str
    channel: str
    type: str
    v: int
    data: str
    created_at: datetime
    seq: int
    attempts: int

    def event(self) -> Event:
        return Event.from_stored(
            id=self.event_id,
            type=self.type,
            channel=self.channel,
            data_json=self.data.encode(),
            v=self.v,
            seq=self.seq,
            ts=self.created_at,
        )


@dataclass(frozen=True, slots=True)
class DeadRow:
    """A dead-lettered event and the reason it was given up on."""

    event_id: str
    channel: str
    type: str
    attempts: int
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """The backlog at a glance, for ``realtime-bridge outbox status`` and metrics."""

    pending: int
    waiting_retry: int
    dead: int
    sent: int
    oldest_pending_seconds: float | None
    sent_last_minute: int


class OutboxDatabase(ABC):
    """The relay's and the operator's access to the outbox tables."""

    dialect: str

    @abstractmethod
    async def migrate(self) -> list[str]:
        """Create or update the schema; return the migrations applied now."""

    @abstractmethod
    async def claim(
        self,
        limit: int,
        *,
        exclude: Sequence[int] = (),
        floors: Mapping[str, int] | None = None,
    ) -> list[OutboxRow]:
        """The next pending rows this relay may publish, oldest first, with ``seq`` set.

        A row's ``seq`` is recorded with its outcome (``mark_*``), so claiming the
        same rows again before that gives them the same seqs.
        ``exclude``: pks this relay holds already (the batch it is publishing);
        ``floors``: the highest seq per channel among those, which new seqs follow.
        """

    @abstractmethod
    async def mark_sent(self, rows: Sequence[OutboxRow]) -> None:
        """The adapter acknowledged these rows: record that, and their seqs."""

    @abstractmethod
    async def mark_retry(self, rows: Sequence[OutboxRow], delay: float, error: str) -> None:
        """Try these rows again in ``delay`` seconds, keeping their seqs; they hold back
        their channels."""

    @abstractmethod
    async def mark_dead(self, rows: Sequence[OutboxRow], reason: str) -> None:
        """Give up on these rows, keeping the reason."""

    @abstractmethod
    async def wait_for_work(self, within: float) -> None:
        """Return when rows may have arrived (a notification) or after ``within`` seconds."""

    @abstractmethod
    async def status(self) -> OutboxStatus: ...

    @abstractmethod
    async def dead_rows(self, *, limit: int, channel: str | None) -> list[DeadRow]: ...

    @abstractmethod
    async def retry_dead(self, *, event_ids: Sequence[str], channel: str | None) -> int:
        """Put dead rows back to pending (all of ``channel``, or the given ids)."""

    @abstractmethod
    async def purge_dead(self, *, event_ids: Sequence[str], channel: str | None) -> int: ...

    @abstractmethod
    async def history(
        self, channel: str, *, limit: int, before: str | None, after: str | None
    ) -> tuple[list[OutboxRow], bool]:
        """Sent rows of ``channel`` by ``seq``, oldest first, and whether more remain."""

    @abstractmethod
    async def delete_sent(self, *, older_than: float, batch: int) -> int:
        """Delete up to ``batch`` rows sent more than ``older_than`` seconds ago."""

    async def rebalance(self) -> None:
        """Adjust which share of the work this relay owns (several relays)."""

    @abstractmethod
    async def aclose(self) -> None: ...


def database_for(url: str, *, relay: bool = False) -> OutboxDatabase:
    """The outbox database a URL names: ``postgresql://...`` or ``sqlite:///path``.

    ``relay=True`` for a relay's own connection: on PostgreSQL, relays are counted
    by their connections' names to share the partitions fairly.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in {"postgres", "postgresql"}:
        from .postgres import PostgresDatabase

        return PostgresDatabase(url, relay=relay)
    if scheme == "sqlite":
        from .sqlite import SqliteDatabase

        return SqliteDatabase.from_url(url)
    raise ConfigurationError(
        "the outbox database URL must start with postgresql:// or sqlite:///, "
        f"got scheme {scheme!r}"
    )
