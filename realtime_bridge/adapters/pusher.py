"""Pusher Channels over its HTTP API, through one pooled ``httpx.AsyncClient``.

Why not the ``pusher`` SDK: it is synchronous (async only through a backend
that opens a new session per request), checks sizes with ``sys.getsizeof``,
and does not cap batches at Pusher's 10 events. The requests sent here are
byte for byte the SDK's (same JSON body, same signed query), which the tests
check against the SDK itself.

URL: ``pusher://KEY:SECRET@HOST[:PORT]/APP_ID[?option=value...]``. Options:
``cluster`` (the host defaults to ``api-{cluster}.pusher.com``), ``tls``
(default true; the port defaults to 443, or 80 without TLS), ``timeout``
(seconds, default 5), ``encryption_master_key`` (base64 of 32 bytes, needed
only to publish on ``private-encrypted-`` channels), ``batch_size`` (1 to 10).

What clients receive: the Pusher event name is ``event.type`` and its data is
the whole envelope (``Event.encode()``: ``v``, ``id``, ``type``, ``channel``,
``data``, ``seq``, ``ts``) as a JSON string, so a browser drops duplicates by
``id`` (Pusher has no message ids: a retried publish is delivered twice) and
orders by ``seq``. Pusher's 10,240-byte limit applies to that string's UTF-8
bytes (after encryption on encrypted channels), and that is what
``payload_size`` measures.

Errors are mapped once, in ``_status_error`` and ``_send`` (which also reads
soketi's errors, sent with a 200 status line; see ``_answered``): network errors,
timeouts, 408 and 5xx are ``VendorUnavailable``; 429 is ``RateLimited`` with
the Retry-After; a 403 or 413 that mentions the quota is ``RateLimited`` until
the daily quota resets at 00:00 UTC; 401 and any other 403 (app disabled) are
``AuthenticationFailed``; the rest (400, 404, 413) is ``PublishRejected`` with
Pusher's words. No message carries the secret or the request's signature.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self
from urllib.parse import unquote, urlsplit

import httpx

from .. import __version__
from ..errors import (
    AuthenticationFailed,
    ConfigurationError,
    PayloadTooLarge,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from ..events import Event, validate_channel
from ..settings import redact_url
from ..webhooks import WebhookEvent
from . import pusher_auth
from ._query import QueryOptions
from .base import Adapter, Capability, Limits, Member, Occupancy, PublishResult

__all__ = ["PusherAdapter"]

#: Pusher's limits on multi-tenant clusters (reference/vendors.md §1).
MAX_DATA_BYTES = 10240
MAX_BATCH = 10
MAX_CHANNELS = 100
ENCRYPTED_PREFIX = "private-encrypted-"
PRESENCE_PREFIX = "presence-"

_OPTIONS = {"cluster", "tls", "timeout", "encryption_master_key", "batch_size"}
_APP_ID = re.compile(r"[0-9]+")
_SOCKET_ID = re.compile(r"[0-9]+\.[0-9]+")
_USER_ID = re.compile(r"[-a-zA-Z0-9_=@,.;]{1,200}")  # the SDK's rule
_SIGNATURE = re.compile(r"auth_signature=[0-9a-fA-F]*")
_MASTER_KEY = re.compile(r"(encryption_master_key=)[^&#]*")
_DETAIL_LIMIT = 300
_DAY = 86400.0


# -- pure helpers: request bodies, query strings, error text -------------------------------


def _json_body(payload: Mapping[str, Any]) -> bytes:
    """JSON exactly as the SDK writes it (``json.dumps`` defaults), so signatures match."""
    return json.dumps(payload).encode("utf-8")


def _query_string(query: Mapping[str, str]) -> str:
    """Sorted ``key=value`` pairs, unescaped, as signed: every value here is URL-safe."""
    return "&".join(f"{name}={query[name]}" for name in sorted(query))


def _shown(url: str) -> str:
    """``url`` fit for a message: secret and encryption master key masked."""
    return _MASTER_KEY.sub(r"\1***", redact_url(url))


def _scrub(text: str, hidden: Sequence[str]) -> str:
    """``text`` without any signature or other value in ``hidden``, clipped to one line."""
    text = _SIGNATURE.sub("auth_signature=***", text)
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT] + "..."


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None if absent or garbled."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _until_midnight_utc(now: float) -> float:
    """Seconds until Pusher's daily message quota resets (Unix time has no leap seconds)."""
    return _DAY - now % _DAY


def _answered(response: httpx.Response) -> tuple[int, str]:
    """The status and error text Pusher answered with.

    soketi (the Pusher-protocol server tests and self-hosters run) writes its
    errors as ``{"error": ..., "code": 4xx}`` under an HTTP 200 status line, so a
    2xx whose body is exactly such an error counts as that error. Pusher's own
    2xx bodies (``{}``, ``{"channels": ...}``, ``{"users": ...}``) never are.
    """
    status = response.status_code
    if status // 100 != 2 or b'"error"' not in response.content[:200]:
        return status, response.text
    try:
        body = json.loads(response.content)
    except ValueError:
        return status, response.text
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, int) and code >= 400 and isinstance(body.get("error"), str):
        return code, body["error"]
    return status, response.text


def _status_error(
    status: int,
    text: str,
    retry_after: str | None,
    *,
    what: str,
    adapter: str,
    now: float,
    hidden: Sequence[str],
) -> RealtimeBridgeError:
    """The library's error for an error status; transient only where waiting can help."""
    detail = _scrub(text, hidden)
    message = f"{what} answered {status}" + (f": {detail}" if detail else "")
    if status == 429:
        wait = _retry_after(retry_after, now)
        return RateLimited(message, adapter=adapter, retry_after=wait)
    if status in (403, 413) and "quota" in detail.lower():
        # Over the daily message quota: nothing gets through before it resets, and
        # everything will after, so the events wait (a permanent error would dead-letter).
        message += "; the daily message quota resets at 00:00 UTC"
        return RateLimited(message, adapter=adapter, retry_after=_until_midnight_utc(now))
    if status == 408 or status >= 500:
        return VendorUnavailable(message, adapter=adapter)
    if status == 401:
        hint = "check the key and secret, and that this clock is within 600 s of real time"
        return AuthenticationFailed(f"{message} ({hint})", adapter=adapter)
    if status == 403:
        hint = "the app is disabled, or this key may not do this"
        return AuthenticationFailed(f"{message} ({hint})", adapter=adapter)
    return PublishRejected(message, adapter=adapter)


def _json(response: httpx.Response, what: str, adapter: str) -> dict[str, Any]:
    """The JSON object Pusher answered with; anything else means a broken server or proxy."""
    try:
        body = response.json()
    except ValueError as exc:
        raise VendorUnavailable(
            f"{what} answered with a body that is not JSON", adapter=adapter
        ) from exc
    if not isinstance(body, dict):
        raise VendorUnavailable(f"{what} answered with JSON that is not an object", adapter=adapter)
    return body


def _count(body: Mapping[str, Any], field: str) -> int | None:
    """A count Pusher reported; 0 for an unoccupied channel; None where Pusher did not say."""
    value = body.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0 if body.get("occupied") is False else None


class PusherAdapter(Adapter):
    """Publish, presence, occupancy, client auth and webhooks on Pusher Channels.

    There is no history (the Bridge reads it from the outbox) and no idempotent
    publish (Pusher has no message ids; clients deduplicate by the envelope's ``id``).
    """

    scheme = "pusher"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PUBLISH,
            Capability.BATCH,
            Capability.PRESENCE,
            Capability.OCCUPANCY,
            Capability.CLIENT_AUTH,
            Capability.WEBHOOKS,
        }
    )

    def __init__(
        self,
        *,
        app_id: str,
        key: str,
        secret: str,
        host: str | None = None,
        cluster: str | None = None,
        port: int | None = None,
        tls: bool = True,
        timeout: float = 5.0,
        encryption_master_key: str | None = None,
        batch_size: int = MAX_BATCH,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Check the configuration now; the HTTP client is made on first use.

        ``transport`` replaces httpx's network transport (tests pass an
        ``httpx.MockTransport``); ``clock`` gives Unix time, for the signature's
        timestamp and for turning Retry-After dates and the quota reset into seconds.
        """
        app_id = str(app_id)
        _require(key, "the app key (the user part of pusher://KEY:SECRET@HOST/APP_ID)")
        _require(secret, "the app secret (the password part of pusher://KEY:SECRET@HOST/APP_ID)")
        _require(app_id, "the app id (the path of pusher://KEY:SECRET@HOST/APP_ID)")
        if not _APP_ID.fullmatch(app_id):
            raise ConfigurationError(f"the Pusher app id must be numeric, got {app_id!r}")
        host = _host(host, cluster)
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigurationError(
                f"option 'batch_size' must be 1 to {MAX_BATCH} (Pusher's limit), got {batch_size}"
            )
        if not timeout > 0:
            raise ConfigurationError(f"option 'timeout' must be positive, got {timeout!r}")
        self._app_id, self._key, self._secret = app_id, key, secret
        self._master_key = _master_key(encryption_master_key)
        self._port = port or (443 if tls else 80)
        self._timeout = timeout
        self._transport = transport
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        bracketed = f"[{host}]" if ":" in host else host
        self._base_url = f"{'https' if tls else 'http'}://{bracketed}:{self._port}"
        shown_port = "" if port is None or port == (443 if tls else 80) else f":{port}"
        query = "" if tls else "?tls=false"
        # redact_url's form, built without the secret ever being in the string.
        self._label = f"pusher://{key}:***@{bracketed}{shown_port}/{app_id}{query}"
        self.limits = Limits(
            max_payload_bytes=MAX_DATA_BYTES,
            max_events_per_batch=batch_size,
            max_channels_per_publish=MAX_CHANNELS,
            payload_measure="Pusher data (the JSON envelope, UTF-8)",
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``pusher://KEY:SECRET@HOST[:PORT]/APP_ID``; keyword options win."""
        parts = urlsplit(url)
        shown = _shown(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad Pusher URL {shown!r}: the port is not a number") from exc
        try:
            query = QueryOptions(parts.query, adapter="pusher", known=_OPTIONS)
            options.setdefault("app_id", parts.path.strip("/").removeprefix("apps/"))
            options.setdefault("key", unquote(parts.username or ""))
            options.setdefault("secret", unquote(parts.password or ""))
            options.setdefault("host", parts.hostname)
            options.setdefault("port", port)
            options.setdefault("cluster", query.text("cluster", "") or None)
            options.setdefault("tls", query.flag("tls", True))
            options.setdefault("timeout", query.number("timeout", 5.0))
            options.setdefault("batch_size", query.integer("batch_size", MAX_BATCH))
            master_key = query.text("encryption_master_key", "") or None
            options.setdefault("encryption_master_key", master_key)
            return cls(**options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"bad Pusher URL {shown!r}: {exc}") from exc

    @property
    def name(self) -> str:
        return self._label

    # -- what is sent ------------------------------------------------------------------

    def _wire_data(self, event: Event, channel: str) -> str:
        """The Pusher ``data`` string of ``event`` on ``channel``: the envelope, maybe encrypted."""
        envelope = event.encode()
        if not channel.startswith(ENCRYPTED_PREFIX):
            return envelope.decode("utf-8")
        if self._master_key is None:
            raise ConfigurationError(
                f"channel {channel!r} is end-to-end encrypted: set ?encryption_master_key= "
                "(base64 of 32 bytes) on the pusher:// URL to publish there",
                adapter=self.name,
            )
        return pusher_auth.encrypt_payload(channel, envelope, self._master_key)

    def payload_size(self, event: Event) -> int:
        """UTF-8 bytes of exactly the ``data`` string sent, after encryption if any."""
        if not event.channel.startswith(ENCRYPTED_PREFIX):
            return len(event.encode())  # the envelope is UTF-8 JSON: no decode needed
        return len(self._wire_data(event, event.channel).encode("utf-8"))

    def _checked_data(self, event: Event, channel: str) -> str:
        data = self._wire_data(event, channel)
        size = len(data.encode("utf-8"))
        if size > self.limits.max_payload_bytes:
            raise PayloadTooLarge(
                adapter=self.name,
                event_id=event.id,
                size=size,
                limit=self.limits.max_payload_bytes,
                measure=self.limits.payload_measure,
            )
        return data

    # -- publishing --------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """One event per ``/events`` call, or up to ``batch_size`` per ``/batch_events`` call.

        Every event is checked (size, encryption key) before anything is sent.
        The Bridge calls with at most ``limits.max_events_per_batch`` events, one
        request that Pusher takes or refuses whole, so its progress count is exact.
        Called with more, chunks go in order and the first failure stops the rest;
        a note on the raised error says how many events Pusher had acknowledged.
        """
        if not events:
            return PublishResult(published=0)
        items = [
            {
                "name": event.type,
                "channel": event.channel,
                "data": self._checked_data(event, event.channel),
            }
            for event in events
        ]
        if len(items) == 1:
            only = items[0]
            await self._trigger([only["channel"]], only["name"], only["data"], None)
            return PublishResult(published=1)
        sent = 0
        size = self.limits.max_events_per_batch
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            try:
                await self._send(
                    "POST", self._path("batch_events"), body=_json_body({"batch": chunk})
                )
            except RealtimeBridgeError as exc:
                if sent:
                    exc.add_note(
                        f"{sent} of {len(items)} events were acknowledged by Pusher before this "
                        "failure; sending them again delivers them twice"
                    )
                raise
            sent += len(chunk)
        return PublishResult(published=sent)

    async def trigger(
        self, channels: Sequence[str], event: Event, *, socket_id: str | None = None
    ) -> PublishResult:
        """Publish ``event`` to up to 100 ``channels`` in one call (``event.channel`` aside).

        ``socket_id`` (the browser's ``pusher.connection.socket_id``) excludes that
        connection: the client that caused the change does not get its own echo.
        """
        given = [channels] if isinstance(channels, str) else list(channels)
        names = [validate_channel(name) for name in given]
        if not 1 <= len(names) <= MAX_CHANNELS:
            raise ValueError(f"Pusher triggers to 1 to {MAX_CHANNELS} channels, got {len(names)}")
        if len(names) > 1 and any(name.startswith(ENCRYPTED_PREFIX) for name in names):
            raise ValueError(
                "an encrypted channel must be triggered alone: its data is encrypted with a "
                "key derived from that one channel's name"
            )
        if socket_id is not None and not _SOCKET_ID.fullmatch(socket_id):
            raise ValueError(f"socket_id must look like '123.456', got {socket_id!r}")
        data = self._checked_data(event, names[0])
        await self._trigger(names, event.type, data, socket_id)
        return PublishResult(published=1)

    async def _trigger(
        self, channels: list[str], name: str, data: str, socket_id: str | None
    ) -> None:
        body: dict[str, Any] = {"name": name, "channels": channels, "data": data}
        if socket_id is not None:
            body["socket_id"] = socket_id
        await self._send("POST", self._path("events"), body=_json_body(body))

    # -- reading -----------------------------------------------------------------------

    async def presence(self, channel: str) -> list[Member]:
        """Members of a ``presence-`` channel, ids only (Pusher's REST API gives no user info).

        Any other channel raises ``ValueError`` before any I/O: Pusher keeps
        members only on ``presence-`` channels (and answers 400 for the rest).
        """
        validate_channel(channel)
        if not channel.startswith(PRESENCE_PREFIX):
            raise ValueError(
                f"Pusher lists members only on presence- channels; {channel!r} is not one"
            )
        what = f"GET {self._path('channels', channel, 'users')}"
        response = await self._send("GET", self._path("channels", channel, "users"))
        users = _json(response, what, self.name).get("users")
        if not isinstance(users, list):
            raise VendorUnavailable(f"{what} answered without a users list", adapter=self.name)
        members = [
            Member(id=str(user["id"])) for user in users if isinstance(user, dict) and "id" in user
        ]
        return sorted(members, key=lambda member: member.id)

    async def occupancy(self, channel: str) -> Occupancy:
        """Members (``user_count``) of a presence channel, else ``subscription_count``.

        Pusher answers only one of the two per kind of channel, and
        ``subscription_count`` only once enabled in the app's dashboard (``None``
        until then). Only presence channels have members: elsewhere it is 0, and
        both are 0 on an unoccupied channel.
        """
        validate_channel(channel)
        path = self._path("channels", channel)
        if channel.startswith(PRESENCE_PREFIX):
            response = await self._send("GET", path, {"info": "user_count"})
            body = _json(response, f"GET {path}", self.name)
            unoccupied = 0 if body.get("occupied") is False else None
            return Occupancy(channel, subscribers=unoccupied, members=_count(body, "user_count"))
        response = await self._send("GET", path, {"info": "subscription_count"})
        body = _json(response, f"GET {path}", self.name)
        return Occupancy(channel, subscribers=_count(body, "subscription_count"), members=0)

    async def terminate_user_connections(self, user_id: str) -> None:
        """Disconnect every connection of a signed-in user (after a ban or a password change)."""
        if not _USER_ID.fullmatch(user_id):
            raise ValueError(
                f"a Pusher user id is 1 to 200 of A-Z a-z 0-9 _ - = @ , . ;, got {user_id!r}"
            )
        await self._send("POST", self._path("users", user_id, "terminate_connections"), body=b"{}")

    async def ping(self) -> None:
        """A signed ``GET /apps/{id}/channels``: checks the network, key, secret and clock."""
        await self._send("GET", self._path("channels"))

    # -- browsers and webhooks (pure computation) --------------------------------------

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """The body pusher-js expects from the auth endpoint; ``channel=None`` signs a user in."""
        if socket_id is None:
            raise ValueError("Pusher authorisation needs the socket_id the browser sent")
        if channel is None:
            if user is None:
                raise ValueError("signing a user in (channel=None) needs the user")
            return pusher_auth.authenticate_user(
                socket_id, user, key=self._key, secret=self._secret
            )
        return pusher_auth.authorize_channel(
            channel,
            socket_id,
            user=user,
            key=self._key,
            secret=self._secret,
            encryption_master_key=self._master_key,
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Check ``X-Pusher-Key`` and ``X-Pusher-Signature``, then normalise the events."""
        return pusher_auth.verify_webhook(
            headers, body, key=self._key, secret=self._secret, now=self._clock()
        )

    # -- HTTP --------------------------------------------------------------------------

    def _path(self, *segments: str) -> str:
        return "/".join(("", "apps", self._app_id, *segments))

    def _client(self) -> httpx.AsyncClient:
        """The one pooled client, made on first use (and again after ``aclose``)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout,
                transport=self._transport,
                headers={"X-Pusher-Library": f"realtime-bridge {__version__}"},
            )
        return self._http

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None = None, body: bytes = b""
    ) -> httpx.Response:
        """One signed request; any failure leaves here as the library's error."""
        query = pusher_auth.sign_query(
            method,
            path,
            params or {},
            body,
            key=self._key,
            secret=self._secret,
            timestamp=round(self._clock()),
        )
        what = f"{method} {path}"
        hidden = (query["auth_signature"], self._secret)
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        try:
            response = await self._client().request(
                method, f"{path}?{_query_string(query)}", content=body or None, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise VendorUnavailable(
                f"{what} timed out after {self._timeout:g}s ({type(exc).__name__})",
                adapter=self.name,
            ) from exc
        except httpx.HTTPError as exc:
            detail = _scrub(str(exc), hidden)
            raise VendorUnavailable(
                f"{what} failed: {type(exc).__name__}: {detail}", adapter=self.name
            ) from exc
        status, text = _answered(response)
        if status // 100 == 2:
            return response
        raise _status_error(
            status,
            text,
            response.headers.get("Retry-After"),
            what=what,
            adapter=self.name,
            now=self._clock(),
            hidden=hidden,
        )

    async def aclose(self) -> None:
        """Close the pooled client; safe to call twice, and before any request."""
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()


def _require(value: str, what: str) -> None:
    if not value:
        raise ConfigurationError(f"missing {what}")


def _host(host: str | None, cluster: str | None) -> str:
    """The API host: given, or ``api-{cluster}.pusher.com``; they must agree if both are given."""
    if cluster is not None and not re.fullmatch(r"[a-z0-9-]+", cluster):
        raise ConfigurationError(
            f"option 'cluster' must be a cluster name such as 'eu', got {cluster!r}"
        )
    derived = f"api-{cluster}.pusher.com" if cluster else None
    if host and derived and host != derived:
        raise ConfigurationError(
            f"host {host!r} and cluster {cluster!r} disagree: give one, or host {derived!r}"
        )
    chosen = host or derived
    if not chosen:
        raise ConfigurationError("missing the host: give HOST in the URL or ?cluster= (e.g. eu)")
    return chosen


def _master_key(encoded: str | None) -> bytes | None:
    """The 32-byte encryption master key from its base64 form (never echoed in errors)."""
    if encoded is None:
        return None
    try:
        return pusher_auth.parse_master_key(encoded)
    except (ValueError, ConfigurationError) as exc:
        raise ConfigurationError(
            "option 'encryption_master_key' must be base64 of exactly 32 bytes"
        ) from exc
