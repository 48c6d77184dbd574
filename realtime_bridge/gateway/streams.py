"""Reading a channel's history from its Redis stream, for resuming clients and catch-up pages.

One Lua script (``lua/read.lua``) checks the cursor and reads after it in one
round trip, so no trim can slip in between the check and the read. The
script also decides when a cursor is too old: when an entry after it may
have been trimmed, or may have expired with the whole stream.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from ..adapters.redis import RedisKeys, _mapped_errors
from .cursor import parse_stream_id
from .entries import Entry, Page

__all__ = ["StreamReader"]


class StreamReader:
    """Reads channels' streams under one key prefix."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, history_ttl: int, label: str):
        self._prefix = prefix
        self._ttl_ms = history_ttl * 1000
        self._label = label
        script = resources.files(__package__).joinpath("lua", "read.lua").read_text("utf-8")
        self._read = client.register_script(script)

    async def after(self, channel: str, cursor: str | None, limit: int) -> Page:
        """Up to ``limit`` entries after ``cursor`` (with none: no entries, the newest position)."""
        if cursor is not None:
            parse_stream_id(cursor)
        return await self._page(channel, "after", cursor or "", limit)

    async def latest(self, channel: str, limit: int) -> Page:
        """The newest ``limit`` entries, oldest first."""
        return await self._page(channel, "latest", "", limit)

    async def _page(self, channel: str, mode: str, cursor: str, limit: int) -> Page:
        stream = RedisKeys(self._prefix, channel).stream
        with _mapped_errors(self._label):
            status, position, raw = await self._read(
                keys=[stream], args=[mode, cursor, limit + 1, self._ttl_ms]
            )
        if status == b"gap":
            return Page((), position.decode(), gap=True)
        entries = [_entry(channel, item) for item in raw]
        has_more = len(entries) > limit
        entries = entries[:limit]
        if mode == "latest":
            entries.reverse()
            return Page(tuple(entries), position.decode(), has_more=has_more)
        last = entries[-1].id if entries else position.decode()
        return Page(tuple(entries), last, has_more=has_more)


def _entry(channel: str, item: Any) -> Entry:
    entry_id, fields = item
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return Entry(channel, entry_id.decode(), values[b"e"])
