"""Injected failures and latency, and the record of what was asked of the emulator."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import AblyError, code_for

__all__ = ["Fault", "Faults", "LoggedRequest"]


@dataclass(frozen=True)
class Fault:
    """One injected failure: the Ably-shaped error a request gets instead of its answer."""

    status: int
    code: int
    message: str
    retry_after: float | None = None
    path: str | None = None  # only requests whose path starts with this
    applied: bool = False  # the request still takes effect; only its answer is lost

    def matches(self, path: str) -> bool:
        return self.path is None or path.startswith(self.path)

    def error(self) -> AblyError:
        headers = {}
        if self.retry_after is not None:
            seconds = self.retry_after
            headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        return AblyError(self.code, self.message, self.status, headers=headers)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    route: str  # the route template, e.g. "/channels/{channel}/messages"; "" if none matched
    status: int
    fault: bool  # answered with an injected failure


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
        retry_after: float | None = None,
        code: int | None = None,
        message: str | None = None,
        path: str | None = None,
        applied: bool = False,
    ) -> None:
        if times < 0:
            raise ValueError(f"times must be 0 or more, got {times}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be 0 or more seconds, got {retry_after}")
        fault = Fault(
            status=status,
            code=code if code is not None else code_for(status),
            message=message or f"injected failure (HTTP {status}) by the Ably emulator",
            retry_after=retry_after,
            path=path,
            applied=applied,
        )
        self.pending.extend([fault] * times)

    def take(self, path: str) -> Fault | None:
        for index, fault in enumerate(self.pending):
            if fault.matches(path):
                return self.pending.pop(index)
        return None

    def clear(self) -> None:
        self.pending.clear()
        self.latency = 0.0
