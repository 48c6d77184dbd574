"""Where a client is in a channel: a Redis stream entry id, and the SSE ``id:`` built from them.

The gateway resumes clients from **stream entry ids** (``1718000000000-0``), not
from event ids. An entry id is the cursor Redis itself ranges over
(``XRANGE key (id +``), so a resume costs one range read. It is ordered, so
the gateway drops a duplicate by comparing two numbers. It is assigned by the
one Redis every gateway shares, so it means the same thing on every process
behind the load balancer. And it stays a cursor for as long as the entry is
kept. An event id only works as a cursor through its dedupe key, which
expires after ``dedupe_ttl``. Clients still dedupe by the event id, which is
in every envelope they receive.

An SSE connection can carry several channels but has one ``Last-Event-ID``,
so its ``id:`` holds one position per channel: ``channel:entry-id`` pairs
joined by ``|``. Neither ``:`` nor ``|`` can appear in a portable channel name.
Clients treat it as opaque.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..events import validate_channel

__all__ = ["StreamId", "format_cursor", "parse_cursor", "parse_stream_id"]

#: An entry id as numbers: (milliseconds, sequence), compared as a tuple.
StreamId = tuple[int, int]

_ENTRY_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
#: Longest ``Last-Event-ID`` accepted: about 100 channels' worth.
MAX_CURSOR_LENGTH = 32_768


def parse_stream_id(text: str) -> StreamId:
    """``"1718000000000-3"`` as ``(1718000000000, 3)``; ``ValueError`` if it is not one."""
    match = _ENTRY_ID.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a stream entry id (such as 1718000000000-0)")
    return int(match[1]), int(match[2])


def format_cursor(positions: Mapping[str, str], channels: Iterable[str]) -> str:
    """The SSE ``id:`` for ``channels`` at ``positions`` (channels without one are left out)."""
    return "|".join(
        f"{channel}:{positions[channel]}" for channel in channels if channel in positions
    )


def parse_cursor(text: str) -> dict[str, str]:
    """A ``Last-Event-ID`` back into positions; ``ValueError`` if it is not one of ours."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise ValueError(f"Last-Event-ID is {len(text)} characters, over {MAX_CURSOR_LENGTH}")
    positions: dict[str, str] = {}
    for item in filter(None, text.split("|")):
        channel, colon, entry = item.rpartition(":")
        if not colon:
            raise ValueError(f"Last-Event-ID item {item[:60]!r} is not channel:entry-id")
        parse_stream_id(entry)
        positions[validate_channel(channel)] = entry
    return positions
