"""Ably's error shape: ``{"error": {code, message, statusCode, href}}``.

The HTTP status comes from the code as Ably's error reference gives it
(``ably/ably-common`` ``errors/codes/*.md``): the first three digits of the
code, except where Ably reports another status (40009 is sent with 413).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["AblyError", "status_for"]

HELP_URL = "https://help.ably.io/error/{code}"

#: Codes whose HTTP status is not their first three digits, per Ably's error pages.
_STATUS = {40009: 413, 90010: 400}

#: The error code Ably sends with a bare HTTP status (used by injected faults).
DEFAULT_CODE = {429: 42910, 500: 50000, 503: 50003, 504: 50003}


def status_for(code: int) -> int:
    """The HTTP status Ably sends with ``code``."""
    if code in _STATUS:
        return _STATUS[code]
    status = code // 100
    return status if 400 <= status <= 599 else 500


def code_for(status: int) -> int:
    """The Ably code for a bare HTTP status: 42910 for 429, 50003 for 503, else status x 100."""
    return DEFAULT_CODE.get(status, status * 100)


class AblyError(Exception):
    """An error the emulator answers with, shaped as Ably shapes it."""

    def __init__(
        self,
        code: int,
        message: str,
        status: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else status_for(code)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def info(self) -> dict[str, Any]:
        """Ably's ErrorInfo: what a batch response lists per failed channel."""
        return {
            "message": self.message,
            "code": self.code,
            "statusCode": self.status,
            "href": HELP_URL.format(code=self.code),
        }

    def body(self) -> dict[str, Any]:
        return {"error": self.info(), **self.extra}

    def response_headers(self) -> dict[str, str]:
        """The body's code and message mirrored in headers, as Ably does, plus any extra."""
        message = " ".join(self.message.split()).encode("ascii", "replace").decode("ascii")
        return {
            "X-Ably-ErrorCode": str(self.code),
            "X-Ably-ErrorMessage": message[:500],
            **self.headers,
        }
