"""Injected failures and latency for the REST API, and the record of requests."""

from __future__ import annotations

from dataclasses import dataclass

from .._faults import FaultQueue, LoggedRequest, PathFault, check_fail_next
from .errors import LiveblocksApiError

__all__ = ["Fault", "Faults", "LoggedRequest"]

#: The emulator's own codes for a bare status (Liveblocks documents none for these).
_CODES = {
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


@dataclass(frozen=True, kw_only=True)
class Fault(PathFault):
    """One injected failure: the Liveblocks-shaped error a request gets instead of its answer."""

    code: str

    def error(self) -> LiveblocksApiError:
        return LiveblocksApiError(self.status, self.code, self.message, headers=self.headers())


class Faults(FaultQueue[Fault]):
    """Pending failures (``fail_next``), taken in order by the requests they match."""

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        path: str | None = None,
        applied: bool = False,
    ) -> None:
        check_fail_next(times, status, retry_after)
        fault = Fault(
            status=status,
            code=code or _CODES.get(status, f"HTTP_{status}"),
            message=message or f"injected failure (HTTP {status}) by the Liveblocks emulator",
            retry_after=retry_after,
            path=path,
            applied=applied,
        )
        self.add(fault, times)
