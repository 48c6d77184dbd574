"""What the gateway sends: a channel's events with their stream positions, one at a time or a page.

Whatever feeds the gateway (Redis streams, or the memory adapter in one
process) hands it ``Entry`` objects, and readers answer with ``Page``s. An
entry carries the encoded envelope as bytes, so the gateway never parses or
re-serialises an event on its way to clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .cursor import StreamId, parse_stream_id

__all__ = ["Entry", "Page"]


class Entry:
    """One event as a channel's stream keeps it: the stream entry id and the encoded envelope.

    A live event is turned into an ``Entry`` once per gateway process and shared
    by every connection that sends it. Each wire form is rendered the first time
    a connection needs it and then reused, so the event is serialised once.
    """

    def __init__(self, channel: str, entry_id: str, payload: bytes) -> None:
        self.channel = channel
        self.id = entry_id
        self.key: StreamId = parse_stream_id(entry_id)
        self.payload = payload

    @cached_property
    def sse_data(self) -> bytes:
        """The SSE ``data:`` line(s) carrying the envelope (compact JSON: one line)."""
        lines = self.payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return b"".join(b"data: " + line + b"\n" for line in lines)

    @cached_property
    def ws_text(self) -> str:
        """The WebSocket ``event`` message."""
        return (
            f'{{"type":"event","channel":"{self.channel}","id":"{self.id}",'
            f'"event":{self.payload.decode()}}}'
        )

    @cached_property
    def page_json(self) -> bytes:
        """The entry in a catch-up page: ``{"id": ..., "event": ...}``."""
        return b'{"id":"%s","event":%s}' % (self.id.encode(), self.payload)

    def __repr__(self) -> str:
        return f"<Entry {self.channel} {self.id}>"


@dataclass(frozen=True, slots=True)
class Page:
    """Entries of one channel, oldest first, and where the reader is after them."""

    entries: tuple[Entry, ...]
    #: The cursor to read on from: the last entry's id, else the one asked from.
    position: str
    #: The cursor asked from was older than the kept history; ``position`` is the newest now.
    gap: bool = False
    has_more: bool = False
