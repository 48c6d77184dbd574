"""Injected failures and latency, and the record of what was asked of the emulator."""

from __future__ import annotations

from dataclasses import dataclass

from .._faults import FaultQueue, LoggedRequest, PathFault, check_fail_next
from .errors import AblyError, code_for

__all__ = ["Fault", "Faults", "LoggedRequest"]


@dataclass(frozen=True, kw_only=True)
class Fault(PathFault):
    """One injected failure: the Ably-shaped error a request gets instead of its answer."""

    code: int

    def error(self) -> AblyError:
        return AblyError(self.code, self.message, self.status, headers=self.headers())


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
