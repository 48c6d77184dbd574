"""What one read of stored messages becomes: a history page, or the members present.

A history read goes through a channel's kept events oldest first (see
``_nats_reader``) and keeps only what the page needs: the newest ``limit``,
the ``limit`` before a cursor, or the ``limit`` after it (stopping there).
Events are matched to a cursor by their ``Nats-Msg-Id`` header, so no body is
decoded until it is on the page. A presence read gets the newest entry of
each member key, and keeps the members whose stamp plus ttl is later than the
server's clock.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from datetime import datetime, timedelta

from ._nats_reader import Reading, Stored
from ._nats_subjects import decode_token
from .base import Member

__all__ = ["MSG_ID", "Outcome", "live_member", "read_first", "read_page"]

log = logging.getLogger("realtime_bridge.nats")

MSG_ID = "Nats-Msg-Id"
_DELETED = frozenset({"DEL", "PURGE"})  # KV-Operation of a key that was removed

#: A page of stored events and whether more remain; ``None`` when the cursor is not kept.
Outcome = tuple[list[Stored], bool] | None


async def read_page(
    found: Reading, limit: int, *, before: str | None = None, after: str | None = None
) -> Outcome:
    """The page ``history`` asked for, out of one pass over the channel's kept events."""
    if after is not None:
        return await _after(found, after, limit)
    if before is not None:
        return await _before(found, before, limit)
    return await _latest(found, limit)


async def _latest(found: Reading, limit: int) -> Outcome:
    page: deque[Stored] = deque(maxlen=limit)
    seen = 0
    while (stored := await found.next()) is not None:
        page.append(stored)
        seen += 1
    return list(page), seen > limit


async def _before(found: Reading, cursor: str, limit: int) -> Outcome:
    page: deque[Stored] = deque(maxlen=limit)
    seen = 0
    while (stored := await found.next()) is not None:
        if stored.headers.get(MSG_ID) == cursor:
            return list(page), seen > limit
        page.append(stored)
        seen += 1
    return None


async def _after(found: Reading, cursor: str, limit: int) -> Outcome:
    while (stored := await found.next()) is not None:
        if stored.headers.get(MSG_ID) == cursor:
            break
    else:
        return None
    page: list[Stored] = []
    while len(page) <= limit and (stored := await found.next()) is not None:
        page.append(stored)
    return page[:limit], len(page) > limit


async def read_first(found: Reading, limit: int) -> tuple[list[Stored], bool]:
    """The first ``limit`` messages of a reading (which starts where it was asked to)."""
    page: list[Stored] = []
    while len(page) <= limit and (stored := await found.next()) is not None:
        page.append(stored)
    return page[:limit], len(page) > limit


def live_member(stored: Stored, now: datetime) -> Member | None:
    """The member a presence entry holds, unless it was removed or its ttl ran out by ``now``."""
    if stored.headers.get("KV-Operation") in _DELETED:
        return None
    try:
        value = json.loads(stored.data)
        expires = stored.time + timedelta(milliseconds=int(value["ttl_ms"]))
        member_id = decode_token(stored.subject.rsplit(".", 1)[1])
        info = value["info"]
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a presence entry realtime_bridge did not write: %s", stored.subject)
        return None
    if expires <= now:
        return None
    return Member(member_id, info if isinstance(info, dict) else {})
