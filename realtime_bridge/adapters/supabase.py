"""Supabase Realtime: broadcast over its REST API, presence over its WebSocket.

URL: ``supabase://KEY@PROJECT.supabase.co``, or any base URL of a self-hosted
Supabase (``supabase://KEY@127.0.0.1:54321?tls=false``; a path prefix is
kept). KEY is the project's ``service_role`` key (or an ``sb_secret_`` key):
the backend must bypass Row Level Security, see "the silent drop" below.
Options: ``tls`` (default true), ``max_payload_kb`` (the plan's payload limit,
default 256, Free), ``messages_per_second`` (the plan's quota, default 100,
Free: no request carries more messages), ``jwt_secret`` (the project's JWT
secret, to mint browser tokens; never shown), ``timeout`` (seconds, default
10), ``all_private`` (default false: see private channels).

**What is sent.** One ``POST /realtime/v1/api/broadcast`` per batch, through
one pooled ``httpx.AsyncClient`` (the SDK's ``http_send`` opens a client per
call and sends one message per request): ``{"messages": [{topic, event,
payload, private, id?}]}`` with topic the channel (the bare name, as the
server's tests and the docs use it), event ``event.type`` and payload the
whole envelope as a JSON object (``v``, ``id``, ``type``, ``channel``,
``data``, ``seq``, ``ts``: clients drop duplicates by ``id``, since Supabase
has no idempotent publish, and order by ``seq``). The body is spliced from
``Event.encode()``, byte for byte the JSON of ``json.loads(event.encode())``
without decoding it again. ``id`` is sent only when the event id is a UUID
(the default, UUIDv7): Supabase only forwards it to clients as
``payload.meta.id`` and parses it as a UUID, so any other id would fail the
whole request; clients have the envelope's ``id`` either way.

**Private channels** are those with the portable ``private-`` or ``presence-``
prefix (``channel_kind``), the same names Pusher requires for authorised
channels, so one name means one thing on every adapter and no list of
patterns must be kept in step with the code; ``?all_private=true`` marks every
channel private, for projects with "Allow public access" turned off.

**The silent drop.** A private message whose sender fails the RLS INSERT check
on ``realtime.messages`` is skipped, and the request still answers 202. The
``service_role`` key bypasses RLS, so the relay's messages always pass; a
project configured with the ``anon`` key would lose every private event
without an error. ``verify_private_delivery`` joins a private channel and
sends a probe, to find out (``realtime-bridge doctor``).

**Presence** has no REST endpoint: the adapter joins the channel over
Realtime's Phoenix WebSocket with the ``realtime`` SDK (the ``supabase``
extra), one connection per adapter, opened on first use, one joined channel
per topic whose presence the SDK keeps in sync from ``presence_state`` and
``presence_diff``. There is no history (the Bridge reads it from the outbox)
and no webhooks.

**Errors**, mapped once in ``_refusal``: network errors, timeouts, 408 and 5xx
are ``VendorUnavailable``; 429 is ``RateLimited``, waiting as long as the
``x-rate-*`` headers say the rolling average needs to fall under the limit;
403 "Tenant is suspended" is ``VendorUnavailable`` (the events are fine and go
through once the project is restored: transient, so the Bridge fails over
meanwhile); 401 and other 403s are ``AuthenticationFailed``; 404 is a
``ConfigurationError`` (the base URL is wrong); 422 and 413 name the refused
event (``PayloadTooLarge`` for a size refusal). No message carries the key or
the JWT secret.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import unquote, urlsplit

import httpx

from .. import __version__
from ..errors import (
    AuthenticationFailed,
    CapabilityNotSupported,
    ConfigurationError,
    PayloadTooLarge,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from ..events import Event, channel_kind, validate_channel
from ..settings import redact_url
from . import supabase_auth
from ._query import QueryOptions
from ._supabase_ws import PROBE_EVENT, Socket, members_of, scrub
from .base import Adapter, Capability, Limits, Member, Occupancy, PublishResult

if TYPE_CHECKING:
    from realtime import (
        BroadcastPayload,
    )

__all__ = ["DeliveryCheck", "SupabaseAdapter"]

BROADCAST_PATH = "/realtime/v1/api/broadcast"
REALTIME_PATH = "/realtime/v1"
DEFAULT_MAX_PAYLOAD_KB = 256
DEFAULT_MESSAGES_PER_SECOND = 100
DEFAULT_TIMEOUT = 10.0
#: Bytes per request: under the 8,000,000 that Phoenix's body parser accepts by default.
MAX_BODY_BYTES = 6_000_000
#: Realtime's rate counters average events per second over about a minute.
RATE_WINDOW_S = 60.0
#: Channels one socket keeps joined for presence (Supabase allows 100 per client).
MAX_PRESENCE_CHANNELS = 100

_SHOWN_OPTIONS = {"tls", "max_payload_kb", "messages_per_second", "timeout", "all_private"}
_OPTIONS = {*_SHOWN_OPTIONS, "jwt_secret"}
_OPTION = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HIDDEN_META = frozenset({"presence_ref", "phx_ref", "phx_ref_prev"})
_INSTALL = "pip install 'realtime-bridge[supabase]'"


# -- pure helpers: what is sent, what came back -----------------------------------------------


def _message(event: Event, private: bool) -> bytes:
    """One ``messages[]`` entry; channel and type need no JSON escaping (their rules say so)."""
    head = b'{"topic":"%s","event":"%s","payload":' % (event.channel.encode(), event.type.encode())
    tail = b',"private":true' if private else b',"private":false'
    if _UUID.fullmatch(event.id):
        tail += b',"id":"%s"' % event.id.encode()
    return head + event.encode() + tail + b"}"


def _shown(url: str) -> str:
    """``url`` fit for a message: the key masked, and every option value but the known harmless
    ones (a misspelt ``jwt_secret`` is still a secret)."""
    return _OPTION.sub(
        lambda option: (
            option.group(0)
            if option.group(2) in _SHOWN_OPTIONS
            else f"{option.group(1)}{option.group(2)}=***"
        ),
        redact_url(url),
    )


def _body(messages: Sequence[bytes]) -> bytes:
    return b'{"messages":[' + b",".join(messages) + b"]}"


def _detail(response: httpx.Response) -> str:
    """What Supabase said: ``message``, ``error`` or the ``errors`` tree, else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        for field in ("message", "error"):
            if isinstance(body.get(field), str):
                return str(body[field])
        if "errors" in body:
            return json.dumps(body["errors"], separators=(",", ":"))
    return response.text


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds until a refused tenant may send again: Retry-After, else the ``x-rate-*`` headers.

    Realtime refuses while its rolling average of events per second
    (``x-rate-rolling``) is over the limit (``x-rate-limit``). That average
    covers about a minute, so with nothing sent it falls under the limit after
    ``window * (rolling - limit) / rolling`` seconds, at least one.
    """
    given = _number(headers.get("retry-after"))
    if given is not None:
        return max(0.0, given)
    rolling, limit = _number(headers.get("x-rate-rolling")), _number(headers.get("x-rate-limit"))
    if rolling is None or limit is None or limit <= 0 or rolling < limit:
        return None
    return float(min(RATE_WINDOW_S, max(1, math.ceil(RATE_WINDOW_S * (rolling - limit) / rolling))))


def _culprit(response: httpx.Response, events: Sequence[Event]) -> Event | None:
    """The event a 4xx refused: the only one, or the one Supabase's per-message errors name."""
    if len(events) == 1:
        return events[0]
    try:
        errors = response.json()["errors"]["messages"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(errors, list) or len(errors) != len(events):
        return None
    return next((event for event, error in zip(events, errors, strict=True) if error), None)


@dataclass(frozen=True, slots=True)
class DeliveryCheck:
    """What ``verify_private_delivery`` found; true when the probe arrived."""

    channel: str
    delivered: bool
    detail: str

    def __bool__(self) -> bool:
        return self.delivered


class SupabaseAdapter(Adapter):
    """Publish, presence, occupancy and browser tokens on Supabase Realtime.

    No history (the Bridge reads it from the outbox), no idempotent publish
    (Supabase has no message ids: clients drop duplicates by the envelope's
    ``id``) and no webhooks (Supabase Realtime has none).
    """

    scheme = "supabase"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PUBLISH,
            Capability.BATCH,
            Capability.PRESENCE,
            Capability.OCCUPANCY,
            Capability.CLIENT_AUTH,
        }
    )

    def __init__(
        self,
        *,
        key: str,
        host: str,
        port: int | None = None,
        path: str = "",
        tls: bool = True,
        max_payload_kb: int = DEFAULT_MAX_PAYLOAD_KB,
        messages_per_second: int = DEFAULT_MESSAGES_PER_SECOND,
        jwt_secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        all_private: bool = False,
        token_ttl: int = supabase_auth.DEFAULT_TTL_S,
        max_presence_channels: int = MAX_PRESENCE_CHANNELS,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Check the configuration now; the HTTP client and the WebSocket are made on first use.

        ``transport`` replaces httpx's network transport (tests pass an
        ``httpx.MockTransport``); ``clock`` gives Unix time, for browser tokens.
        """
        if not key or any(char.isspace() for char in key):
            raise ConfigurationError(
                "missing the API key (the user part of supabase://KEY@HOST): the project's "
                "service_role or sb_secret_ key"
            )
        if not host:
            raise ConfigurationError("missing the host: PROJECT.supabase.co, or a self-hosted host")
        _at_least(1, max_payload_kb=max_payload_kb, messages_per_second=messages_per_second)
        _at_least(1, token_ttl=token_ttl, max_presence_channels=max_presence_channels)
        if not timeout > 0:
            raise ConfigurationError(f"option 'timeout' must be positive, got {timeout!r}")
        self._key = key
        self._jwt_secret = None if jwt_secret is None else supabase_auth.check_secret(jwt_secret)
        if self._jwt_secret is None:  # browsers cannot be authorised: say so up front
            self.capabilities = type(self).capabilities - {Capability.CLIENT_AUTH}  # type: ignore[misc]
        self._all_private = all_private
        self._token_ttl = token_ttl
        self._per_request = messages_per_second
        self._timeout = timeout
        self._transport = transport
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        bracketed = f"[{host}]" if ":" in host else host
        prefix = "/" + path.strip("/") if path.strip("/") else ""
        location = bracketed + (f":{port}" if port else "") + prefix
        self._base_url = f"{'https' if tls else 'http'}://{location}"
        # redact_url's form, built without the key or the JWT secret ever being in the string.
        self._label = f"supabase://***@{location}" + ("" if tls else "?tls=false")
        self.limits = Limits(
            max_payload_bytes=max_payload_kb * 1000,
            max_events_per_batch=messages_per_second,
            payload_measure=(
                "Supabase payload (the JSON envelope in UTF-8; Supabase counts the decoded "
                "object's Erlang external size, a little more for many short fields)"
            ),
        )
        self._socket = Socket(
            url=self._base_url + REALTIME_PATH,
            key=key,
            timeout=timeout,
            adapter=self._label,
            max_channels=max_presence_channels,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``supabase://KEY@HOST[:PORT][/PATH][?option=value...]``; keywords win."""
        parts = urlsplit(url)
        shown = _shown(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(
                f"bad Supabase URL {shown!r}: the port is not a number"
            ) from exc
        try:
            if parts.password is not None:
                raise ConfigurationError(
                    "give the API key as the whole user part (supabase://KEY@HOST), without ':'"
                )
            query = QueryOptions(parts.query, adapter="supabase", known=_OPTIONS)
            options.setdefault("key", unquote(parts.username or ""))
            options.setdefault("host", parts.hostname or "")
            options.setdefault("port", port)
            options.setdefault("path", parts.path)
            options.setdefault("tls", query.flag("tls", True))
            options.setdefault("timeout", query.number("timeout", DEFAULT_TIMEOUT))
            kb = query.integer("max_payload_kb", DEFAULT_MAX_PAYLOAD_KB)
            options.setdefault("max_payload_kb", kb)
            quota = query.integer("messages_per_second", DEFAULT_MESSAGES_PER_SECOND)
            options.setdefault("messages_per_second", quota)
            options.setdefault("jwt_secret", query.text("jwt_secret", "") or None)
            options.setdefault("all_private", query.flag("all_private", False))
            return cls(**options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"bad Supabase URL {shown!r}: {exc}") from exc

    @property
    def name(self) -> str:
        return self._label

    def is_private(self, channel: str) -> bool:
        """Whether messages to ``channel`` are sent, and it is joined, as private (RLS-checked)."""
        return self._all_private or channel_kind(channel) != "public"

    def payload_size(self, event: Event) -> int:
        """UTF-8 bytes of the payload sent: the JSON envelope."""
        return len(event.encode())

    # -- publishing ------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """Every event checked first, then one request per ``messages_per_second`` events.

        The Bridge calls with at most ``limits.max_events_per_batch`` events, one
        request that Supabase takes or refuses whole. Called with more (or with
        events over 6 MB together), requests go in order and the first failure
        stops the rest; a note on the error says how many were acknowledged.
        """
        for event in events:
            self.check(event)
        sent = 0
        for chunk in self._chunks(events):
            try:
                await self._broadcast(chunk)
            except RealtimeBridgeError as exc:
                if sent:
                    exc.add_note(
                        f"{sent} of {len(events)} events were acknowledged by Supabase before "
                        "this failure; sending them again delivers them twice"
                    )
                raise
            sent += len(chunk)
        return PublishResult(published=sent)

    def _chunks(self, events: Sequence[Event]) -> list[list[tuple[Event, bytes]]]:
        chunks: list[list[tuple[Event, bytes]]] = []
        size = 0
        for event in events:
            message = _message(event, self.is_private(event.channel))
            full = chunks and len(chunks[-1]) >= self._per_request
            if not chunks or full or size + len(message) > MAX_BODY_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append((event, message))
            size += len(message) + 1
        return chunks

    async def _broadcast(self, chunk: Sequence[tuple[Event, bytes]]) -> None:
        response = await self._post(_body([message for _, message in chunk]))
        if not response.is_success:
            raise self._refusal(response, [event for event, _ in chunk])

    # -- reading: presence over the WebSocket ------------------------------------------

    async def presence(self, channel: str) -> list[Member]:
        """Members by presence key, with what the first connection of each tracked.

        The key is what the browser set as ``config.presence.key`` (its user id,
        ideally; Supabase makes up one otherwise). The first call on a channel
        joins it; later calls read the state the SDK keeps in sync.
        """
        validate_channel(channel)
        joined = await self._socket.presence_channel(channel, private=self.is_private(channel))
        return members_of(joined.presence_state())

    async def occupancy(self, channel: str) -> Occupancy:
        """Members counted from presence; subscribers ``None``: Supabase does not tell.

        A browser that listens without tracking presence is invisible to the
        server, so no number of subscribers can be derived honestly.
        """
        return Occupancy(channel, subscribers=None, members=len(await self.presence(channel)))

    async def ping(self) -> None:
        """An empty broadcast: checks the network and the key, and sends nothing.

        Supabase answers 202 or a 4xx about the empty list, which is past its
        auth check; a 401 or a network error is raised as usual.
        """
        response = await self._post(b'{"messages":[]}')
        if not (response.is_success or response.status_code in (400, 422)):
            raise self._refusal(response, [])

    async def verify_private_delivery(
        self,
        channel: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - how long the probe may take is the question
        as_user: Member | None = None,
    ) -> DeliveryCheck:
        """Join ``channel`` as private, broadcast a probe over REST, say whether it arrived.

        This is how to notice the silent drop (a private message failing RLS is
        answered 202 and never delivered), e.g. from ``realtime-bridge doctor``.
        The probe is sent with the configured key, as the relay publishes. The
        listener joins with the key too, or, given ``as_user``, with the token
        ``authorize`` would give that user (needs ``jwt_secret``): that checks
        the browser's side (the SELECT policy) as well. Network and key errors
        are raised; a refused join or a lost probe is a false result saying why.
        """
        validate_channel(channel)
        listener = self._listener_token(channel, as_user)
        marker = uuid.uuid4().hex
        arrived = asyncio.Event()

        def on_probe(message: BroadcastPayload) -> None:
            payload = message.get("payload")
            if isinstance(payload, dict) and payload.get("probe") == marker:
                arrived.set()

        client = self._socket.new_client(listener)
        stage = "connecting"
        try:
            async with asyncio.timeout(timeout):
                await self._socket.connect(client)
                stage = "joining"
                await self._socket.join(
                    client, channel, private=True, presence=False, on_broadcast=on_probe
                )
                stage = "waiting"
                probe = {"topic": channel, "event": PROBE_EVENT, "private": True}
                await self._post_probe({**probe, "payload": {"probe": marker}})
                await arrived.wait()
        except TimeoutError:
            return DeliveryCheck(channel, False, _lost(stage, timeout))
        except AuthenticationFailed as exc:
            if stage != "joining":
                raise
            return DeliveryCheck(channel, False, f"the listener may not receive: {exc}")
        finally:
            await self._socket.close_client(client)
        return DeliveryCheck(channel, True, "a private probe sent over REST arrived")

    def _listener_token(self, channel: str, user: Member | None) -> str | None:
        if user is not None:
            return str(self.authorize(channel, user=user)["access_token"])
        return self._key if supabase_auth.is_jwt(self._key) else None

    async def _post_probe(self, message: Mapping[str, Any]) -> None:
        body = json.dumps({"messages": [message]}, separators=(",", ":")).encode()
        response = await self._post(body)
        if not response.is_success:
            raise self._refusal(response, [])

    # -- browsers (pure computation) ------------------------------------------------------

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """A user JWT for ``channel``, for the browser's ``supabase.realtime.setAuth()``.

        Returns ``access_token``, ``token_type``, ``expires_in``, ``expires_at``
        (Unix seconds: ask again before then, Realtime disconnects at expiry),
        ``topic``, ``private`` (the ``config.private`` to join with) and
        ``channels``. ``socket_id`` is ignored: Supabase has no socket ids.
        """
        if channel is None:
            raise ValueError("a Supabase token names its channels: pass the channel")
        grant = self.authorize_channels([channel], user=user)
        return {**grant, "topic": channel, "private": self.is_private(channel)}

    def authorize_channels(self, channels: Sequence[str], *, user: Member | None) -> dict[str, Any]:
        """One token for several channels: Realtime holds one token per browser connection.

        Without a user the token names no one (no ``sub``): it may receive on its
        channels, as a private Pusher subscription may; presence channels need the
        user, whose id is the presence key.
        """
        presence = [name for name in channels if channel_kind(name) == "presence"]
        if user is None and presence:
            raise ValueError(
                f"presence channel {presence[0]!r} needs the user: pass user=Member(...)"
            )
        if self._jwt_secret is None:
            raise CapabilityNotSupported(
                adapter=self.name,
                capability=str(Capability.CLIENT_AUTH),
                hint="authorising browsers needs the project's JWT secret: add ?jwt_secret= "
                "to the supabase:// URL (or jwt_secret=...)",
            )
        token, expires_at = supabase_auth.user_token(
            self._jwt_secret, user=user, topics=channels, now=self._clock(), ttl_s=self._token_ttl
        )
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self._token_ttl,
            "expires_at": expires_at,
            "channels": [{"topic": name, "private": self.is_private(name)} for name in channels],
        }

    # -- HTTP ----------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        """The one pooled client, made on first use (and again after ``aclose``)."""
        if self._http is None:
            headers = {
                "apikey": self._key,
                "Content-Type": "application/json",
                "X-Client-Info": f"realtime-bridge/{__version__}",
            }
            if supabase_auth.is_jwt(self._key):  # sb_ keys go in apikey only
                headers["Authorization"] = f"Bearer {self._key}"
            self._http = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout,
                transport=self._transport,
                headers=headers,
            )
        return self._http

    def _hidden(self) -> list[str]:
        return [self._key, self._jwt_secret or ""]

    async def _post(self, body: bytes) -> httpx.Response:
        """One broadcast request; a network failure leaves here as ``VendorUnavailable``."""
        what = f"POST {BROADCAST_PATH}"
        try:
            return await self._client().post(BROADCAST_PATH, content=body)
        except httpx.TimeoutException as exc:
            raise VendorUnavailable(
                f"{what} timed out after {self._timeout:g}s ({type(exc).__name__})",
                adapter=self.name,
            ) from exc
        except httpx.HTTPError as exc:
            detail = scrub(str(exc), self._hidden())
            raise VendorUnavailable(
                f"{what} failed: {type(exc).__name__}: {detail}", adapter=self.name
            ) from exc

    def _refusal(self, response: httpx.Response, events: Sequence[Event]) -> RealtimeBridgeError:
        """The library's error for an error status; transient only where waiting can help."""
        status = response.status_code
        detail = scrub(_detail(response), self._hidden())
        message = f"POST {BROADCAST_PATH} answered {status}" + (f": {detail}" if detail else "")
        lowered = detail.lower()
        if status == 429 and "batch size" in lowered:
            # Retrying the same batch cannot help; refused whole, the relay sends one by one.
            hint = f"lower ?messages_per_second= (now {self._per_request}) to the plan's quota"
            return PublishRejected(f"{message} ({hint})", adapter=self.name)
        if status == 429:
            return RateLimited(
                message, adapter=self.name, retry_after=_retry_after(response.headers)
            )
        if status == 408 or status >= 500 or (status == 403 and "suspend" in lowered):
            return VendorUnavailable(message, adapter=self.name)
        if status in (401, 403):
            hint = "check the key; self-hosted, the Host must name the tenant"
            return AuthenticationFailed(f"{message} ({hint})", adapter=self.name)
        if status == 404:
            hint = f"is {self._base_url} the project's base URL?"
            return ConfigurationError(f"{message} ({hint})", adapter=self.name)
        too_large = status == 413 or "payload size" in lowered
        return self._blame(message, _culprit(response, events), too_large=too_large)

    def _blame(
        self, message: str, culprit: Event | None, *, too_large: bool
    ) -> PublishRejected | PayloadTooLarge:
        """Name the refused event, so the relay dead-letters it and sends the rest."""
        if culprit is None:
            return PublishRejected(message, adapter=self.name)
        if too_large:
            return PayloadTooLarge(
                adapter=self.name,
                event_id=culprit.id,
                size=self.payload_size(culprit),
                limit=self.limits.max_payload_bytes,
                measure=f"{self.limits.payload_measure}; {message}",
            )
        return PublishRejected(
            f"event {culprit.id} refused: {message}", adapter=self.name, event_id=culprit.id
        )

    async def aclose(self) -> None:
        """Close the HTTP client and the WebSocket; safe to call twice, and before any call."""
        client, self._http = self._http, None
        try:
            await self._socket.aclose()
        finally:
            if client is not None:
                await client.aclose()


def _at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if value < minimum:
            raise ConfigurationError(f"option {name!r} must be at least {minimum}, got {value}")


def _lost(stage: str, timeout: float) -> str:
    if stage == "waiting":
        return (
            f"Supabase accepted the probe (202) but it did not arrive within {timeout:g}s: "
            "private messages whose sender fails the RLS INSERT check on realtime.messages "
            "are dropped silently; publish with the service_role key, or add the policy"
        )
    return f"the listener was still {stage} after {timeout:g}s"
