"""Shadow measurements: how each vendor behaved on the staging traffic it was sent.

A staging process running with shadow adapters (``REALTIME_BRIDGE_SHADOW_URLS``)
has, in ``bridge.stats()``, every adapter's calls, failures and latencies. The
cost report runs elsewhere (an operator's shell, CI), so the numbers travel as
a small JSON file: the staging process writes it with ``write_shadow_stats``
(or keeps it fresh with ``record_shadow_stats`` as a background task), and
``realtime-bridge costs --shadow-stats FILE`` reads it. The file holds the
adapters' redacted labels and counters only, never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigurationError

__all__ = [
    "SHADOW_SCHEMA",
    "ShadowMeasurement",
    "load_shadow_stats",
    "record_shadow_stats",
    "shadow_measurements",
    "write_shadow_stats",
]

SHADOW_SCHEMA = "realtime_bridge.shadow_stats/1"


class _HasStats(Protocol):
    def stats(self) -> dict[str, dict[str, object]]: ...


@dataclass(frozen=True)
class ShadowMeasurement:
    """One adapter's record: its vendor, role, latency, errors and refused events."""

    label: str
    vendor: str
    role: str
    calls: int
    failures: int
    events: int
    #: Events the adapter did not take (refused, or failed after retries): the events
    #: the primary path published minus this adapter's published, duplicates and drops.
    rejected: int | None
    #: Shadow copies dropped because the adapter's lane was full (it fell behind).
    dropped: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    last_error: str | None

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None


def _snapshot(source: _HasStats | Mapping[str, Mapping[str, object]]) -> dict[str, Any]:
    stats = source.stats() if hasattr(source, "stats") else source
    return {
        "schema": SHADOW_SCHEMA,
        "written_at": datetime.now(UTC).isoformat(),
        "adapters": {label: dict(values) for label, values in stats.items()},
    }


def write_shadow_stats(
    source: _HasStats | Mapping[str, Mapping[str, object]], path: str | Path
) -> None:
    """Write ``bridge.stats()`` (or a snapshot of it) to ``path``, atomically.

    Written to a temporary file and renamed, so a report reading it never sees
    half a file.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(_snapshot(source), indent=2), "utf-8")
    temporary.replace(target)


async def record_shadow_stats(bridge: _HasStats, path: str | Path, *, every: float = 60.0) -> None:
    """Keep ``path`` fresh: write the stats every ``every`` seconds, and once when cancelled.

    Run it next to the relay in staging: ``asyncio.create_task(record_shadow_stats(...))``.
    """
    if every <= 0:
        raise ValueError(f"every must be a positive number of seconds, got {every}")
    try:
        while True:
            await asyncio.to_thread(write_shadow_stats, bridge, path)
            await asyncio.sleep(every)
    finally:
        with contextlib.suppress(OSError):
            write_shadow_stats(bridge, path)


def load_shadow_stats(path: str | Path) -> list[ShadowMeasurement]:
    """The measurements in a file ``write_shadow_stats`` wrote."""
    where = f"shadow stats file {str(path)!r}"
    try:
        document = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{where} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {where}: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != SHADOW_SCHEMA:
        raise ConfigurationError(
            f"{where}: not written by write_shadow_stats (expected schema {SHADOW_SCHEMA!r})"
        )
    adapters = document.get("adapters")
    if not isinstance(adapters, dict):
        raise ConfigurationError(f"{where}: 'adapters' must be an object of label -> stats")
    return shadow_measurements(adapters, where=where)


def _vendor(label: str) -> str:
    scheme = label.split("://", 1)[0].lower() if "://" in label else label.lower()
    return "redis" if scheme in {"redis", "rediss"} else scheme


def _int(stats: Mapping[str, object], key: str, where: str) -> int:
    value = stats.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{where}: {key} must be a whole number 0 or more, got {value!r}")
    return value


def _ms(stats: Mapping[str, object], key: str, where: str) -> float | None:
    value = stats.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(f"{where}: {key} must be a number or null, got {value!r}")
    return float(value)


def shadow_measurements(
    stats: Mapping[str, Mapping[str, object]], *, where: str = "bridge.stats()"
) -> list[ShadowMeasurement]:
    """Measurements from ``bridge.stats()``: every adapter, with its refused events."""
    for label, values in stats.items():
        if not isinstance(values, Mapping):
            raise ConfigurationError(f"{where}: the stats of {label!r} must be an object")
    published = sum(
        _int(s, "events", where) + _int(s, "duplicates", where)
        for s in stats.values()
        if s.get("role") in {"primary", "fallback"}
    )
    found = []
    for label, s in stats.items():
        here = f"{where}, adapter {label!r}"
        role = str(s.get("role", "unknown"))
        events, duplicates = _int(s, "events", here), _int(s, "duplicates", here)
        dropped = _int(s, "shadow_dropped", here)
        rejected = max(0, published - events - duplicates - dropped) if role == "shadow" else None
        error = s.get("last_error")
        found.append(
            ShadowMeasurement(
                label=label,
                vendor=_vendor(label),
                role=role,
                calls=_int(s, "calls", here),
                failures=_int(s, "failures", here),
                events=events,
                rejected=rejected,
                dropped=dropped,
                latency_p50_ms=_ms(s, "latency_p50_ms", here),
                latency_p99_ms=_ms(s, "latency_p99_ms", here),
                last_error=None if error is None else str(error),
            )
        )
    return found
