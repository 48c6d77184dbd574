"""Vendor webhooks, normalised: one ``WebhookEvent`` shape whichever vendor sent it.

Every vendor reports the same few things about its channels (a channel got
its first subscriber or lost its last, a presence member came or went, a
browser sent a client event), each in its own JSON. Adapters verify the
vendor's signature first, in constant time, then turn each entry into a
``WebhookEvent`` so an application handles webhooks once, not once per vendor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["WebhookEvent", "WebhookKind", "header", "strict_json"]


class WebhookKind(StrEnum):
    """What happened, in the library's words."""

    CHANNEL_OCCUPIED = "channel_occupied"
    CHANNEL_VACATED = "channel_vacated"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    CLIENT_EVENT = "client_event"
    MESSAGE = "message"
    #: Something the vendor reports that has no common meaning (e.g. Pusher's
    #: ``cache_miss``); ``name`` holds the vendor's own word for it.
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One thing a vendor reported about a channel, after its signature was checked."""

    kind: WebhookKind
    channel: str
    #: When the vendor says it happened (UTC).
    at: datetime
    #: The adapter scheme that verified it: ``pusher``, ``ably``, ...
    vendor: str
    #: The vendor's own name for the event (``channel_occupied``, ``channel.closed``, ...).
    name: str
    user_id: str | None = None
    #: For client events and messages: the event name the client used.
    event: str | None = None
    #: For client events and messages: the payload, decoded from JSON where it was JSON.
    data: Any = None
    socket_id: str | None = None
    #: The vendor's entry exactly as it arrived, for anything not normalised.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` whatever the case of the keys in ``headers``."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def strict_json(raw: str | bytes) -> Any:
    """``json.loads`` without Python's NaN and Infinity extensions: a signed body is still
    only trusted as far as it is JSON."""

    def reject(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(raw, parse_constant=reject)
