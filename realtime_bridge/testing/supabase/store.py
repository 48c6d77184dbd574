"""What the emulated Realtime server holds: joined channels, presence, accepted broadcasts.

A topic's public and private channels are apart, as on the server (its
PubSub topics are ``{tenant}:{topic}`` and ``{tenant}-private:{topic}``): a
public broadcast reaches only public joins of the topic, a private one only
private joins. Everything here is synchronous; the sockets' frames are queued
by ``Outbox.push`` and written by the app.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .policies import Extension

__all__ = ["Broadcast", "Dropped", "Member", "Outbox", "RateWindow", "Topics", "frame"]


class Outbox(Protocol):
    """One WebSocket connection, as the state sees it: frames go out in order."""

    @property
    def id(self) -> str: ...

    def push(self, message: dict[str, Any]) -> None: ...

    def close(self, code: int = 1000) -> None: ...


def frame(topic: str, event: str, payload: Any, ref: str | None = None) -> dict[str, Any]:
    """A message as Phoenix's V1 JSON serializer writes it: exactly these four keys."""
    return {"topic": topic, "event": event, "payload": payload, "ref": ref}


def new_ref() -> str:
    """A presence ``phx_ref``, random as Phoenix.Tracker makes them."""
    return base64.b64encode(os.urandom(8)).decode("ascii")


@dataclass
class Broadcast:
    """An accepted broadcast. ``payload``: the user payload (``bytes`` for a binary one)."""

    topic: str
    event: str
    payload: Any
    private: bool
    source: str  # "rest" (batch), "rest-single", "websocket" or "emulator"
    id: str | None = None
    delivered: int = 0  # sockets it was pushed to


@dataclass(frozen=True)
class Dropped:
    """A message Supabase took without an error and did not send.

    ``reason``: "no RLS INSERT permission" (a private message, from REST's
    batch endpoint or a socket), or "payload size exceeds tenant limit" (a
    socket's broadcast without ``ack``, which would have been told).
    """

    topic: str
    event: str
    payload: Any
    source: str
    role: str | None
    sub: str | None
    reason: str


@dataclass
class Member:
    """One channel joined on one socket (the server's channel process)."""

    connection: Outbox
    topic: str  # the bare topic, without "realtime:"
    private: bool
    key: str  # presence key
    presence_enabled: bool
    self_broadcast: bool
    ack: bool
    access_token: str
    claims: dict[str, Any]
    join_ref: str | None = None
    # RLS results for private channels, None until evaluated (as the server's Policies)
    read: dict[Extension, bool | None] = field(
        default_factory=lambda: {"broadcast": None, "presence": None}
    )
    write: dict[Extension, bool | None] = field(
        default_factory=lambda: {"broadcast": None, "presence": None}
    )
    tracked: dict[str, Any] | None = None
    phx_ref: str | None = None
    phx_ref_prev: str | None = None  # the ref this one replaced, after an update
    presence_calls: int = 0
    presence_window_ends: float | None = None

    @property
    def full_topic(self) -> str:
        return "realtime:" + self.topic

    def may_read(self, extension: Extension) -> bool:
        return not self.private or self.read[extension] is True

    def meta(self) -> dict[str, Any]:
        assert self.tracked is not None and self.phx_ref is not None
        meta = {**self.tracked, "phx_ref": self.phx_ref}
        if self.phx_ref_prev is not None:
            meta["phx_ref_prev"] = self.phx_ref_prev
        return meta

    def untrack(self) -> dict[str, Any]:
        """Forget the tracked presence; its meta, for the ``leaves`` of a diff."""
        meta = self.meta()
        self.tracked = self.phx_ref = self.phx_ref_prev = None
        return meta


PresenceState = dict[str, dict[str, list[dict[str, Any]]]]


class Topics:
    """Joined channels by (private, topic), in join order, and the fan-out to them."""

    def __init__(self, count: Callable[[int], None]) -> None:
        self.members: dict[tuple[bool, str], list[Member]] = {}
        self._count = count  # adds to the tenant's messages-per-second counter

    def add(self, member: Member) -> None:
        self.members.setdefault((member.private, member.topic), []).append(member)

    def remove(self, member: Member) -> None:
        """Forget ``member``; a tracked presence leaves (``presence_diff`` to the others)."""
        key = (member.private, member.topic)
        joined = self.members.get(key, [])
        if member in joined:
            joined.remove(member)
            if not joined:
                del self.members[key]
        if member.tracked is not None:
            left = {member.key: {"metas": [member.untrack()]}}
            self.presence_diff(member.private, member.topic, {}, left)

    def joined(self, topic: str, private: bool | None = None) -> Iterator[Member]:
        for (is_private, name), members in list(self.members.items()):
            if name == topic and private in (None, is_private):
                yield from members

    def deliver(
        self, private: bool, topic: str, payload: Any, exclude: Member | None = None
    ) -> int:
        """Push a ``broadcast`` to the topic's joins allowed to read it; how many got it."""
        message = frame("realtime:" + topic, "broadcast", payload)
        delivered = 0
        for member in self.members.get((private, topic), []):
            if member is exclude or not member.may_read("broadcast"):
                continue
            member.connection.push(message)
            delivered += 1
        self._count(delivered)  # each delivery counts, as on the server
        return delivered

    def presence_state(self, private: bool, topic: str) -> PresenceState:
        """``{key: {"metas": [{phx_ref, ...tracked}]}}``, as Phoenix.Presence lists it."""
        state: PresenceState = {}
        for member in self.members.get((private, topic), []):
            if member.tracked is not None:
                state.setdefault(member.key, {"metas": []})["metas"].append(member.meta())
        return state

    def presence_diff(
        self, private: bool, topic: str, joins: PresenceState, leaves: PresenceState
    ) -> None:
        """``presence_diff`` to every join of the topic allowed to read presence, self included."""
        message = frame("realtime:" + topic, "presence_diff", {"joins": joins, "leaves": leaves})
        for member in self.members.get((private, topic), []):
            if member.may_read("presence"):
                member.connection.push(message)


class RateWindow:
    """Messages counted in the current second of the clock (the tenant's events per second).

    Supabase keeps a rolling average over up to a minute, sampled every 5 s;
    one whole-second window is used here so tests are deterministic: the
    count starts again when the clock enters a new second.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._second = int(clock())
        self._count = 0

    @property
    def count(self) -> int:
        second = int(self.clock())
        if second != self._second:
            self._second, self._count = second, 0
        return self._count

    def add(self, n: int = 1) -> None:
        self._count = self.count + n

    def reset(self) -> None:
        self._second, self._count = int(self.clock()), 0
