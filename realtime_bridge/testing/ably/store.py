"""What the emulated app holds: messages, presence members, occupancy, idempotency keys.

Publishing follows Ably's rules: one Message or an atomic array per request;
object and array ``data`` is stored as JSON text with ``encoding: json``;
the size of a publish is the bytes of name + clientId + data + extras summed
over its messages (Ably measures an atomic array as one payload); client ids
in an array must be ``<base>:<index>`` (40031); a message whose id the channel
saw within the idempotency window (2 minutes) is accepted and discarded.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .auth import Credentials
from .errors import AblyError

__all__ = ["PresenceMember", "PublishOutcome", "Store", "StoredMessage", "check_channel"]

_INDEXED_ID = re.compile(r"^(?P<base>.+):(?P<index>\d+)$")
PRESENT, ENTER, LEAVE, UPDATE = 1, 2, 3, 4


def check_channel(name: str) -> None:
    """Ably's channel-name rules: non-empty, no leading ``[`` or ``:``, no newline (40010)."""
    if not name:
        raise AblyError(40010, "invalid channel name: empty")
    if name[0] in "[:":
        raise AblyError(40010, f"invalid channel name: {name!r} starts with {name[0]!r}")
    if "\n" in name or "\r" in name:
        raise AblyError(40010, f"invalid channel name: {name!r} contains a newline")


def _new_id() -> str:
    return secrets.token_urlsafe(8)


def encode_data(data: object, encoding: str | None) -> tuple[str | bytes | None, str | None]:
    """Data as Ably stores it: objects and arrays become JSON text with ``json`` appended."""
    if isinstance(data, dict | list):
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return text, f"{encoding}/json" if encoding else "json"
    if data is None or isinstance(data, str | bytes):
        return data, encoding or None
    raise AblyError(
        40013, f"Invalid message data or encoding: data type {type(data).__name__} is unsupported"
    )


def data_size(data: str | bytes | None, encoding: str | None) -> int:
    if data is None:
        return 0
    if isinstance(data, bytes):
        return len(data)
    if encoding and encoding.rsplit("/", 1)[-1] == "base64":
        try:
            return len(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            pass
    return len(data.encode())


def wire_data(
    data: str | bytes | None, encoding: str | None, binary: bool
) -> tuple[str | bytes | None, str | None]:
    """Data for a response: bytes are base64 text in JSON (``base64`` appended), raw in msgpack."""
    if isinstance(data, bytes) and not binary:
        return base64.b64encode(data).decode(
            "ascii"
        ), f"{encoding}/base64" if encoding else "base64"
    return data, encoding


@dataclass
class StoredMessage:
    """One message as the emulator stored it (``data`` as on the wire, with ``encoding``)."""

    channel: str
    id: str
    name: str | None
    data: str | bytes | None
    encoding: str | None
    client_id: str | None
    connection_id: str
    timestamp: int
    serial: str
    extras: dict[str, Any] | None
    order: int = field(repr=False, default=0)

    @property
    def decoded_data(self) -> object:
        """``data`` decoded through its ``json`` / ``base64`` / ``utf-8`` encodings."""
        value: object = self.data
        for step in reversed((self.encoding or "").split("/")):
            if step == "json" and isinstance(value, str | bytes):
                value = json.loads(value)
            elif step == "base64" and isinstance(value, str):
                value = base64.b64decode(value)
            elif step == "utf-8" and isinstance(value, bytes):
                value = value.decode()
        return value

    def wire(self, binary: bool = False) -> dict[str, Any]:
        """The message as Ably's history returns it."""
        data, encoding = wire_data(self.data, self.encoding, binary)
        message: dict[str, Any] = {
            "id": self.id,
            "timestamp": self.timestamp,
            "connectionId": self.connection_id,
            "serial": self.serial,
            "action": 0,  # message.create
            "version": {"serial": self.serial, "timestamp": self.timestamp},
        }
        optional = {
            "name": self.name,
            "clientId": self.client_id,
            "data": data,
            "encoding": encoding,
            "extras": self.extras,
        }
        message.update({k: v for k, v in optional.items() if v is not None})
        return message


@dataclass
class PresenceMember:
    """One member (or, in presence history, one presence event) on a channel."""

    channel: str
    client_id: str
    connection_id: str
    data: str | bytes | None
    encoding: str | None
    timestamp: int
    id: str
    action: int = PRESENT
    order: int = field(repr=False, default=0)

    def wire(self, binary: bool = False) -> dict[str, Any]:
        data, encoding = wire_data(self.data, self.encoding, binary)
        member: dict[str, Any] = {
            "id": self.id,
            "clientId": self.client_id,
            "connectionId": self.connection_id,
            "timestamp": self.timestamp,
            "action": self.action,
        }
        if data is not None:
            member["data"] = data
        if encoding:
            member["encoding"] = encoding
        return member


_Item = TypeVar("_Item", StoredMessage, PresenceMember)


@dataclass
class _Channel:
    messages: list[StoredMessage] = field(default_factory=list)
    members: dict[tuple[str, str], PresenceMember] = field(default_factory=dict)
    presence_history: list[PresenceMember] = field(default_factory=list)
    subscribers: int = 0
    publishers: int = 0


@dataclass(frozen=True)
class PublishOutcome:
    channel: str
    message_id: str
    serials: list[str | None]
    stored: list[StoredMessage]


@dataclass
class _Draft:
    id: str | None
    name: str | None
    data: str | bytes | None
    encoding: str | None
    client_id: str | None
    extras: dict[str, Any] | None


class Store:
    """Channels and what is on them; every read first drops what retention has expired."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_message_size: int,
        retention_ms: int,
        idempotency_window_ms: int,
    ) -> None:
        self.clock = clock
        self.max_message_size = max_message_size
        self.retention_ms = retention_ms
        self.idempotency_window_ms = idempotency_window_ms
        self.channels: dict[str, _Channel] = {}
        # Idempotency keys (channel, message id) -> (first seen, serial); the deque
        # holds them oldest first so expiry costs nothing per publish.
        self._seen: dict[tuple[str, str], tuple[int, str]] = {}
        self._seen_order: deque[tuple[int, tuple[str, str]]] = deque()
        self._order = 0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def reset(self) -> None:
        self.channels.clear()
        self._seen.clear()
        self._seen_order.clear()

    def _next(self) -> int:
        self._order += 1
        return self._order

    def channel(self, name: str) -> _Channel:
        state = self.channels.setdefault(name, _Channel())
        horizon = self.now_ms() - self.retention_ms
        if state.messages and state.messages[0].timestamp < horizon:
            state.messages = [m for m in state.messages if m.timestamp >= horizon]
        if state.presence_history and state.presence_history[0].timestamp < horizon:
            state.presence_history = [p for p in state.presence_history if p.timestamp >= horizon]
        return state

    # -- publishing --------------------------------------------------------------------

    def publish(
        self, channel: str, messages: Sequence[object], credentials: Credentials | None
    ) -> PublishOutcome:
        """Publish ``messages`` atomically: all are checked before any is stored."""
        check_channel(channel)
        if not messages:
            raise AblyError(40001, "invalid request body: no messages to publish")
        drafts = [self._draft(message, credentials) for message in messages]
        size = sum(_size(draft) for draft in drafts)
        if size > self.max_message_size:
            raise AblyError(
                40009,
                f"Maximum message length exceeded (size was {size} bytes, "
                f"limit is {self.max_message_size} bytes)",
            )
        base = _id_base(drafts)
        return self._store(channel, drafts, base)

    def _draft(self, message: object, credentials: Credentials | None) -> _Draft:
        if not isinstance(message, Mapping):
            raise AblyError(40001, "invalid request body: a message must be a JSON object")
        name, encoding = message.get("name"), message.get("encoding")
        if name is not None and not isinstance(name, str):
            raise AblyError(40016, "Invalid message name: must be a string")
        if encoding is not None and not isinstance(encoding, str):
            raise AblyError(40013, "Invalid message data or encoding: encoding must be a string")
        extras = message.get("extras")
        if extras is not None and not isinstance(extras, dict):
            raise AblyError(40013, "Invalid message data or encoding: extras must be an object")
        message_id = message.get("id")
        if message_id is not None and (not isinstance(message_id, str) or not message_id):
            raise AblyError(40031, "Client-specified message id cannot be empty")
        data, encoding = encode_data(message.get("data"), encoding)
        client_id = _client_id(message.get("clientId"), credentials)
        return _Draft(message_id, name, data, encoding, client_id, extras)

    def _store(self, channel: str, drafts: list[_Draft], base: str | None) -> PublishOutcome:
        state = self.channel(channel)
        now = self.now_ms()
        self._forget_ids_before(now - self.idempotency_window_ms)
        message_id = base or _new_id()
        connection_id = _new_id()
        batch = self._next()
        serials: list[str | None] = []
        stored: list[StoredMessage] = []
        for index, draft in enumerate(drafts):
            msg_id = draft.id or f"{message_id}:{index}"
            duplicate = self._seen.get((channel, msg_id)) if draft.id else None
            if duplicate is not None:
                serials.append(duplicate[1])
                continue
            serial = f"{now:014d}-{batch:06d}@emulator:{index:03d}"
            message = StoredMessage(
                channel=channel,
                id=msg_id,
                name=draft.name,
                data=draft.data,
                encoding=draft.encoding,
                client_id=draft.client_id,
                connection_id=connection_id,
                timestamp=now,
                serial=serial,
                extras=draft.extras,
                order=self._next(),
            )
            state.messages.append(message)
            self._seen[channel, msg_id] = (now, serial)
            self._seen_order.append((now, (channel, msg_id)))
            serials.append(serial)
            stored.append(message)
        return PublishOutcome(channel, message_id, serials, stored)

    def _forget_ids_before(self, horizon: int) -> None:
        while self._seen_order and self._seen_order[0][0] <= horizon:
            seen_at, key = self._seen_order.popleft()
            if key in self._seen and self._seen[key][0] == seen_at:
                del self._seen[key]

    # -- reading -----------------------------------------------------------------------

    def history(
        self,
        channel: str,
        *,
        start: int,
        end: int,
        limit: int,
        forwards: bool,
        after: int | None,
    ) -> tuple[list[StoredMessage], bool]:
        """One page of history and whether more follows; ``after`` is the last order seen."""
        matching = [m for m in self.channel(channel).messages if start <= m.timestamp <= end]
        return _page(matching, limit=limit, forwards=forwards, after=after)

    def presence_history(
        self,
        channel: str,
        *,
        start: int,
        end: int,
        limit: int,
        forwards: bool,
        after: int | None,
    ) -> tuple[list[PresenceMember], bool]:
        events = self.channel(channel).presence_history
        matching = [p for p in events if start <= p.timestamp <= end]
        return _page(matching, limit=limit, forwards=forwards, after=after)

    def members(
        self,
        channel: str,
        *,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMember]:
        return [
            member
            for member in self.channel(channel).members.values()
            if (client_id is None or member.client_id == client_id)
            and (connection_id is None or member.connection_id == connection_id)
        ]

    def metrics(self, channel: str) -> dict[str, int]:
        state = self.channel(channel)
        presence_connections = len({m.connection_id for m in state.members.values()})
        return {
            "connections": max(state.subscribers, state.publishers, presence_connections),
            "publishers": state.publishers,
            "subscribers": state.subscribers,
            "presenceConnections": presence_connections,
            "presenceMembers": len(state.members),
            "presenceSubscribers": state.subscribers,
        }

    # -- presence (entered by realtime clients, so set here rather than over REST) ------

    def enter(
        self, channel: str, client_id: str, data: object, connection_id: str | None
    ) -> PresenceMember:
        check_channel(channel)
        if not client_id or client_id == "*":
            raise ValueError(
                f"a presence member needs a client id other than '*', got {client_id!r}"
            )
        stored, encoding = _presence_data(data)
        state = self.channel(channel)
        connection = connection_id or _new_id()
        key = (connection, client_id)
        action = UPDATE if key in state.members else ENTER
        now = self.now_ms()
        order = self._next()
        member = PresenceMember(
            channel, client_id, connection, stored, encoding, now, f"{connection}:{order}:0"
        )
        member.order = order
        state.members[key] = member
        self._record(state, member, action)
        return member

    def leave(self, channel: str, client_id: str, connection_id: str | None) -> int:
        state = self.channel(channel)
        leaving = [
            key
            for key, member in state.members.items()
            if member.client_id == client_id
            and (connection_id is None or member.connection_id == connection_id)
        ]
        for key in leaving:
            self._record(state, state.members.pop(key), LEAVE)
        return len(leaving)

    def _record(self, state: _Channel, member: PresenceMember, action: int) -> None:
        order = self._next()
        event = PresenceMember(
            member.channel,
            member.client_id,
            member.connection_id,
            member.data,
            member.encoding,
            self.now_ms(),
            f"{member.connection_id}:{order}:0",
            action,
            order,
        )
        state.presence_history.append(event)


def _page(
    items: list[_Item], *, limit: int, forwards: bool, after: int | None
) -> tuple[list[_Item], bool]:
    ordered = items if forwards else items[::-1]
    if after is not None:
        ordered = [i for i in ordered if (i.order > after if forwards else i.order < after)]
    return ordered[:limit], len(ordered) > limit


def _client_id(value: object, credentials: Credentials | None) -> str | None:
    """The message's clientId, checked against the identity the credentials carry (40012)."""
    if value is not None and (not isinstance(value, str) or not value or value == "*"):
        raise AblyError(40012, f"Invalid clientId {value!r}")
    identity = credentials.client_id if credentials else None
    if identity is None or identity == "*":
        return value
    if value is not None and value != identity:
        raise AblyError(
            40012, f"Invalid clientId {value!r}: mismatched with the credentials' {identity!r}"
        )
    return identity


def _size(draft: _Draft) -> int:
    extras = json.dumps(draft.extras, separators=(",", ":")) if draft.extras else ""
    return (
        len((draft.name or "").encode())
        + len((draft.client_id or "").encode())
        + data_size(draft.data, draft.encoding)
        + len(extras.encode())
    )


def _id_base(drafts: list[_Draft]) -> str | None:
    """The shared id base of client-supplied ids; an array must use ``<base>:<index>`` (40031)."""
    ids = [draft.id for draft in drafts]
    if all(i is None for i in ids):
        return None
    if len(ids) == 1:
        match = _INDEXED_ID.match(ids[0] or "")
        return match["base"] if match else ids[0]
    matches = [_INDEXED_ID.match(i or "") for i in ids]
    bases = {m["base"] for m in matches if m}
    if (
        not all(matches)
        or len(bases) != 1
        or any(m and int(m["index"]) != index for index, m in enumerate(matches))
    ):
        raise AblyError(
            40031,
            "Client-specified message ids do not match the required format for multi-message "
            "ProtocolMessages (every id <base>:<index>, one base, index = position)",
        )
    return bases.pop()


def _presence_data(data: object) -> tuple[str | bytes | None, str | None]:
    if data is not None and not isinstance(data, str | bytes | dict | list):
        raise ValueError(f"presence data must be str, bytes, dict, list or None, not {data!r}")
    return encode_data(data, None)
