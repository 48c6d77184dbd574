"""Liveblocks' error shape: ``{"error": CODE, "message", "suggestion", "docs"}`` and a status.

The codes and their statuses are those Liveblocks' REST reference documents
(``MISSING_SECRET_KEY`` and ``WRONG_KEY_USED`` 401, ``INVALID_SECRET_KEY`` 403,
``ROOM_NOT_FOUND`` 404, ``ROOM_ALREADY_EXISTS`` 409, ``UNPROCESSABLE_ENTITY``
422). Where the reference names none (a broadcast over the size limit, an
unknown route, injected faults), the emulator's own code says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["LiveblocksApiError", "invalid", "room_not_found"]

DASHBOARD_KEYS = "https://liveblocks.io/dashboard/apikeys"


class LiveblocksApiError(Exception):
    """An error the emulator answers with, shaped as Liveblocks shapes it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        suggestion: str = "",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.suggestion = suggestion
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "message": self.message,
            "suggestion": self.suggestion,
            "docs": "",
        }


def room_not_found(room_id: str) -> LiveblocksApiError:
    return LiveblocksApiError(
        404,
        "ROOM_NOT_FOUND",
        f"Room not found: {room_id[:140]!r}.",
        "Please use a valid room ID, room IDs are available in the dashboard: "
        "https://liveblocks.io/dashboard/rooms.",
    )


def invalid(message: str) -> LiveblocksApiError:
    """A request Liveblocks would refuse as malformed (422, naming the field)."""
    return LiveblocksApiError(
        422, "UNPROCESSABLE_ENTITY", message, "Please ensure the data follows the correct format."
    )
