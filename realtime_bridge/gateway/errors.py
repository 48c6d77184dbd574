"""How the gateway reports a failure: one mapping from the library's errors to the wire.

Every refusal the gateway sends comes from ``problem_of``: an HTTP status with a
JSON body ``{"error": <reason>, "message": <text>}``, or, on a WebSocket that
is already open, the same JSON as an ``error`` message followed by a close
code. Close codes in the 4000s mirror the HTTP status (``4000 + status``), so
a client handles "401 over HTTP" and "4401 over WebSocket" the same way:

- 400 / 4400: a bad request (a channel name, a cursor, a message);
- 401 / 4401: the token is missing, malformed, forged or expired: get a new one;
- 403 / 4403: the token is good but does not grant this channel (or presence);
- 503 / 1013 (try again later): Redis cannot be reached;
- 4408: a slow consumer, cut off after a ``reset`` (it could not keep up);
- 1012 (service restart): the gateway is shutting down; reconnect, to any process.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _serving as serving
from ..errors import ConfigurationError, InvalidEvent, VendorUnavailable
from .tokens import TokenRejected

__all__ = [
    "CLOSE_RESTART",
    "CLOSE_SLOW",
    "CLOSE_UNAVAILABLE",
    "Problem",
    "missing_extra",
    "problem_of",
]

#: The gateway is going away; the client should reconnect (to another process).
CLOSE_RESTART = 1012
#: Redis is unreachable: try again later.
CLOSE_UNAVAILABLE = 1013
#: The client fell behind its buffer: it was sent ``reset`` and cut off.
CLOSE_SLOW = 4408

_EXTRA_MODULES = {"starlette", "uvicorn", "redis"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One refusal: the HTTP status, a short reason code, and a message for people."""

    status: int
    reason: str
    message: str

    @property
    def close_code(self) -> int:
        """The WebSocket close code for the same refusal."""
        return CLOSE_UNAVAILABLE if self.status == 503 else 4000 + self.status

    def json(self) -> dict[str, object]:
        return {"error": self.reason, "message": self.message}


def problem_of(exc: Exception) -> Problem:
    """The refusal for an error the gateway expects; anything else is a bug and re-raised."""
    if isinstance(exc, TokenRejected):
        return Problem(exc.status, exc.reason, str(exc))
    if isinstance(exc, VendorUnavailable):
        return Problem(503, "redis_unavailable", "Redis cannot be reached; try again later")
    if isinstance(exc, InvalidEvent | ValueError):
        return Problem(400, "bad_request", str(exc))
    raise exc


def missing_extra(exc: ModuleNotFoundError) -> ConfigurationError:
    """The one-line error for a missing ``gateway`` extra (or re-raise any other import bug)."""
    return serving.missing_extra(exc, what="the gateway", extra="gateway", modules=_EXTRA_MODULES)
