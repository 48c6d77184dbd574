"""Presence for WebSocket clients, kept through the adapter's own presence keys.

``bridge.presence()`` and ``bridge.occupancy()`` read what the gateway writes,
because the gateway enters and leaves members through the adapter's own
``enter_presence`` and ``leave_presence``. A member entered here expires
``ttl`` seconds after its last refresh, by the Redis server's clock. One task
per process re-enters every local member every ``ttl / 3`` seconds, so a
crashed gateway's members leave by themselves within ``ttl``, and a live one's
stay.

A user with two tabs on one process is one member, held twice. It leaves
when the last of its connections does. The refcount is per process: a user
connected through two gateways disappears when either disconnects, until the
other's next refresh puts it back (at most ``ttl / 3`` later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Protocol

from ..adapters.base import Member
from ..errors import RealtimeBridgeError

__all__ = ["PresenceKeeper", "PresenceStore"]

log = logging.getLogger("realtime_bridge.gateway")


class PresenceStore(Protocol):
    """Where members are kept: the Redis adapter's keys, or the memory adapter's dict."""

    async def enter_presence(self, channel: str, member: Member, *, ttl: float = ...) -> None: ...

    async def leave_presence(self, channel: str, member_id: str) -> None: ...


class PresenceKeeper:
    """The members this process's connections hold, per channel."""

    def __init__(self, adapter: PresenceStore, *, ttl: float) -> None:
        self._adapter = adapter
        self._ttl = ttl
        self._held: Counter[tuple[str, str]] = Counter()
        self._members: dict[tuple[str, str], Member] = {}
        # Presence writes go out one at a time, so a leave and a re-enter of the same
        # member cannot overtake each other on different pooled connections.
        self._lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None

    @property
    def members(self) -> int:
        """Distinct (channel, member) pairs held by this process."""
        return len(self._held)

    async def enter(self, channel: str, member: Member) -> None:
        """Hold ``member`` on ``channel`` (entering it in Redis if this process did not yet)."""
        key = (channel, member.id)
        self._held[key] += 1
        self._members[key] = member
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh())
        try:
            async with self._lock:
                await self._adapter.enter_presence(channel, member, ttl=self._ttl)
        except BaseException:
            self._release(key)  # never entered: nothing to remove from Redis
            raise

    async def leave(self, channel: str, member_id: str) -> None:
        """Release one hold; the last one makes the member leave now, not at expiry."""
        if self._release((channel, member_id)):
            async with self._lock:
                await self._adapter.leave_presence(channel, member_id)

    def _release(self, key: tuple[str, str]) -> bool:
        """Drop one hold of ``key``; True if it was the last."""
        if self._held[key] <= 0:
            return False
        self._held[key] -= 1
        if self._held[key] > 0:
            return False
        del self._held[key]
        del self._members[key]
        return True

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            for (channel, _), member in list(self._members.items()):
                try:
                    async with self._lock:
                        await self._adapter.enter_presence(channel, member, ttl=self._ttl)
                except RealtimeBridgeError as exc:
                    log.warning("gateway: could not refresh presence on %s: %s", channel, exc)

    async def aclose(self) -> None:
        """Stop refreshing and make every member held here leave (a graceful shutdown)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        for channel, member_id in list(self._members):
            with contextlib.suppress(RealtimeBridgeError):
                await self._adapter.leave_presence(channel, member_id)
        self._held.clear()
        self._members.clear()
