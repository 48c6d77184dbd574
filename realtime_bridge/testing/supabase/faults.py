"""Injected failures and latency for the REST endpoints, and the record of requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._faults import FaultQueue, LoggedRequest, PathFault, check_fail_next

__all__ = ["Fault", "Faults", "LoggedRequest"]


@dataclass(frozen=True)
class Fault(PathFault):
    """One injected failure: the status and ``{"message": ...}`` a request gets instead."""

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


_MESSAGES = {
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Faults(FaultQueue[Fault]):
    """Pending failures (``fail_next``), taken in order by the requests they match."""

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        *,
        message: str | None = None,
        retry_after: float | None = None,
        path: str | None = None,
        applied: bool = False,
    ) -> None:
        check_fail_next(times, status, retry_after)
        text = message or _MESSAGES.get(status) or f"injected failure (HTTP {status})"
        fault = Fault(status, text, retry_after, path, applied)
        self.add(fault, times)
