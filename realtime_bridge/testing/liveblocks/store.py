"""What the emulated Liveblocks project holds: rooms, their connections, accepted broadcasts.

A room exists once it is created over REST or once a browser enters it (as
with access tokens, where entering creates the room). A connection is one
browser tab in a room (``connect``): it has a ``connectionId`` (numbered per
room from 1), the user id and ``userInfo`` its token named (none for an
anonymous, public-key connection), and the events broadcast while it was
there. Everything here is synchronous; the app calls it between requests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import LiveblocksApiError, invalid, room_not_found

__all__ = ["Broadcast", "Connection", "Received", "Room", "Store", "iso"]

MAX_ROOM_ID_LENGTH = 128
MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 256
DEFAULT_ORGANIZATION = "default"
#: The ``connectionId`` listeners see on an event broadcast over REST.
SERVER_CONNECTION_ID = -1


def iso(seconds: float) -> str:
    """A timestamp as Liveblocks writes them: ISO 8601, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Received:
    """What one listener got for one broadcast: ``useEventListener``'s argument."""

    event: Any
    connection_id: int = SERVER_CONNECTION_ID
    user: Any = None

    def wire(self) -> dict[str, Any]:
        return {"event": self.event, "connectionId": self.connection_id, "user": self.user}


@dataclass
class Connection:
    """One browser tab in a room."""

    id: int
    user_id: str | None
    info: dict[str, Any]
    received: list[Received] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        """As ``active_users`` lists it."""
        return {"type": "user", "id": self.user_id, "connectionId": self.id, "info": self.info}


@dataclass(frozen=True)
class Broadcast:
    """An accepted ``broadcast_event``: the room, the JSON body, the path spelling, who got it."""

    room: str
    event: Any
    route: str  # "broadcast_event" or "broadcast-event"
    delivered: tuple[int, ...]  # connection ids
    at: float


@dataclass
class Room:
    id: str
    created_at: float
    default_accesses: list[str]
    users_accesses: dict[str, list[str]] = field(default_factory=dict)
    groups_accesses: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    organization_id: str = DEFAULT_ORGANIZATION
    last_connection_at: float | None = None
    connections: dict[int, Connection] = field(default_factory=dict)
    next_connection_id: int = 1

    def wire(self) -> dict[str, Any]:
        """As ``GET /v2/rooms/{roomId}`` answers."""
        room: dict[str, Any] = {
            "type": "room",
            "id": self.id,
            "organizationId": self.organization_id,
            "createdAt": iso(self.created_at),
            "defaultAccesses": list(self.default_accesses),
            "usersAccesses": {k: list(v) for k, v in self.users_accesses.items()},
            "groupsAccesses": {k: list(v) for k, v in self.groups_accesses.items()},
            "metadata": dict(self.metadata),
        }
        if self.last_connection_at is not None:
            room["lastConnectionAt"] = iso(self.last_connection_at)
        return room


class Store:
    """The project's rooms, in creation order, and every broadcast accepted."""

    def __init__(self, clock: Callable[[], float], permissions: frozenset[str]) -> None:
        self.clock = clock
        self.permissions = permissions
        self.rooms: dict[str, Room] = {}
        self.broadcasts: list[Broadcast] = []

    def reset(self) -> None:
        self.rooms.clear()
        self.broadcasts.clear()

    # -- rooms ------------------------------------------------------------------------------

    def room(self, room_id: str) -> Room:
        found = self.rooms.get(room_id)
        if found is None:
            raise room_not_found(room_id)
        return found

    def create(self, body: Mapping[str, Any], *, idempotent: bool = False) -> Room:
        """``POST /v2/rooms``: ``id`` and ``defaultAccesses`` required (409 if it exists)."""
        room_id = body.get("id")
        if not isinstance(room_id, str) or not 1 <= len(room_id) <= MAX_ROOM_ID_LENGTH:
            raise invalid(f"Value at key 'id': a room id is 1 to {MAX_ROOM_ID_LENGTH} characters")
        if "defaultAccesses" not in body:
            raise invalid("Missing key: 'defaultAccesses'.")
        if room_id in self.rooms:
            if idempotent:
                return self.rooms[room_id]
            raise LiveblocksApiError(
                409,
                "ROOM_ALREADY_EXISTS",
                "The room already exists.",
                "Please use a different room id or update the existing room.",
            )
        room = Room(
            room_id, self.clock(), self._accesses(body["defaultAccesses"], "defaultAccesses")
        )
        self._apply(room, body, creating=True)
        self.rooms[room_id] = room
        return room

    def update(self, room_id: str, body: Mapping[str, Any]) -> Room:
        """``POST /v2/rooms/{roomId}``: the properties given; ``null`` deletes an entry."""
        room = self.room(room_id)
        default = room.default_accesses
        if "defaultAccesses" in body:  # null: no default access (a private room)
            default = self._accesses(body["defaultAccesses"] or [], "defaultAccesses")
        self._apply(room, body, creating=False)
        room.default_accesses = default
        return room

    def delete(self, room_id: str) -> None:
        """``DELETE /v2/rooms/{roomId}``: the room and its connections go (204 even if absent)."""
        self.rooms.pop(room_id, None)

    def page(
        self, *, limit: int, starting_after: str | None, organization_id: str | None
    ) -> tuple[list[Room], str | None]:
        """Rooms newest first, after a cursor; the next page's cursor, or None."""
        rooms = [
            room
            for room in reversed(self.rooms.values())
            if organization_id is None or room.organization_id == organization_id
        ]
        if starting_after is not None:
            after = _cursor_room(starting_after)
            ids = [room.id for room in rooms]
            if after not in ids:
                raise invalid("Value at key 'startingAfter': not a cursor of this project")
            rooms = rooms[ids.index(after) + 1 :]
        page = rooms[:limit]
        more = len(rooms) > limit
        return page, (_cursor(page[-1].id) if more and page else None)

    def _apply(self, room: Room, body: Mapping[str, Any], *, creating: bool) -> None:
        """Set what ``body`` gives, all or nothing: a 422 leaves the room as it was."""
        users = self._merged(room.users_accesses, body, "usersAccesses")
        groups = self._merged(room.groups_accesses, body, "groupsAccesses")
        metadata = room.metadata
        if body.get("metadata") is not None:
            metadata = _merged_metadata(room.metadata, body["metadata"], creating=creating)
        room.users_accesses, room.groups_accesses, room.metadata = users, groups, metadata
        if creating and isinstance(body.get("organizationId"), str):
            room.organization_id = body["organizationId"]

    def _merged(
        self, current: dict[str, list[str]], body: Mapping[str, Any], key: str
    ) -> dict[str, list[str]]:
        """``current`` with ``body[key]`` applied: a list sets an entry, ``null`` deletes it,
        and ``null`` for the whole map clears it."""
        if key not in body:
            return current
        given = body[key]
        if given is None:
            return {}
        if not isinstance(given, dict):
            raise invalid(f"Value at key '{key}': expected an object")
        merged = dict(current)
        for name, accesses in given.items():
            if accesses is None:
                merged.pop(name, None)
            else:
                merged[name] = self._accesses(accesses, f"{key}.{name}")
        return merged

    def _accesses(self, value: object, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise invalid(f"Value at key '{key}': expected a list of permissions")
        unknown = sorted(set(value) - self.permissions)
        if unknown:
            raise invalid(f"Value at key '{key}': unknown permission(s) {unknown}")
        return list(value)

    # -- connections and broadcasts -----------------------------------------------------------

    def connect(
        self,
        room_id: str,
        user_id: str | None = None,
        info: Mapping[str, Any] | None = None,
        connection_id: int | None = None,
    ) -> int:
        """A browser enters ``room_id`` (creating the room); or, given ``connection_id``, that
        connection's user info is replaced. Returns the connection id."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.create({"id": room_id, "defaultAccesses": []})
        if connection_id is not None and connection_id in room.connections:
            room.connections[connection_id].info = dict(info or {})
            return connection_id
        number = room.next_connection_id
        room.next_connection_id += 1
        room.connections[number] = Connection(number, user_id, dict(info or {}))
        room.last_connection_at = self.clock()
        return number

    def disconnect(
        self, room_id: str, *, connection_id: int | None = None, user_id: str | None = None
    ) -> int:
        """Close one connection, or every connection of ``user_id``; how many closed."""
        room = self.rooms.get(room_id)
        if room is None:
            return 0
        gone = [
            number
            for number, connection in room.connections.items()
            if number == connection_id or (connection_id is None and connection.user_id == user_id)
        ]
        for number in gone:
            del room.connections[number]
        return len(gone)

    def broadcast(self, room_id: str, event: Any, route: str) -> Broadcast:
        """Deliver ``event`` to every connection in the room (404 if the room does not exist)."""
        room = self.room(room_id)
        received = Received(event)
        for connection in room.connections.values():
            connection.received.append(received)
        broadcast = Broadcast(room_id, event, route, tuple(room.connections), self.clock())
        self.broadcasts.append(broadcast)
        return broadcast

    def connections(self, room_id: str) -> Iterator[Connection]:
        room = self.rooms.get(room_id)
        yield from (room.connections.values() if room is not None else ())


def _merged_metadata(current: dict[str, Any], given: object, *, creating: bool) -> dict[str, Any]:
    """``current`` with ``given`` applied (``null`` deletes a key), or a 422 and no change."""
    if not isinstance(given, dict):
        raise invalid("Value at key 'metadata': expected an object")
    metadata = dict(current)
    for key, value in given.items():
        if value is None and not creating:
            metadata.pop(key, None)
            continue
        if len(key) > MAX_METADATA_KEY:
            raise invalid(f"Value at key 'metadata': key {key[:50]!r} is over 40 characters")
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) and len(item) <= MAX_METADATA_VALUE for item in values):
            raise invalid(
                f"Value at key 'metadata.{key}': a string of at most 256 characters, or a list"
            )
        metadata[key] = value
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise invalid("Value at key 'metadata': at most 50 entries")
    return metadata


def _cursor(room_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": room_id}).encode()).decode()


def _cursor_room(cursor: str) -> str | None:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        return None
    after = decoded.get("after") if isinstance(decoded, dict) else None
    return after if isinstance(after, str) else None
