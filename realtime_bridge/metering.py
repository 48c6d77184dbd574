"""Per-adapter counters: what was sent where, how big, how fast, how it ended.

The Bridge records every call it makes, primary, fallback and shadow alike,
so a team running shadows in staging can see each vendor's latency and
failure rate on its own traffic, and the cost report can count what each
vendor would bill. Counters are plain integers and a bounded window of
latencies: metering never grows memory without bound.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

__all__ = ["AdapterStats", "Meter"]

_LATENCY_WINDOW = 2048


@dataclass
class AdapterStats:
    """Counters for one adapter since the Bridge started."""

    role: str
    calls: int = 0
    failures: int = 0
    #: Calls not made because the adapter's circuit breaker was open.
    skipped: int = 0
    events: int = 0
    bytes: int = 0
    duplicates: int = 0
    shadow_dropped: int = 0
    last_error: str | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))

    def latency_percentile(self, percentile: float) -> float | None:
        """Latency in seconds at ``percentile`` (0-100) over the recent window."""
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        index = min(98, max(0, round(percentile) - 1))
        return cuts[index]

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "calls": self.calls,
            "failures": self.failures,
            "skipped": self.skipped,
            "events": self.events,
            "bytes": self.bytes,
            "duplicates": self.duplicates,
            "shadow_dropped": self.shadow_dropped,
            "latency_p50_ms": _ms(self.latency_percentile(50)),
            "latency_p99_ms": _ms(self.latency_percentile(99)),
            "last_error": self.last_error,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class Meter:
    """Holds one ``AdapterStats`` per adapter name."""

    def __init__(self) -> None:
        self._stats: dict[str, AdapterStats] = {}

    def register(self, adapter: str, role: str) -> AdapterStats:
        stats = self._stats.setdefault(adapter, AdapterStats(role=role))
        return stats

    def __getitem__(self, adapter: str) -> AdapterStats:
        return self._stats[adapter]

    def items(self) -> list[tuple[str, AdapterStats]]:
        """``(adapter, stats)`` pairs, in the order the adapters were registered."""
        return list(self._stats.items())

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every adapter's counters as plain data (JSON-ready)."""
        return {name: stats.as_dict() for name, stats in self._stats.items()}
