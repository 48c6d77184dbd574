"""Each vendor's counting rule for one message, as a pure function.

These are the rules the vendors state (see ``pricing/*.toml`` for the
sources), kept small so each can be checked against the vendor's own worked
example; ``usage.py`` applies them to a month of measured traffic.
"""

from __future__ import annotations

import math

__all__ = [
    "ABLY_CHUNK_BYTES",
    "GIB",
    "ably_bandwidth_allowance",
    "ably_chunks",
    "ably_messages",
    "connection_minutes",
    "pusher_messages",
    "supabase_messages",
    "whole_packages",
]

#: Ably bills a message per started 5 KiB of its size.
ABLY_CHUNK_BYTES = 5 * 1024
GIB = 1024**3


def pusher_messages(publishes: float, subscribers: float, *, with_info: bool = False) -> float:
    """Pusher: 1 per publish (2 if the publish asks for channel ``info``) + 1 per delivery.

    One publish to 50 subscribers counts 51.
    """
    return publishes * (2 if with_info else 1) + publishes * subscribers


def ably_chunks(size_bytes: int) -> int:
    """How many messages Ably bills one message of ``size_bytes`` as (5 KiB chunks).

    A 16 KiB message counts 4, a 50 KiB message 10; an empty one still counts 1.
    """
    if size_bytes < 0:
        raise ValueError(f"size_bytes must be 0 or more, got {size_bytes}")
    return max(1, math.ceil(size_bytes / ABLY_CHUNK_BYTES))


def ably_messages(size_bytes: int, subscribers: float, *, echo: bool = False) -> float:
    """Ably: 1 inbound + 1 per subscriber (+ 1 echo to a realtime publisher), each chunked.

    A server publishing over REST gets no echo, so the library's publishes count
    ``1 + subscribers`` chunks each.
    """
    return ably_chunks(size_bytes) * (1 + subscribers + (1 if echo else 0))


def ably_bandwidth_allowance(messages: float) -> float:
    """Bytes Ably includes before charging bandwidth: 5 KiB per billed message."""
    return messages * ABLY_CHUNK_BYTES


def supabase_messages(sends: float, receivers: float) -> float:
    """Supabase broadcast: 1 per message sent + 1 per receiving client."""
    return sends * (1 + receivers)


def whole_packages(amount: float, package: float) -> int:
    """Packages of ``package`` units needed to cover ``amount`` (Supabase bills whole ones).

    Past the included 5M messages by 2.2M is 3 packages of 1M; by exactly 2M is 2.
    """
    if package <= 0:
        raise ValueError(f"package must be more than 0, got {package}")
    return math.ceil(amount / package) if amount > 0 else 0


def connection_minutes(mean_connections: float, hours: float) -> float:
    """Connection-minutes (or channel-minutes): how many were open, for how long."""
    return mean_connections * hours * 60


def collaboration_minutes(mean_connections: float, people_per_room: float, hours: float) -> float:
    """Liveblocks' realtime-collaboration minutes: user-minutes in rooms of 2 or more people.

    "When 2+ people are in the same room, each user-minute counts": a room
    with one person in it is free. The measured subscribers per channel stand
    for the people in each room, so below 2 nothing counts, and from 2 on every
    connection-minute does (an average, not a per-room count: rooms of 1 and 3
    average 2 and are billed as if all were shared).
    """
    if people_per_room < 2:
        return 0.0
    return connection_minutes(mean_connections, hours)
