"""``Outbox``: enqueue in the caller's transaction; migrate, inspect, relay.

The database is the source of truth: the application writes its domain rows
and the outbox rows in one transaction, and a relay publishes what committed.
``Outbox`` is the application's handle on that: ``enqueue`` inside the
transaction, and the operator's calls (``migrate``, ``status``, the dead
letters, ``history`` from the rows kept for ``retention``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from ..adapters.base import Capability, HistoryPage
from ..bridge import Bridge
from ..errors import InvalidEvent
from ..events import Event, validate_channel
from ..settings import BridgeSettings
from .database import DeadRow, OutboxDatabase, OutboxStatus, database_for
from .enqueue import insert_events
from .relay import Relay

__all__ = ["DEFAULT_DATABASE_URL", "DEFAULT_RETENTION", "Outbox"]

DEFAULT_DATABASE_URL = "sqlite:///realtime_bridge_outbox.db"
DEFAULT_RETENTION = 7 * 86400.0


class Outbox:
    """The transactional outbox of one database, publishing through one Bridge."""

    def __init__(
        self,
        database_url: str = DEFAULT_DATABASE_URL,
        *,
        bridge: Bridge | None = None,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        self.database_url = database_url
        self.bridge = bridge or Bridge.from_url("memory://")
        self.retention = retention
        self._database: OutboxDatabase | None = None
        if not self.bridge.primary.supports(Capability.HISTORY):
            self.bridge.history_source = self  # the vendor keeps none: answer from the rows

    @classmethod
    def from_settings(cls, settings: BridgeSettings | None = None, **options: Any) -> Outbox:
        """The outbox of ``REALTIME_BRIDGE_DATABASE_URL``, publishing through the Bridge."""
        settings = settings or BridgeSettings()
        url = settings.database_url.get_secret_value() if settings.database_url else None
        options.setdefault("bridge", Bridge.from_settings(settings))
        return cls(url or DEFAULT_DATABASE_URL, **options)

    @property
    def database(self) -> OutboxDatabase:
        """This process's connection for operator calls (relays open their own)."""
        if self._database is None:
            self._database = database_for(self.database_url, relay=False)
        return self._database

    async def enqueue(self, conn: Any, *events: Event) -> None:
        """Store ``events`` in the caller's open transaction on ``conn``.

        Every event is checked against every configured adapter's limits first,
        so a bad event raises here, inside the caller's transaction, and never
        reaches the table. An id already stored is skipped.
        """
        for event in events:
            if not isinstance(event, Event):
                raise InvalidEvent(
                    f"outbox.enqueue takes Event objects, got {type(event).__name__}"
                )
        self.bridge.validate(events)
        await insert_events(conn, events)

    def relay(self, **options: Any) -> Relay:
        """A relay with its own database connection (``async with outbox.relay(): ...``)."""
        return Relay(
            database_for(self.database_url, relay=True),
            self.bridge,
            retention=self.retention,
            **options,
        )

    async def migrate(self) -> list[str]:
        """Create the tables, or bring them up to date; idempotent."""
        return await self.database.migrate()

    async def status(self) -> OutboxStatus:
        return await self.database.status()

    async def dead(self, *, limit: int = 100, channel: str | None = None) -> list[DeadRow]:
        return await self.database.dead_rows(limit=limit, channel=channel)

    async def retry_dead(self, *event_ids: str, channel: str | None = None) -> int:
        """Queue dead events again: the given ids, or all of ``channel``, or all."""
        return await self.database.retry_dead(event_ids=event_ids, channel=channel)

    async def purge_dead(self, *event_ids: str, channel: str | None = None) -> int:
        return await self.database.purge_dead(event_ids=event_ids, channel=channel)

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """Sent events of ``channel`` kept for ``retention``, by ``seq``, oldest first."""
        validate_channel(channel)
        rows, has_more = await self.database.history(
            channel, limit=limit, before=before, after=after
        )
        return HistoryPage(tuple(row.event() for row in rows), has_more=has_more)

    async def aclose(self) -> None:
        if self._database is not None:
            await self._database.aclose()
            self._database = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        await self.bridge.aclose()
