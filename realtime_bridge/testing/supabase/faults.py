"""Injected failures and latency for the REST endpoints, and the record of requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "Faults", "LoggedRequest"]


@dataclass(frozen=True)
class Fault:
    """One injected failure: the status and ``{"message": ...}`` a request gets instead."""

    status: int
    message: str
    retry_after: float | None = None
    path: str | None = None  # only requests whose path starts with this
    applied: bool = False  # the request still takes effect; only its answer is lost

    def matches(self, path: str) -> bool:
        return self.path is None or path.startswith(self.path)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        seconds = self.retry_after
        return {"Retry-After": str(int(seconds)) if seconds == int(seconds) else str(seconds)}

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    route: str  # e.g. "/api/broadcast/{topic}/events/{event}"; "" if none matched
    status: int
    fault: bool  # answered with an injected failure


_MESSAGES = {
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Faults:
    """Pending failures, taken in order by the requests they match, and added latency."""

    latency: float = 0.0
    pending: list[Fault] = field(default_factory=list)

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
        if times < 0:
            raise ValueError(f"times must be 0 or more, got {times}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be 0 or more seconds, got {retry_after}")
        text = message or _MESSAGES.get(status) or f"injected failure (HTTP {status})"
        fault = Fault(status, text, retry_after, path, applied)
        self.pending.extend([fault] * times)

    def take(self, path: str) -> Fault | None:
        for index, fault in enumerate(self.pending):
            if fault.matches(path):
                return self.pending.pop(index)
        return None

    def clear(self) -> None:
        self.pending.clear()
        self.latency = 0.0
