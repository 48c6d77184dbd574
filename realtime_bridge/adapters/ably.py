"""Ably over its REST API: idempotent publishing, history, presence and occupancy.

URL: ``ably://KEYNAME:KEYSECRET@[ENDPOINT][:PORT][?option=value...]``, where
KEYNAME is ``appId.keyId``. No endpoint means Ably's own (``main``, with its
fallback hosts); a host name (an emulator, a dedicated cluster) is used as
given, without fallbacks. Options: ``tls`` (default true), ``auth``
(``basic`` or ``token``; Basic needs TLS, so without TLS the key signs a
TokenRequest and a token is used), ``max_message_size`` (bytes; 65,536 by
default, Ably's limit on the Free and Standard plans; 262,144 on Pro),
``timeout`` (seconds), ``client_auth`` (``token_request`` or ``jwt``: what
``authorize`` gives browsers).

Why Ably's REST API through one pooled ``httpx.AsyncClient`` and not the
``ably`` SDK: the SDK has no batch publish across channels (``POST
/messages``), so a relay's mixed batch is one request per channel at best and
one per event as its README shows (28x slower, BENCHMARKS.md); it gives every
``publish()`` call fresh random message ids, so a relay's retry after a crash
is not deduplicated; and it ignores per-call timeouts. Its one-channel array
publish is as fast as ours per event, but only for events already grouped by
channel, and its array ids (``<random base>:<index>``) change on every retry.

Every event becomes one Ably message: name ``event.type``, data the whole
envelope (``Event.encode()``, sent with ``encoding: json`` so Ably's client
SDKs hand browsers an object), and id ``<event id>:0``. The id is the same on
every retry, from any relay, so Ably drops the copy it already has (for two
minutes); ``:0`` keeps Ably's ``<base>:<index>`` rule for ids whatever the
grouping. Ably counts a message's size as name + clientId + data + extras;
``payload_size`` measures exactly that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self
from urllib.parse import quote, unquote, urlsplit

import httpx

from ..errors import (
    AuthenticationFailed,
    ConfigurationError,
    CursorNotFound,
    InvalidEvent,
    PayloadTooLarge,
    PublishRejected,
    TransientError,
)
from ..events import Event
from ..webhooks import WebhookEvent
from . import ably_auth
from ._ably_http import AblyHttp, error_for, hosts_for, mapped
from ._query import QueryOptions
from .base import Adapter, Capability, HistoryPage, Limits, Member, Occupancy, PublishResult

__all__ = ["AblyAdapter"]

DEFAULT_MAX_MESSAGE_BYTES = 65_536
#: Events per Bridge batch; each request also stays under Ably's 2 MiB body limit.
MAX_BATCH = 100
MAX_BODY_BYTES = 2 * 1024 * 1024 - 64 * 1024  # below 2 MiB, with room for the JSON around
_PAGE = 1000  # Ably's largest page
_OPTIONS = {"tls", "auth", "max_message_size", "timeout", "client_auth"}


def message_id(event: Event) -> str:
    """The Ably message id of ``event``: stable across retries, ``<base>:<index>`` shaped."""
    return f"{event.id}:0"


def _message(event: Event) -> dict[str, Any]:
    return {
        "id": message_id(event),
        "name": event.type,
        "data": event.encode().decode(),
        "encoding": "json",
    }


def _event_of(message: Mapping[str, Any]) -> Event | None:
    """The envelope carried by an Ably message, or None for a message that is not ours."""
    data = message.get("data")
    if isinstance(data, dict | list):
        data = json.dumps(data)
    if not isinstance(data, str):
        return None
    try:
        return Event.decode(data)
    except (InvalidEvent, ValueError):
        return None


def _batch_results(body: Any) -> list[Any]:
    """Per-spec results of a batch publish, whichever shape Ably answered with."""
    if isinstance(body, dict):
        body = body.get("batchResponse") or body.get("error", {}).get("batchResponse") or []
    flat: list[Any] = []
    for entry in body if isinstance(body, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("results"), list):
            flat.extend(entry["results"])  # the newer shape: one summary per spec
        else:
            flat.append(entry)
    return flat


class AblyAdapter(Adapter):
    """Publishes to Ably; history, presence and occupancy from Ably's REST API."""

    scheme = "ably"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PUBLISH,
            Capability.BATCH,
            Capability.PRESENCE,
            Capability.HISTORY,
            Capability.OCCUPANCY,
            Capability.IDEMPOTENT,
            Capability.CLIENT_AUTH,
            Capability.WEBHOOKS,
        }
    )

    def __init__(
        self,
        *,
        key: str,
        endpoint: str | None = None,
        port: int | None = None,
        tls: bool = True,
        auth: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_BYTES,
        timeout: float = 10.0,
        client_auth: str = "token_request",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_name, self._key_secret = ably_auth.parse_key(key)
        auth = auth or ("basic" if tls else "token")
        if auth not in {"basic", "token"}:
            raise ConfigurationError(f"option 'auth' must be basic or token, got {auth!r}")
        if auth == "basic" and not tls:
            raise ConfigurationError(
                "Ably refuses Basic auth over plain HTTP (error 40103): use auth=token, or TLS"
            )
        if client_auth not in {"token_request", "jwt"}:
            raise ConfigurationError(
                f"option 'client_auth' must be token_request or jwt, got {client_auth!r}"
            )
        self._client_auth = client_auth
        self._clock = clock
        host, _ = hosts_for(endpoint)
        shown = f"{host}:{port}" if port else host
        self._label = f"ably://{self._key_name}:***@{shown}" + ("" if tls else "?tls=false")
        self.limits = Limits(
            max_payload_bytes=max_message_size,
            max_events_per_batch=MAX_BATCH,
            payload_measure="Ably message (name + data: the JSON envelope)",
        )
        self._http = AblyHttp(
            key_name=self._key_name,
            key_secret=self._key_secret,
            endpoint=endpoint,
            port=port,
            tls=tls,
            token_auth=auth == "token",
            timeout=timeout,
            adapter=self._label,
            transport=transport,
            clock=clock,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``ably://KEYNAME:KEYSECRET@[ENDPOINT][:PORT]``; keyword options win."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError("bad Ably URL: the port is not a number") from exc
        if not parts.username or not parts.password:
            raise ConfigurationError(
                "an Ably URL needs the API key as ably://KEYNAME:KEYSECRET@[ENDPOINT], "
                "KEYNAME being appId.keyId"
            )
        query = QueryOptions(parts.query, adapter="ably", known=_OPTIONS)
        options.setdefault("key", f"{unquote(parts.username)}:{unquote(parts.password)}")
        options.setdefault("endpoint", parts.hostname or None)
        options.setdefault("port", port)
        options.setdefault("tls", query.flag("tls", True))
        options.setdefault("auth", query.text("auth", "") or None)
        options.setdefault("timeout", query.number("timeout", 10.0))
        size = query.integer("max_message_size", DEFAULT_MAX_MESSAGE_BYTES)
        options.setdefault("max_message_size", size)
        options.setdefault("client_auth", query.text("client_auth", "token_request"))
        return cls(**options)

    @property
    def name(self) -> str:
        return self._label

    def payload_size(self, event: Event) -> int:
        """Ably's size rule: bytes of name + clientId + data + extras (no clientId, no extras)."""
        return len(event.type.encode()) + len(event.encode())

    # -- publishing ------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """One request per up-to-2-MiB of events: one channel's message, or a batch of specs.

        A request that fails after an earlier one went through is safe to retry
        whole: Ably drops the events it already has by their ids.
        """
        for event in events:
            self.check(event)
        for chunk in self._chunks(events):
            if len(chunk) == 1:
                await self._publish_one(chunk[0])
            else:
                await self._publish_batch(chunk)
        return PublishResult(published=len(events))

    def _chunks(self, events: Sequence[Event]) -> list[list[Event]]:
        chunks: list[list[Event]] = []
        size = 0
        for event in events:
            cost = self.payload_size(event) + len(event.channel) + 128
            if not chunks or size + cost > MAX_BODY_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(event)
            size += cost
        return chunks

    async def _publish_one(self, event: Event) -> None:
        try:
            path = self._path(event.channel, "messages")
            await self._http.request("POST", path, json_body=_message(event))
        except PublishRejected as exc:
            raise self._blame(event, exc) from exc  # one event: it is the one at fault

    async def _publish_batch(self, events: Sequence[Event]) -> None:
        """One BatchSpec per event, so each message keeps its own stable id."""
        specs = [{"channels": event.channel, "messages": _message(event)} for event in events]
        response = await self._http.request("POST", "/messages", json_body=specs, accept={400})
        if response.status_code == 400:
            self._raise_batch_failure(response, events)

    def _raise_batch_failure(self, response: httpx.Response, events: Sequence[Event]) -> None:
        """Ably refused some specs (error 40020): blame the first refused event.

        Retrying the whole batch is safe (the accepted ones are dropped as
        duplicates), so a transient refusal is raised as such, and a permanent
        one names its event for the relay to dead-letter.
        """
        body = response.json() if response.content else {}
        results = _batch_results(body)
        refusals = [
            (event, result["error"])
            for event, result in zip(events, results, strict=False)
            if isinstance(result, dict) and isinstance(result.get("error"), dict)
        ]
        if not refusals:
            raise mapped(response, self.name)
        event, error = refusals[0]
        code = int(error.get("code") or 0)
        detail = f"event {event.id}: Ably error {code}: {error.get('message')}"
        refusal = error_for(int(error.get("statusCode") or 400), code, detail, self.name)
        for _, other in refusals[1:]:  # one transient refusal makes the whole batch worth a retry
            other_code = int(other.get("code") or 0)
            again = error_for(int(other.get("statusCode") or 400), other_code, detail, self.name)
            if isinstance(again, TransientError):
                refusal = again
        if type(refusal) is PublishRejected:  # the event's own fault: name it
            raise self._blame(event, refusal)
        if isinstance(refusal, AuthenticationFailed):  # the key may not use this channel
            refusal.event_id = event.id
        raise refusal

    def _blame(self, event: Event, exc: PublishRejected) -> PublishRejected | PayloadTooLarge:
        """Name the event Ably refused, so the relay dead-letters it and sends the rest."""
        if "40009" in str(exc):
            return PayloadTooLarge(
                adapter=self.name,
                event_id=event.id,
                size=self.payload_size(event),
                limit=self.limits.max_payload_bytes,
                measure=f"{self.limits.payload_measure}; Ably said: {exc}",
            )
        return PublishRejected(f"event {event.id} refused: {exc}", event_id=event.id)

    # -- reading ------------------------------------------------------------------------

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """Newest first from Ably, turned into events oldest first around an id cursor.

        Ably has no id cursors, so a cursor is found by walking back through the
        channel's retained history (bounded by Ably's retention).
        """
        newest_first = self._events(channel)
        if after is not None:
            newer: list[Event] = []
            async for event in newest_first:
                if event.id == after:
                    page = newer[::-1]
                    return HistoryPage(tuple(page[:limit]), has_more=len(page) > limit)
                newer.append(event)
            raise CursorNotFound(f"event {after} is not in Ably's history of {channel}")
        found = before is None
        older: list[Event] = []
        async for event in newest_first:
            if not found:
                found = event.id == before
                continue
            older.append(event)
            if len(older) > limit:
                break
        if not found:
            raise CursorNotFound(f"event {before} is not in Ably's history of {channel}")
        return HistoryPage(tuple(older[:limit][::-1]), has_more=len(older) > limit)

    async def _events(self, channel: str) -> Any:
        params = {"direction": "backwards", "limit": str(_PAGE)}
        async for message in self._http.pages(self._path(channel, "messages"), params):
            event = _event_of(message) if isinstance(message, dict) else None
            if event is not None:
                yield event

    async def presence(self, channel: str) -> list[Member]:
        """Every member Ably lists on ``channel`` (following pages): one per client id, however
        many connections it has, sorted by id as every adapter returns them."""
        members: dict[str, Member] = {}
        path = self._path(channel, "presence")
        async for item in self._http.pages(path, {"limit": str(_PAGE)}):
            client_id = str(item.get("clientId"))
            if client_id in members:  # the same user on another connection (a second tab)
                continue
            data = item.get("data")
            if isinstance(data, str) and item.get("encoding") == "json":
                data = json.loads(data)
            info = data if isinstance(data, dict) else ({} if data is None else {"data": data})
            members[client_id] = Member(client_id, info)
        return sorted(members.values(), key=lambda member: member.id)

    async def occupancy(self, channel: str) -> Occupancy:
        """Ably's channel status metrics (needs the key's ``channel-metadata`` capability)."""
        response = await self._http.request("GET", self._path(channel))
        details = response.json()
        metrics = details.get("status", {}).get("occupancy", {}).get("metrics", {})
        return Occupancy(channel, metrics.get("subscribers"), metrics.get("presenceMembers"))

    async def ping(self) -> None:
        """Reach Ably with the key: a channel status read (auth, capability and network)."""
        await self._http.request("GET", self._path("realtime-bridge-ping"))

    # -- browsers and webhooks (pure computation) --------------------------------------

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """A signed TokenRequest (or ``{"token": <Ably JWT>}``) for ``channel``.

        The browser's Ably SDK exchanges it for a token limited to that channel:
        subscribe and history, and presence when ``user`` is given (its id
        becomes the clientId, so the browser cannot pretend to be someone else).
        """
        if channel is None:
            raise ValueError("Ably tokens are per channel: pass the channel to authorise")
        capability = ably_auth.capability_for([channel], presence=user is not None)
        client_id = user.id if user is not None else None
        if self._client_auth == "jwt":
            token = ably_auth.ably_jwt(
                self._key_name,
                self._key_secret,
                capability=capability,
                client_id=client_id,
                now=self._clock(),
            )
            return {"token": token}
        return ably_auth.token_request(
            self._key_name,
            self._key_secret,
            capability=capability,
            client_id=client_id,
            timestamp_ms=int(self._clock() * 1000),
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Check a batched Ably webhook's ``X-Ably-Key`` and ``X-Ably-Signature``."""
        return ably_auth.verify_webhook(
            headers, body, key_name=self._key_name, key_secret=self._key_secret
        )

    # -- plumbing -----------------------------------------------------------------------

    def _path(self, channel: str, *rest: str) -> str:
        return "/".join(("", "channels", quote(channel, safe=""), *rest))

    async def aclose(self) -> None:
        await self._http.aclose()
