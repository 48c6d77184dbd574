"""Injected failures and latency, and the record of what was asked of the emulator."""

from __future__ import annotations

from dataclasses import dataclass

from .._faults import FaultQueue, LoggedRequest, check_fail_next, retry_after_header
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
        headers = retry_after_header(self.retry_after)
        return AblyError(self.code, self.message, self.status, headers=headers)


class Faults(FaultQueue[Fault]):
    """Pending failures (``fail_next``), taken in order by the requests they match."""

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
        check_fail_next(times, status, retry_after)
        fault = Fault(
            status=status,
            code=code if code is not None else code_for(status),
            message=message or f"injected failure (HTTP {status}) by the Ably emulator",
            retry_after=retry_after,
            path=path,
            applied=applied,
        )
        self.add(fault, times)
