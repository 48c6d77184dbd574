"""The transactional outbox: database-first publishing that survives crashes.

``Outbox.enqueue(conn, *events)`` writes events in the caller's transaction;
a ``Relay`` publishes what committed, in order per channel, at least once.
"""

from __future__ import annotations

from .database import DeadRow, OutboxRow, OutboxStatus
from .relay import Relay, RelayStats
from .store import DEFAULT_DATABASE_URL, DEFAULT_RETENTION, Outbox

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_RETENTION",
    "DeadRow",
    "Outbox",
    "OutboxRow",
    "OutboxStatus",
    "Relay",
    "RelayStats",
]
