"""One client connection's channels: joined live first, caught up from history, without gaps.

Joining a channel at a cursor (the last stream entry id the client has):

1. **Subscribe first.** The hub confirms that this process's Redis
   subscription is live, and the connection's inbox starts collecting the
   channel's live events.
2. **Then read the stream** after the cursor, page by page, and send it. An
   event published between steps 1 and 2 is both in the stream and in the
   inbox. An event published before step 1 is in the stream. Nothing falls
   in between.
3. **Then drain the inbox**, dropping every live event whose stream id is not
   after the position already sent: the same event must not arrive twice.

Without a cursor, the join starts at the channel's newest entry (step 2 only
finds where that is). With a cursor older than what is kept, the session
sends ``reset`` (re-fetch from the API) and carries on live from the newest
entry. The same merge runs on every reconnect, to any gateway process,
because positions are the Redis stream's and not a process's.

A session knows nothing of SSE or WebSocket. It yields entries, resets and
the inbox's signals, and the transport renders them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from ..errors import RealtimeBridgeError
from .cursor import StreamId, parse_stream_id
from .entries import Entry
from .inbox import Closed, Inbox, Overflowed
from .tokens import Grant

if TYPE_CHECKING:
    from .service import Gateway

__all__ = ["Emit", "Reset", "Session"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Reset:
    """The client missed events of ``channel``: re-fetch its state, then go on from ``position``.

    ``reason`` is ``"gap"`` (the cursor was older than the kept history) or
    ``"slow_consumer"`` (the client fell behind and is being disconnected).
    """

    channel: str
    reason: str
    position: str


Emit = Callable[[Sequence[Entry | Reset]], Awaitable[None]]


class Session(Generic[R]):
    """A connection's grant, its channels and its position in each, and its inbox."""

    def __init__(self, gateway: Gateway, grant: Grant, *, transport: str) -> None:
        self.gateway = gateway
        self.grant = grant
        self.transport = transport
        self.inbox: Inbox[R] = Inbox(
            gateway.settings.buffer, on_overflow=lambda: gateway.count("slow_consumers")
        )
        #: The stream entry id up to which each joined channel has been sent.
        self.positions: dict[str, str] = {}
        self._keys: dict[str, StreamId] = {}
        self._listening: set[str] = set()
        self._present: dict[str, str] = {}  # channel -> member id entered

    @property
    def channels(self) -> list[str]:
        """The joined channels, in the order they were joined."""
        return list(self.positions)

    @property
    def present(self) -> frozenset[str]:
        """The channels this connection entered presence on."""
        return frozenset(self._present)

    def expires_in(self) -> float:
        """Seconds until the token expires (the connection ends then)."""
        return self.grant.expires_at - time.time()

    async def join(self, channel: str, cursor: str | None, emit: Emit) -> None:
        """Subscribe to ``channel``, then send what the client missed after ``cursor``."""
        await self.listen(channel)
        await self.catch_up(channel, cursor, emit)

    async def listen(self, channel: str) -> None:
        """Step 1: this connection's inbox receives ``channel``'s live events from now on."""
        if channel not in self._listening:
            await self.gateway.hub.subscribe(channel, self.inbox)
            self._listening.add(channel)

    async def catch_up(self, channel: str, cursor: str | None, emit: Emit) -> None:
        """Step 2: send the stream after ``cursor`` (or a ``reset``), page by page."""
        reader, page_size = self.gateway.reader, self.gateway.settings.replay_page
        while True:
            page = await reader.after(channel, cursor, page_size)
            if page.gap:
                self._move(channel, page.position)
                self.gateway.count("resets_gap")
                await emit([Reset(channel, "gap", page.position)])
                return
            if page.entries:
                for entry in page.entries:
                    self._move(channel, entry.id)
                await emit(page.entries)
            self._move(channel, page.position)
            if not page.has_more:
                return
            cursor = page.position

    async def next(self, within: float) -> Entry | Closed | Overflowed | R | None:
        """Step 3: the next live event not sent yet, a request, a signal, or None (idle)."""
        while True:
            item = await self.inbox.get(within)
            if not isinstance(item, Entry):
                return item
            position = self._keys.get(item.channel)
            if position is not None and item.key > position:
                self.positions[item.channel] = item.id
                self._keys[item.channel] = item.key
                return item

    def resume_from(self, channel: str, position: str) -> None:
        """Record that the client already has ``channel`` up to ``position`` (its cursor)."""
        self._move(channel, position)

    def resets_for(self, overflow: Overflowed) -> list[Reset]:
        """What to tell a client cut off for falling behind: per channel, where to go on from."""
        resets = []
        for channel, position in self.positions.items():
            newest = overflow.newest.get(channel)
            if newest is not None and parse_stream_id(newest) > self._keys[channel]:
                position = newest
            self._move(channel, position)
            resets.append(Reset(channel, "slow_consumer", position))
        return resets

    async def enter(self, channel: str) -> None:
        """Enter presence on ``channel`` as the token's user (the grant was checked)."""
        user = self.grant.user
        if channel in self._present or user is None:
            return
        await self.gateway.presence.enter(channel, user)
        self._present[channel] = user.id

    async def leave(self, channel: str) -> None:
        """Stop receiving ``channel``, and leave its presence if entered."""
        if channel in self._listening:
            self.gateway.hub.unsubscribe(channel, self.inbox)
            self._listening.discard(channel)
        self.positions.pop(channel, None)
        self._keys.pop(channel, None)
        member_id = self._present.pop(channel, None)
        if member_id is not None:
            await self.gateway.presence.leave(channel, member_id)

    async def close(self) -> None:
        """Leave every channel (and presence), whatever state the connection ended in."""
        for channel in list(self._listening | set(self.positions) | set(self._present)):
            with contextlib.suppress(RealtimeBridgeError):  # Redis down: members expire
                await self.leave(channel)

    def _move(self, channel: str, position: str) -> None:
        key = parse_stream_id(position)
        if channel not in self._keys or key > self._keys[channel]:
            self.positions[channel] = position
            self._keys[channel] = key

    def __repr__(self) -> str:
        return f"<Session {self.transport} {sorted(self.positions)}>"
