"""What the vendor emulators' fault injection shares: the queue of pending failures, the
checks on ``fail_next``'s arguments, and the record of requests.

Each emulator's ``Fault`` extends ``PathFault`` with the error body its vendor
would send; the queue does not care what a fault says, only which requests it
matches.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "REQUEST_LOG_SIZE",
    "FaultQueue",
    "FaultsAndRequests",
    "LoggedRequest",
    "PathFault",
    "check_fail_next",
    "retry_after_header",
]

#: Answered requests an emulator keeps in ``request_log`` (the latest ones).
REQUEST_LOG_SIZE = 10_000


class _Fault(Protocol):
    def matches(self, path: str) -> bool: ...


F = TypeVar("F", bound=_Fault)


@dataclass(frozen=True)
class LoggedRequest:
    """One request an emulator answered, for tests to inspect."""

    method: str
    path: str
    route: str  # the route template, e.g. "/channels/{channel}/messages"; "" if none matched
    status: int
    fault: bool  # answered with an injected failure


def check_fail_next(times: int, status: int, retry_after: float | None) -> None:
    """Refuse ``fail_next`` arguments no vendor could answer with."""
    if times < 0:
        raise ValueError(f"times must be 0 or more, got {times}")
    if not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
    if retry_after is not None and retry_after < 0:
        raise ValueError(f"retry_after must be 0 or more seconds, got {retry_after}")


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """``Retry-After`` as vendors send it: whole seconds without a decimal point."""
    if seconds is None:
        return {}
    return {"Retry-After": str(int(seconds)) if seconds == int(seconds) else str(seconds)}


@dataclass(frozen=True)
class PathFault:
    """One injected failure: its status and message, for the requests it matches."""

    status: int
    message: str
    retry_after: float | None = None
    path: str | None = None  # only requests whose path starts with this
    applied: bool = False  # the request still takes effect; only its answer is lost

    def matches(self, path: str) -> bool:
        return self.path is None or path.startswith(self.path)

    def headers(self) -> dict[str, str]:
        return retry_after_header(self.retry_after)


@dataclass
class FaultQueue(Generic[F]):
    """Pending failures, taken in order by the requests they match, and added latency."""

    latency: float = 0.0
    pending: list[F] = field(default_factory=list)

    def add(self, fault: F, times: int) -> None:
        self.pending.extend([fault] * times)

    def take(self, path: str) -> F | None:
        for index, fault in enumerate(self.pending):
            if fault.matches(path):
                return self.pending.pop(index)
        return None

    def clear(self) -> None:
        self.pending.clear()
        self.latency = 0.0


class FaultsAndRequests:
    """Mixin for an emulator: its pending faults and latency, and the requests it answered.

    ``requests`` counts them by ``"METHOD route"``; ``request_log`` keeps the
    latest ``REQUEST_LOG_SIZE`` for tests to inspect.
    """

    faults: FaultQueue[Any]

    def _init_records(self, faults: FaultQueue[Any]) -> None:
        self.faults = faults
        self.requests: Counter[str] = Counter()
        self.request_log: deque[LoggedRequest] = deque(maxlen=REQUEST_LOG_SIZE)

    @property
    def latency(self) -> float:
        """Seconds added before each API request is answered."""
        return self.faults.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"latency must be 0 or more seconds, got {seconds}")
        self.faults.latency = seconds

    def clear_faults(self) -> None:
        """Drop pending failures and the latency."""
        self.faults.clear()

    def record_request(self, entry: LoggedRequest) -> None:
        """Count an answered request by ``"METHOD route"`` and keep it in ``request_log``."""
        self.request_log.append(entry)
        self.requests[f"{entry.method} {entry.route or entry.path}"] += 1

    def forget_requests(self) -> None:
        self.request_log.clear()
        self.requests.clear()
