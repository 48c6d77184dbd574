"""Ably's signatures: browser tokens (signed TokenRequests and Ably JWTs) and webhooks.

Everything here is a pure function of the API key, so it is tested against a
fixed vector, against the ``ably`` SDK's own signer and against PyJWT, without
a network. Ably API keys are ``appId.keyId:secret``; the part before the colon
(the *key name*) is public and travels in requests, the secret only ever keys
an HMAC and never appears in an error message.

Capabilities are serialised the way Ably's token-request spec describes and
ably-js produces (compact JSON, resources and operations sorted), not with the
Python SDK's ``json.dumps`` defaults (which add spaces): Ably checks the MAC
over the capability string exactly as sent, so both are accepted, and the
compact form is the one the spec calls canonical.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigurationError, InvalidWebhook
from ..events import validate_channel
from ..webhooks import WebhookEvent, WebhookKind, header, strict_json

__all__ = [
    "OPERATIONS",
    "ably_jwt",
    "canonical_capability",
    "capability_for",
    "parse_key",
    "token_request",
    "verify_webhook",
]

#: Capability operations from Ably's capabilities docs (auth/capabilities.mdx), plus the
#: ``*`` wildcard. Anything else is a typo Ably would reject when the token is requested.
OPERATIONS = frozenset(
    {
        "*",
        "annotation-publish",
        "annotation-subscribe",
        "channel-metadata",
        "history",
        "message-delete-any",
        "message-delete-own",
        "message-update-any",
        "message-update-own",
        "object-publish",
        "object-subscribe",
        "presence",
        "privileged-headers",
        "publish",
        "push-admin",
        "push-subscribe",
        "stats",
        "subscribe",
    }
)
#: The token-request spec asks for a nonce of at least 16 characters.
MIN_NONCE_LENGTH = 16
DEFAULT_TTL_MS = 3_600_000
DEFAULT_JWT_TTL_S = 3600

_ADAPTER = "ably"
_KEY_NAME_RE = re.compile(r"[^.:\s]+\.[^.:\s]+")
_KEY_SHAPE = "appId.keyId:secret, as Ably's dashboard shows it"
#: Presence actions as Ably numbers them (the SDK's PresenceAction; 0, absent, is internal).
_PRESENCE_ACTIONS = {1: "present", 2: "enter", 3: "leave", 4: "update"}
_PRESENCE_KINDS = {
    "present": WebhookKind.MEMBER_ADDED,
    "enter": WebhookKind.MEMBER_ADDED,
    "leave": WebhookKind.MEMBER_REMOVED,
    "update": WebhookKind.OTHER,
}
_LIFECYCLE_KINDS = {
    "channel.opened": WebhookKind.CHANNEL_OCCUPIED,
    "channel.closed": WebhookKind.CHANNEL_VACATED,
}


# --- keys --------------------------------------------------------------------------------


def parse_key(key: str) -> tuple[str, str]:
    """``(key_name, key_secret)`` from an API key ``appId.keyId:secret``.

    The key name signs nothing and is sent in the clear; the secret only keys
    HMACs. Errors say which part is malformed but echo none of it, since a
    swapped or truncated key would otherwise leak its secret into logs.
    """
    if not isinstance(key, str):
        raise ConfigurationError(f"the API key must be a string: {_KEY_SHAPE}", adapter=_ADAPTER)
    parts = key.strip().split(":")
    if len(parts) != 2:
        raise ConfigurationError(
            f"the API key needs exactly one ':' between key name and secret: {_KEY_SHAPE}",
            adapter=_ADAPTER,
        )
    key_name, key_secret = parts
    _check_key(key_name, key_secret)
    return key_name, key_secret


def _check_key(key_name: str, key_secret: str) -> None:
    """Both halves present and the name shaped ``appId.keyId``, or ``ConfigurationError``."""
    if not isinstance(key_name, str) or not _KEY_NAME_RE.fullmatch(key_name):
        raise ConfigurationError(
            f"the API key's name is not appId.keyId: {_KEY_SHAPE}", adapter=_ADAPTER
        )
    if not isinstance(key_secret, str) or not key_secret:
        raise ConfigurationError(f"the API key's secret is empty: {_KEY_SHAPE}", adapter=_ADAPTER)


# --- capabilities ------------------------------------------------------------------------


def canonical_capability(capability: Mapping[str, Iterable[str]] | str) -> str:
    """The capability as the one string that is signed and sent: compact, sorted JSON.

    Ably's token-request spec: no whitespace, resources and operations in
    forward lexicographic order. Sorting is by UTF-16 code unit, as JavaScript
    (ably-js's ``c14n``) sorts, which is code point order for every name outside
    the astral planes; operations are also deduplicated and checked against
    ``OPERATIONS``, so a typo fails here, not when the browser asks Ably for its token.
    A single operation given as a string counts as a one-item list, as the SDK
    treats it. ``ValueError`` names the bad resource or operation.
    """
    parsed = _parse_capability(capability) if isinstance(capability, str) else capability
    if not isinstance(parsed, Mapping):
        raise ValueError("capability must be a mapping of resource -> operations")
    if not parsed:
        raise ValueError("capability grants nothing: give at least one resource")
    resources = {
        _check_resource(resource): _operations(resource, ops) for resource, ops in parsed.items()
    }
    ordered = {name: resources[name] for name in sorted(resources, key=_utf16)}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


def _parse_capability(text: str) -> Any:
    try:
        return strict_json(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"capability string is not valid JSON: {exc}") from exc


def _check_resource(resource: object) -> str:
    """Resources are channel names or patterns (``*``, ``ns:*``, ``[meta]*``): non-empty text."""
    if not isinstance(resource, str) or not resource:
        raise ValueError(f"capability resource {resource!r} is not a non-empty string")
    _check_utf8(resource, "capability resource")
    return resource


def _operations(resource: str, ops: object) -> list[str]:
    """Sorted, deduplicated, known operations for one resource."""
    if isinstance(ops, str):
        ops = [ops]
    if not isinstance(ops, Iterable) or isinstance(ops, bytes | Mapping):
        raise ValueError(f"operations for {resource!r} must be a list of strings")
    found = set()
    for op in ops:
        if not isinstance(op, str) or op not in OPERATIONS:
            raise ValueError(
                f"unknown capability operation {op!r} for {resource!r}; Ably's are: "
                + ", ".join(sorted(OPERATIONS))
            )
        found.add(op)
    if not found:
        raise ValueError(f"capability resource {resource!r} has no operations")
    return sorted(found)


def _utf16(text: str) -> bytes:
    """Sort key giving JavaScript's string order (UTF-16 code units)."""
    return text.encode("utf-16-be", "surrogatepass")


def capability_for(
    channels: Iterable[str],
    *,
    publish: bool = False,
    presence: bool = True,
    history: bool = True,
) -> dict[str, list[str]]:
    """What a browser user gets on the channels they may use.

    Every channel gets ``subscribe`` (the point of being listed); ``presence``
    (enter, update, leave) and ``history`` (catching up after a reconnect) are
    on by default, ``publish`` is off because this library publishes from the
    server, database-first. Names are checked with the library's portable
    channel rule, so a capability never names a channel no adapter could use.
    """
    if isinstance(channels, str):
        raise ValueError("channels must be an iterable of channel names, not one string")
    flags = {"publish": publish, "presence": presence, "history": history}
    ops = sorted(["subscribe", *(op for op, wanted in flags.items() if wanted)])
    granted = {validate_channel(channel): list(ops) for channel in channels}
    if not granted:
        raise ValueError("no channels given: a capability must name at least one")
    return granted


# --- signed TokenRequests ----------------------------------------------------------------


def token_request(
    key_name: str,
    key_secret: str,
    *,
    capability: Mapping[str, Iterable[str]] | str,
    client_id: str | None = None,
    ttl_ms: int = DEFAULT_TTL_MS,
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A signed TokenRequest: the JSON a browser exchanges for an Ably token, key-free.

    The browser POSTs it to ``/keys/{keyName}/requestToken``; Ably accepts it
    without credentials because ``mac`` proves the key's owner wrote every
    field. Ably refuses it after 2 minutes (``timestamp``) or if the
    ``nonce`` was seen before, so hand out a fresh one per request. The
    ``clientId`` is the identity the browser then has on presence and
    messages; it is omitted when ``None`` (an anonymous client).
    """
    _check_key(key_name, key_secret)
    canonical = canonical_capability(capability)
    _check_client_id(client_id)
    _check_count("ttl_ms", ttl_ms, minimum=1)
    timestamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    _check_count("timestamp_ms", timestamp, minimum=0)
    nonce = secrets.token_hex(16) if nonce is None else nonce
    _check_nonce(nonce)
    request: dict[str, Any] = {"keyName": key_name, "ttl": ttl_ms, "capability": canonical}
    if client_id is not None:
        request["clientId"] = client_id
    request.update(timestamp=timestamp, nonce=nonce)
    request["mac"] = _token_request_mac(key_secret, request)
    return request


def _token_request_mac(key_secret: str, request: Mapping[str, Any]) -> str:
    """base64 HMAC-SHA256 of each field and a newline, empty where absent (the spec's order)."""
    fields = ("keyName", "ttl", "capability", "clientId", "timestamp", "nonce")
    text = "".join(f"{request.get(name, '')}\n" for name in fields)
    digest = hmac.new(key_secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _check_client_id(client_id: str | None) -> None:
    """A client id is the browser's identity, so refuse the values that are not one.

    ``*`` is Ably's wildcard: a token with it may claim any identity, which is
    never what a browser should get. A newline would let the signed string be
    split into different fields.
    """
    if client_id is None:
        return
    if not isinstance(client_id, str) or not client_id:
        raise ValueError(f"client_id must be a non-empty string or None, got {client_id!r}")
    if client_id == "*":
        raise ValueError(
            "client_id '*' lets the holder act as any client; browsers need their own id"
        )
    if "\n" in client_id:
        raise ValueError("client_id must not contain a newline")
    _check_utf8(client_id, "client_id")


def _check_nonce(nonce: str) -> None:
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_LENGTH:
        raise ValueError(f"nonce must be a string of at least {MIN_NONCE_LENGTH} characters")
    if "\n" in nonce:
        raise ValueError("nonce must not contain a newline")
    _check_utf8(nonce, "nonce")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    """Integers only: ``ttl=1.5`` or ``True`` would sign a different decimal than intended."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")


def _check_utf8(text: str, what: str) -> None:
    """Lone surrogates parse from JSON but cannot be signed (or sent) as UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text: {exc.reason}") from exc


# --- Ably JWTs ---------------------------------------------------------------------------


def ably_jwt(
    key_name: str,
    key_secret: str,
    *,
    capability: Mapping[str, Iterable[str]] | str,
    client_id: str | None = None,
    ttl_s: int = DEFAULT_JWT_TTL_S,
    now: float | None = None,
) -> str:
    """An Ably JWT: a token the browser uses directly, with no round trip to Ably.

    HS256 over the key secret, ``kid`` naming the key so Ably knows which
    secret to check it with, and Ably's claims: ``iat``/``exp`` in seconds,
    ``x-ably-capability`` (the canonical string) and ``x-ably-clientId`` when
    the browser has an identity. Unlike a TokenRequest the capability is
    readable by the client, and the whole token must fit in an HTTP header.
    """
    _check_key(key_name, key_secret)
    canonical = canonical_capability(capability)
    _check_client_id(client_id)
    _check_count("ttl_s", ttl_s, minimum=1)
    issued = math.floor(time.time() if now is None else now)
    claims: dict[str, Any] = {"iat": issued, "exp": issued + ttl_s}
    claims["x-ably-capability"] = canonical
    if client_id is not None:
        claims["x-ably-clientId"] = client_id
    head = {"typ": "JWT", "alg": "HS256", "kid": key_name}
    signing_input = f"{_b64url_json(head)}.{_b64url_json(claims)}"
    signature = hmac.new(key_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _b64url_json(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# --- webhooks ----------------------------------------------------------------------------


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_name: str,
    key_secret: str,
    now: float | None = None,
    max_age: float | None = None,
) -> list[WebhookEvent]:
    """Check a batched Ably webhook and return its events, normalised.

    Ably signs batched webhooks only (single-request mode carries no
    signature, so it cannot be verified and is refused): ``X-Ably-Key`` names
    the key and ``X-Ably-Signature`` is the base64 HMAC-SHA256 of the raw body
    under its secret. Ably's docs say the header carries the *keyId*; both
    the bare ``keyId`` and the full ``appId.keyId`` are accepted, since only
    the signature proves anything.

    Ably documents no replay window and signs no delivery time, and it retries
    a failed batch for up to 5 minutes, so by default any age is accepted.
    ``max_age`` (seconds) refuses items whose own ``timestamp`` is further than
    that from ``now``; keep it above 300 s or retried batches will be lost. To
    drop replays within the window, deduplicate on ``raw["serial"]``.

    Failures raise ``InvalidWebhook`` saying which check failed, never with
    the secret or the expected signature.
    """
    _check_key(key_name, key_secret)
    _check_webhook_signature(headers, body, key_name=key_name, key_secret=key_secret)
    items = _parse_webhook(headers, body)
    checked = [(item, _item_time(item)) for item in items]
    if max_age is not None:
        clock = time.time() if now is None else now
        for _, stamp in checked:
            _check_webhook_age(stamp, clock, max_age)
    return [event for item, stamp in checked for event in _item_events(item, _utc(stamp))]


def _check_webhook_signature(
    headers: Mapping[str, str], body: bytes, *, key_name: str, key_secret: str
) -> None:
    sent_key = header(headers, "X-Ably-Key")
    if sent_key is None:
        raise InvalidWebhook(
            "missing X-Ably-Key header (Ably signs batched webhooks only: enable batch "
            "requests and choose a signing key)",
            adapter=_ADAPTER,
        )
    if sent_key not in (key_name, key_name.partition(".")[2]):
        raise InvalidWebhook("X-Ably-Key is not this app's signing key", adapter=_ADAPTER)
    signature = header(headers, "X-Ably-Signature")
    if signature is None:
        raise InvalidWebhook("missing X-Ably-Signature header", adapter=_ADAPTER)
    digest = hmac.new(key_secret.encode(), body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    if not hmac.compare_digest(signature.encode(errors="replace"), expected):
        raise InvalidWebhook(
            "X-Ably-Signature does not match the body (base64 HMAC-SHA256 with the key secret)",
            adapter=_ADAPTER,
        )


def _parse_webhook(headers: Mapping[str, str], body: bytes) -> list[Any]:
    """The ``items`` of a signed batched body; JSON only (msgpack bodies are refused)."""
    if "msgpack" in (header(headers, "Content-Type") or ""):
        raise InvalidWebhook(
            "body is msgpack; configure the webhook to send JSON", adapter=_ADAPTER
        )
    try:
        payload = strict_json(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidWebhook("body is not valid JSON", adapter=_ADAPTER) from exc
    if not isinstance(payload, dict):
        raise InvalidWebhook("body is not a JSON object", adapter=_ADAPTER)
    items = payload.get("items")
    if not isinstance(items, list):
        raise InvalidWebhook(
            "body has no items list (is the webhook in batch mode, enveloped?)", adapter=_ADAPTER
        )
    if not all(isinstance(item, dict) for item in items):
        raise InvalidWebhook("an items entry is not an object", adapter=_ADAPTER)
    return items


def _item_time(item: Mapping[str, Any]) -> float:
    """The item's ``timestamp`` (ms since the epoch), which every batched item carries."""
    stamp = item.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise InvalidWebhook("an item has no numeric timestamp", adapter=_ADAPTER)
    try:
        _utc(stamp)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidWebhook("an item's timestamp is out of range", adapter=_ADAPTER) from exc
    return float(stamp)


def _utc(stamp_ms: float) -> datetime:
    return datetime.fromtimestamp(stamp_ms / 1000, tz=UTC)


def _check_webhook_age(stamp_ms: float, now: float, max_age: float) -> None:
    age = now - stamp_ms / 1000
    if abs(age) <= max_age:
        return
    when = f"{age:.0f}s old" if age > 0 else f"{-age:.0f}s in the future"
    raise InvalidWebhook(
        f"an item's timestamp is {when}; at most {max_age:g}s either way is accepted",
        adapter=_ADAPTER,
    )


def _item_events(item: Mapping[str, Any], at: datetime) -> list[WebhookEvent]:
    """One item in the library's words: one event per message or presence entry."""
    source = item.get("source")
    data = item.get("data")
    if source == "channel.message":
        return [_message_event(m, _channel(item, data), at) for m in _entries(data, "messages")]
    if source == "channel.presence":
        return [_presence_event(p, _channel(item, data), at) for p in _entries(data, "presence")]
    if source == "channel.lifecycle":
        return [_item_event(item, _channel(item, data), at, _LIFECYCLE_KINDS)]
    if source == "channel.occupancy":
        return [_item_event(item, _channel(item, data), at, {})]
    channel = data.get("channelId") if isinstance(data, dict) else None
    return [_item_event(item, channel if isinstance(channel, str) else "", at, {})]


def _channel(item: Mapping[str, Any], data: Any) -> str:
    channel = data.get("channelId") if isinstance(data, dict) else None
    if not isinstance(channel, str):
        raise InvalidWebhook(f"a {item.get('source')} item has no data.channelId", adapter=_ADAPTER)
    return channel


def _entries(data: Any, field: str) -> list[Mapping[str, Any]]:
    """``data.messages`` or ``data.presence``; ``data`` is known to be an object here."""
    entries = data.get(field)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidWebhook(f"an item's data.{field} is not a list of objects", adapter=_ADAPTER)
    return entries


def _item_event(
    item: Mapping[str, Any], channel: str, at: datetime, kinds: Mapping[str, WebhookKind]
) -> WebhookEvent:
    """Lifecycle, occupancy and unknown sources: one event for the item, keeping its name."""
    name = _text(item.get("name")) or _text(item.get("source")) or ""
    return WebhookEvent(
        kind=kinds.get(name, WebhookKind.OTHER),
        channel=channel,
        at=at,
        vendor=_ADAPTER,
        name=name,
        raw=item,
    )


def _message_event(message: Mapping[str, Any], channel: str, at: datetime) -> WebhookEvent:
    return WebhookEvent(
        kind=WebhookKind.MESSAGE,
        channel=channel,
        at=at,
        vendor=_ADAPTER,
        name="channel.message",
        user_id=_text(message.get("clientId")),
        event=_text(message.get("name")),
        data=_decode_data(message.get("data"), message.get("encoding")),
        raw=message,
    )


def _presence_event(entry: Mapping[str, Any], channel: str, at: datetime) -> WebhookEvent:
    """Ably sends the action as a number; ``name`` is its word (``enter``, ``leave``, ...)."""
    action = entry.get("action")
    if isinstance(action, int) and not isinstance(action, bool):
        word = _PRESENCE_ACTIONS.get(action)
    else:
        word = _text(action)
    return WebhookEvent(
        kind=_PRESENCE_KINDS.get(word or "", WebhookKind.OTHER),
        channel=channel,
        at=at,
        vendor=_ADAPTER,
        name=word or "presence.message",
        user_id=_text(entry.get("clientId")),
        data=_decode_data(entry.get("data"), entry.get("encoding")),
        raw=entry,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _decode_data(data: Any, encoding: Any) -> Any:
    """``data`` with its ``encoding`` undone (``json``, ``utf-8``, ``base64``, right to left).

    Ably transmits non-string payloads encoded and says how in ``encoding``.
    When a step cannot be undone here (``cipher+...``: the key is the app's;
    ``vcdiff``; or malformed data) the data is returned exactly as sent, and
    ``raw["encoding"]`` tells the application what to do with it.
    """
    if not isinstance(encoding, str) or not encoding:
        return data
    value = data
    for step in reversed(encoding.split("/")):
        try:
            value = _undo(step, value)
        except (ValueError, TypeError, RecursionError, binascii.Error):
            return data
    return value


def _undo(step: str, value: Any) -> Any:
    if step == "":
        return value
    if step == "base64" and isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if step == "utf-8":
        return value.decode() if isinstance(value, bytes) else value
    if step == "json" and isinstance(value, str | bytes):
        return strict_json(value)
    if step == "json" and isinstance(value, dict | list):
        return value
    raise ValueError(f"cannot undo encoding step {step!r}")
