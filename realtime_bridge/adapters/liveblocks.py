"""Liveblocks: broadcast to rooms over its REST API; active users as presence; browser tokens.

URL: ``liveblocks://SECRET@[HOST[:PORT]][/PATH][?option=value...]``. SECRET is
the project's secret key (``sk_...``); no host means Liveblocks' own API
(``https://api.liveblocks.io``); a host is used as given (an emulator:
``liveblocks://sk_...@127.0.0.1:8081?tls=false``). Options: ``tls`` (default
true), ``max_message_size`` (bytes of one broadcast, default 1,000,000:
Liveblocks' limit for clients before 3.14; 32 MB since), ``concurrency``
(requests in flight at once, default 10), ``timeout`` (seconds, default 10).

**Rooms are channels.** Each event is one ``POST /v2/rooms/{room}/broadcast_event``
whose body is the whole envelope (``Event.encode()``: ``v``, ``id``, ``type``,
``channel``, ``data``, ``seq``, ``ts``); browsers get it as the ``event`` of
``useEventListener`` (``connectionId`` -1), and switch on ``event.type``.
Liveblocks has no batch broadcast and no message ids: a batch is one request
per event, the events of one room in order and rooms side by side (at most
``concurrency`` requests at once). The adapter remembers the last 10,000 ids
Liveblocks took from it and does not send them again (``PublishResult.duplicates``);
a repeat from another process reaches browsers, which drop it by ``id``, so
``idempotent`` is not declared. A room nobody has entered does not exist
(404 ``ROOM_NOT_FOUND``): nobody is there to miss the event, so it counts as
sent, as a Pusher event on a channel without subscribers does; a browser
entering later catches up from the outbox's history.

The path is spelled as Liveblocks' REST reference and ``@liveblocks/node``
spell it (``broadcast_event``, ``active_users``); the official Python SDK calls
``broadcast-event`` and ``active-users``. The emulator answers both.

**Room ids** may be 128 characters, fewer than the portable 164: ``check``
refuses a longer channel before anything is sent (``InvalidChannel``).

**Presence** is Liveblocks' active users (``GET /v2/rooms/{room}/active_users``):
one member per user id however many tabs it has open, with the ``userInfo`` its
token carries; occupancy counts connections (every connection to a room gets its
broadcasts) and distinct users. Liveblocks asks that it be polled at most every
10 s. No history (the Bridge reads the outbox), no idempotent publish.

**Browser tokens** are signed by Liveblocks, not here: ``authorize_room`` asks
``POST /v2/authorize-user`` for an access token and ``identify_user`` asks
``POST /v2/identify-user`` for an ID token, each returning ``{"token": ...}``,
what the browser's ``authEndpoint`` must answer. That is network I/O, so the
Bridge's synchronous ``authorize`` is not offered (``CLIENT_AUTH`` is not
declared); ``authorize`` says which coroutine to await instead.

**Errors**, mapped once in ``_liveblocks_http``: network errors, timeouts, 408
and 5xx are ``VendorUnavailable``; 429 is ``RateLimited`` with its
``Retry-After``; 401 and 403 are ``AuthenticationFailed``; a 404 that is not
``ROOM_NOT_FOUND`` is a ``ConfigurationError`` (the base URL is wrong); 413 is
``PayloadTooLarge`` and other 4xx ``PublishRejected``, both naming the event.
No message carries the secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import quote, unquote, urlsplit

import httpx

from ..errors import (
    AuthenticationFailed,
    CapabilityNotSupported,
    ConfigurationError,
    InvalidChannel,
    PayloadTooLarge,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    TransientError,
)
from ..events import Event, validate_channel
from . import liveblocks_auth
from ._liveblocks_http import ROOM_NOT_FOUND, LiveblocksHttp, error_of
from ._query import QueryOptions
from .base import Adapter, Capability, Limits, Member, Occupancy, PublishResult

__all__ = ["LiveblocksAdapter"]

logger = logging.getLogger("realtime_bridge.liveblocks")

DEFAULT_HOST = "api.liveblocks.io"
#: Bytes of one broadcast: Liveblocks' limit for clients before 3.14 (32 MB from 3.14).
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
DEFAULT_CONCURRENCY = 10
DEFAULT_TIMEOUT = 10.0
#: Events per Bridge batch (each is its own request; rooms go side by side).
MAX_BATCH = 100
#: Ids of events Liveblocks took that this adapter remembers, not to send them again.
REMEMBERED_IDS = 10_000
_OPTIONS = {"tls", "max_message_size", "concurrency", "timeout"}
_SECRET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _check_secret(secret: str) -> str:
    """The secret key's shape, as Liveblocks' SDKs check it (never echoing the key)."""
    if not secret:
        raise ConfigurationError(
            "missing the secret key: liveblocks://SECRET@[HOST], SECRET being the project's "
            "secret key (sk_...)"
        )
    if secret.startswith("pk_"):
        raise ConfigurationError(
            "that is a public key (pk_...): the server needs the project's secret key (sk_...)"
        )
    if not secret.startswith("sk_") or not set(secret) <= _SECRET_CHARS:
        raise ConfigurationError(
            "the secret key must start with 'sk_' and hold only letters, digits, '_' and '-'"
        )
    return secret


def room_path(room: str, *rest: str) -> str:
    """``/v2/rooms/{room}/...``, the room id percent-encoded as one path segment."""
    return "/".join(("", "v2", "rooms", quote(room, safe=""), *rest))


@dataclass
class _Lane:
    """One room's events in a batch: sent in order, stopping at the first failure."""

    events: list[Event]
    sent: int = 0
    repeats: list[str] = field(default_factory=list)  # ids Liveblocks already took from us
    error: RealtimeBridgeError | None = None


class _Acknowledged:
    """Ids of the latest events Liveblocks took from this adapter, at most ``size``.

    Liveblocks has no message ids, so it cannot drop a repeat; this adapter can,
    for what it sent itself: a retry of a partly failed batch (the Bridge's, or
    the relay sending the rest after dead-lettering one event) sends only what
    did not go. Another process has no such memory: its repeats reach browsers,
    which drop them by ``id``.
    """

    def __init__(self, size: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)


def _priority(error: RealtimeBridgeError) -> int:
    """Which lane's failure a batch raises: a wait the vendor asked for, then any transient one
    (a retry of the whole batch can help), then the key's, then an event's own fault."""
    if isinstance(error, RateLimited):
        return 3
    if isinstance(error, TransientError):
        return 2
    return 1 if isinstance(error, AuthenticationFailed | ConfigurationError) else 0


class LiveblocksAdapter(Adapter):
    """Broadcasts to Liveblocks rooms; presence and occupancy from their active users."""

    scheme = "liveblocks"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PUBLISH, Capability.BATCH, Capability.PRESENCE, Capability.OCCUPANCY}
    )

    def __init__(
        self,
        *,
        secret: str,
        host: str | None = None,
        port: int | None = None,
        path: str = "",
        tls: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_BYTES,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Check the configuration now; the HTTP client is made on first use.

        ``transport`` replaces httpx's network transport (tests pass an
        ``httpx.MockTransport``).
        """
        _check_secret(secret)
        for name, value in (("max_message_size", max_message_size), ("concurrency", concurrency)):
            if value < 1:
                raise ConfigurationError(f"option {name!r} must be at least 1, got {value}")
        if not timeout > 0:
            raise ConfigurationError(f"option 'timeout' must be positive, got {timeout!r}")
        host = host or DEFAULT_HOST
        bracketed = f"[{host}]" if ":" in host else host
        prefix = "/" + path.strip("/") if path.strip("/") else ""
        location = bracketed + (f":{port}" if port else "") + prefix
        base_url = f"{'https' if tls else 'http'}://{location}"
        self._label = f"liveblocks://***@{location}" + ("" if tls else "?tls=false")
        self._concurrency = concurrency
        self._acknowledged = _Acknowledged(REMEMBERED_IDS)
        self.limits = Limits(
            max_payload_bytes=max_message_size,
            max_events_per_batch=MAX_BATCH,
            payload_measure="Liveblocks broadcast body (the JSON envelope)",
        )
        self._http = LiveblocksHttp(
            secret=secret,
            base_url=base_url,
            timeout=timeout,
            adapter=self._label,
            transport=transport,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``liveblocks://SECRET@[HOST[:PORT]][/PATH][?options]``; keywords win."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError("bad Liveblocks URL: the port is not a number") from exc
        if parts.password is not None:
            raise ConfigurationError(
                "give the secret key as the whole user part (liveblocks://SECRET@HOST), without ':'"
            )
        query = QueryOptions(parts.query, adapter="liveblocks", known=_OPTIONS)
        options.setdefault("secret", unquote(parts.username or ""))
        options.setdefault("host", parts.hostname or None)
        options.setdefault("port", port)
        options.setdefault("path", parts.path)
        options.setdefault("tls", query.flag("tls", True))
        options.setdefault(
            "max_message_size", query.integer("max_message_size", DEFAULT_MAX_MESSAGE_BYTES)
        )
        options.setdefault("concurrency", query.integer("concurrency", DEFAULT_CONCURRENCY))
        options.setdefault("timeout", query.number("timeout", DEFAULT_TIMEOUT))
        return cls(**options)

    @property
    def name(self) -> str:
        return self._label

    def payload_size(self, event: Event) -> int:
        """UTF-8 bytes of the broadcast body: the JSON envelope."""
        return len(event.encode())

    def check(self, event: Event) -> None:
        """The payload limit, and Liveblocks' 128-character room ids (the portable rule allows
        164): refused before the outbox commit, not by Liveblocks later."""
        self._room(event.channel)
        super().check(event)

    def _room(self, channel: str) -> str:
        validate_channel(channel)
        if len(channel) > liveblocks_auth.MAX_ROOM_ID_LENGTH:
            raise InvalidChannel(
                f"channel {channel[:40]!r}... is {len(channel)} characters; Liveblocks room ids "
                f"are at most {liveblocks_auth.MAX_ROOM_ID_LENGTH}",
            )
        return channel

    # -- publishing ------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """Every event checked first; then one request per event, rooms side by side.

        A room's events go in order and stop at its first failure; other rooms
        go on. If any failed, the batch raises the failure most worth acting on
        (a Retry-After, then a transient one, then the key's, then an event's
        own fault naming it), with a note of how many Liveblocks already took;
        a retry through this adapter skips those.
        """
        for event in events:
            self.check(event)
        lanes: dict[str, _Lane] = {}
        for event in events:
            lanes.setdefault(event.channel, _Lane([])).events.append(event)
        gate = asyncio.Semaphore(self._concurrency)
        await asyncio.gather(*(self._send_lane(lane, gate) for lane in lanes.values()))
        failures = [lane.error for lane in lanes.values() if lane.error is not None]
        if not failures:
            repeats = tuple(event_id for lane in lanes.values() for event_id in lane.repeats)
            return PublishResult(published=len(events) - len(repeats), duplicates=repeats)
        error = max(failures, key=_priority)  # the first of the most pressing kind
        sent = sum(lane.sent for lane in lanes.values())
        if sent:
            error.add_note(
                f"{sent} of {len(events)} events were broadcast by Liveblocks before this "
                "failure; a retry through this adapter skips them, one through another "
                "process delivers them twice (clients drop repeats by id)"
            )
        raise error

    async def _send_lane(self, lane: _Lane, gate: asyncio.Semaphore) -> None:
        for event in lane.events:
            if event.id in self._acknowledged:
                lane.repeats.append(event.id)
                continue
            try:
                async with gate:
                    await self._broadcast(event)
            except RealtimeBridgeError as exc:
                lane.error = exc
                return
            self._acknowledged.add(event.id)
            lane.sent += 1

    async def _broadcast(self, event: Event) -> None:
        path = room_path(event.channel, "broadcast_event")
        response = await self._http.request("POST", path, content=event.encode())
        if response.is_success:
            return
        if response.status_code == 404 and error_of(response)[0] == ROOM_NOT_FOUND:
            logger.debug("room %s does not exist: nobody to receive event %s", path, event.id)
            return
        raise self._blame(event, self._http.refusal(response), response.status_code)

    def _blame(self, event: Event, error: RealtimeBridgeError, status: int) -> RealtimeBridgeError:
        """Name the event Liveblocks refused, so the relay dead-letters it and sends the rest."""
        if type(error) is not PublishRejected:
            return error
        if status == 413:
            return PayloadTooLarge(
                adapter=self.name,
                event_id=event.id,
                size=self.payload_size(event),
                limit=self.limits.max_payload_bytes,
                measure=f"{self.limits.payload_measure}; {error}",
            )
        return PublishRejected(f"event {event.id} refused: {error}", event_id=event.id)

    # -- reading: active users ----------------------------------------------------------

    async def _active_users(self, channel: str) -> list[dict[str, Any]]:
        """The room's connections as Liveblocks lists them; none for a room that does not exist."""
        response = await self._http.request("GET", room_path(self._room(channel), "active_users"))
        if response.status_code == 404 and error_of(response)[0] == ROOM_NOT_FOUND:
            return []
        if not response.is_success:
            raise self._http.refusal(response)
        data = response.json().get("data")
        return [user for user in data if isinstance(user, dict)] if isinstance(data, list) else []

    async def presence(self, channel: str) -> list[Member]:
        """One member per user id (a user with two tabs is two connections), with the
        ``userInfo`` of its first connection, sorted by id. Anonymous connections (public-key
        auth, no user id) are not members."""
        members: dict[str, Member] = {}
        for user in await self._active_users(channel):
            user_id, info = user.get("id"), user.get("info")
            if isinstance(user_id, str) and user_id not in members:
                members[user_id] = Member(user_id, info if isinstance(info, dict) else {})
        return sorted(members.values(), key=lambda member: member.id)

    async def occupancy(self, channel: str) -> Occupancy:
        """Connections (each receives the room's broadcasts) and distinct users."""
        users = await self._active_users(channel)
        ids = {user.get("id") for user in users if isinstance(user.get("id"), str)}
        return Occupancy(channel, subscribers=len(users), members=len(ids))

    async def ping(self) -> None:
        """Reach Liveblocks with the key: the first page of one room (auth and network)."""
        response = await self._http.request("GET", "/v2/rooms", params={"limit": "1"})
        if not response.is_success:
            raise self._http.refusal(response)

    # -- browsers: tokens Liveblocks signs -------------------------------------------------

    def require(self, capability: Capability) -> None:
        """As every adapter; refusing client auth says which coroutine gives a token instead."""
        if capability is Capability.CLIENT_AUTH:
            self._no_sync_tokens()
        super().require(capability)

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """Not offered: Liveblocks signs tokens on its servers; await ``authorize_room``."""
        self._no_sync_tokens()

    def _no_sync_tokens(self) -> NoReturn:
        raise CapabilityNotSupported(
            adapter=self.name,
            capability=str(Capability.CLIENT_AUTH),
            hint="Liveblocks signs browser tokens on its own servers, so getting one is network "
            "I/O: `await adapter.authorize_room(channel, user=...)` (an access token) or "
            "`await adapter.identify_user(user)` (an ID token) returns the {'token': ...} "
            "your authEndpoint answers",
        )

    async def authorize_room(
        self,
        room: str,
        *,
        user: Member,
        permissions: Sequence[str] = liveblocks_auth.DEFAULT_PERMISSIONS,
        organization_id: str | None = None,
    ) -> dict[str, Any]:
        """An access token for ``room`` (a channel, or a prefix ending in ``*``), from Liveblocks.

        ``user.id`` is the userId Liveblocks counts monthly active users by, and
        ``user.info`` the userInfo other browsers see. By default the browser may
        receive the room's events and show its own presence (``room:read``,
        ``room:presence:write``). Returns ``{"token": ...}``.
        """
        if not room.endswith("*"):
            self._room(room)
        body = liveblocks_auth.access_token_body(
            user, {room: permissions}, organization_id=organization_id
        )
        return await self._token("/v2/authorize-user", body)

    async def authorize_rooms(
        self,
        rooms: Mapping[str, Sequence[str]],
        *,
        user: Member,
        organization_id: str | None = None,
    ) -> dict[str, Any]:
        """One access token for up to ten rooms or patterns, each with its own permissions."""
        body = liveblocks_auth.access_token_body(user, rooms, organization_id=organization_id)
        return await self._token("/v2/authorize-user", body)

    async def identify_user(
        self,
        user: Member,
        *,
        groups: Sequence[str] = (),
        organization_id: str | None = None,
    ) -> dict[str, Any]:
        """An ID token for ``user`` (permissions are then the rooms' own, set over REST)."""
        body = liveblocks_auth.id_token_body(user, groups=groups, organization_id=organization_id)
        return await self._token("/v2/identify-user", body)

    async def _token(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.request("POST", path, json_body=body)
        if not response.is_success:
            raise self._http.refusal(response)
        token = response.json().get("token")
        if not isinstance(token, str):
            raise PublishRejected(f"POST {path} answered without a token", adapter=self.name)
        return {"token": token}

    async def aclose(self) -> None:
        await self._http.aclose()
