"""Pusher's signatures: REST requests, browser authorisation, sign-in and webhooks.

Everything here is a pure function of the app's key and secret, so it is
tested against Pusher's published vectors and against the ``pusher`` SDK's
output, byte for byte, without a network. JSON that goes into a signature is
serialised as the Python SDK does (``json.dumps`` defaults: ``", "`` and
``": "`` separators, non-ASCII escaped); Pusher only checks that the signed
string is the one the browser sends back, so any stable serialisation works,
and the SDK's keeps an endpoint's output identical when an app switches to us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigurationError, InvalidWebhook
from ..events import channel_kind, validate_channel
from ..webhooks import WebhookEvent, WebhookKind, header, strict_json
from .base import Member

__all__ = [
    "authenticate_user",
    "authorize_channel",
    "encrypt_payload",
    "parse_master_key",
    "sign_query",
    "verify_webhook",
]

AUTH_VERSION = "1.0"
ENCRYPTED_PREFIX = "private-encrypted-"
MASTER_KEY_BYTES = 32
#: Presence limits from Pusher's presence-channel docs: user id length, user info size.
MAX_PRESENCE_USER_ID = 128
MAX_USER_INFO_BYTES = 1024
#: Sign-in user ids: the docs give the character set, the SDK the length.
MAX_SIGNIN_USER_ID = 200
WEBHOOK_MAX_AGE = 300.0

_SOCKET_ID_RE = re.compile(r"[0-9]+\.[0-9]+")
_USER_ID_RE = re.compile(r"[A-Za-z0-9_\-=@,.;]+")
_ADAPTER = "pusher"
_WEBHOOK_KINDS = {
    "channel_occupied": WebhookKind.CHANNEL_OCCUPIED,
    "channel_vacated": WebhookKind.CHANNEL_VACATED,
    "member_added": WebhookKind.MEMBER_ADDED,
    "member_removed": WebhookKind.MEMBER_REMOVED,
    "client_event": WebhookKind.CLIENT_EVENT,
}


def _hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign_query(
    method: str,
    path: str,
    params: Mapping[str, str],
    body: bytes,
    *,
    key: str,
    secret: str,
    timestamp: int,
) -> dict[str, str]:
    """The query parameters of a signed Pusher REST request (``params`` plus auth ones).

    Pusher signs ``METHOD\\nPATH\\nsorted query``, keys lowercased and values
    left unescaped; ``body_md5`` is always included (the MD5 of an empty body
    on GET), as the official SDK does.
    """
    query = {k.lower(): v for k, v in params.items()}
    query.update(
        auth_key=key,
        auth_timestamp=str(timestamp),
        auth_version=AUTH_VERSION,
        body_md5=hashlib.md5(body).hexdigest(),
    )
    canonical = "&".join(f"{k}={query[k]}" for k in sorted(query))
    query["auth_signature"] = _hmac_hex(secret, f"{method.upper()}\n{path}\n{canonical}")
    return query


# --- browser authorisation and sign-in ---------------------------------------------------


def authorize_channel(
    channel: str,
    socket_id: str,
    *,
    key: str,
    secret: str,
    user: Member | None = None,
    encryption_master_key: bytes | None = None,
) -> dict[str, str]:
    """The body a browser needs to subscribe ``socket_id`` to a private or presence channel.

    Pusher only admits a browser to ``private-`` and ``presence-`` channels with
    ``key:hmac`` of ``socket_id:channel`` (plus ``:channel_data`` on presence,
    so the member's identity cannot be forged). ``private-encrypted-`` channels
    also get the per-channel key, derived from ``encryption_master_key``, which
    the browser needs to decrypt. ``user`` is required on presence channels and
    ignored elsewhere, so one endpoint can pass it for every channel.
    """
    kind = _authorisable_kind(channel)
    _check_socket_id(socket_id)
    if kind == "presence":
        return _presence_auth(channel, socket_id, user, key=key, secret=secret)
    body = {"auth": _auth(key, secret, f"{socket_id}:{channel}")}
    if channel.startswith(ENCRYPTED_PREFIX):
        body["shared_secret"] = _b64(_channel_key(channel, encryption_master_key))
    return body


def authenticate_user(
    socket_id: str,
    user: Member,
    *,
    key: str,
    secret: str,
    watchlist: Sequence[str] = (),
) -> dict[str, str]:
    """The body a browser's ``pusher.signin()`` needs: who is on this connection.

    Pusher signs ``socket_id::user::user_data``; ``user_data`` is JSON with the
    ``id`` and, when given, ``user_info`` (shown to presence members) and
    ``watchlist`` (user ids whose online status this user is told about), the
    shape Pusher's user-authentication docs describe.
    """
    _check_socket_id(socket_id)
    _check_user_id(user.id, limit=MAX_SIGNIN_USER_ID, charset=True)
    if isinstance(watchlist, str):
        raise ValueError("watchlist must be a sequence of user ids, not one string")
    data: dict[str, Any] = {"id": user.id}
    if user.info:
        data["user_info"] = user.info
    if watchlist:
        data["watchlist"] = list(watchlist)
    user_data = _json(data, "user info")
    return {"auth": _auth(key, secret, f"{socket_id}::user::{user_data}"), "user_data": user_data}


def _auth(key: str, secret: str, string_to_sign: str) -> str:
    return f"{key}:{_hmac_hex(secret, string_to_sign)}"


def _authorisable_kind(channel: str) -> str:
    """``"private"`` or ``"presence"``; a public channel is a caller's mistake."""
    kind = channel_kind(validate_channel(channel))
    if kind == "public":
        raise ValueError(
            f"channel {channel!r} is public: public channels need no authorisation "
            "(only private-, private-encrypted- and presence- channels do)"
        )
    return kind


def _check_socket_id(socket_id: str) -> None:
    """Pusher's socket ids are ``digits.digits``; anything else would let a colon into the
    signed string."""
    if not isinstance(socket_id, str) or not _SOCKET_ID_RE.fullmatch(socket_id):
        raise ValueError(f"socket_id {socket_id!r} is not a Pusher socket id (digits.digits)")


def _check_user_id(user_id: str, *, limit: int, charset: bool) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user id must be a non-empty string, got {user_id!r}")
    if len(user_id) > limit:
        raise ValueError(f"user id is {len(user_id)} characters, over Pusher's limit of {limit}")
    if charset and not _USER_ID_RE.fullmatch(user_id):
        raise ValueError(
            f"user id {user_id!r} has characters Pusher does not accept "
            "(only A-Z a-z 0-9 _ - = @ , . ;)"
        )


def _presence_auth(
    channel: str, socket_id: str, user: Member | None, *, key: str, secret: str
) -> dict[str, str]:
    """Presence adds the member (``channel_data``) to the signed string."""
    if user is None:
        raise ValueError(f"presence channel {channel!r} needs a user: pass user=Member(id, info)")
    _check_user_id(user.id, limit=MAX_PRESENCE_USER_ID, charset=False)
    data: dict[str, Any] = {"user_id": user.id}
    if user.info:
        info = _json(user.info, "user info")
        size = len(info.encode())
        if size > MAX_USER_INFO_BYTES:
            raise ValueError(
                f"user info is {size} bytes of JSON, over Pusher's presence limit of "
                f"{MAX_USER_INFO_BYTES} bytes (1 KB)"
            )
        data["user_info"] = user.info
    channel_data = _json(data, "user info")
    return {
        "auth": _auth(key, secret, f"{socket_id}:{channel}:{channel_data}"),
        "channel_data": channel_data,
    }


def _json(value: Any, what: str) -> str:
    """The SDK's serialisation, minus NaN and Infinity, which are not JSON."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from exc


# --- end-to-end encrypted channels -------------------------------------------------------


def parse_master_key(encoded: str) -> bytes:
    """The 32-byte master key from its base64 form, the way Pusher's dashboard shows it.

    Errors never include the key, since they end up in logs.
    """
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(
            "encryption_master_key_base64 is not valid base64", adapter=_ADAPTER
        ) from exc
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigurationError(
            f"encryption_master_key_base64 must decode to {MASTER_KEY_BYTES} bytes, got {len(key)}",
            adapter=_ADAPTER,
        )
    return key


def encrypt_payload(channel: str, data: bytes, master_key: bytes) -> str:
    """The ``data`` to publish on a ``private-encrypted-`` channel, sealed for its subscribers.

    Pusher relays these payloads without being able to read them: the JSON
    ``{"nonce", "ciphertext"}`` (base64) of a NaCl secretbox under the channel's
    key, which only browsers authorised by ``authorize_channel`` receive.
    """
    if not channel.startswith(ENCRYPTED_PREFIX):
        raise ValueError(f"channel {channel!r} is not encrypted (no {ENCRYPTED_PREFIX} prefix)")
    nonce, ciphertext = _seal(_channel_key(channel, master_key), data)
    sealed = {"nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    return json.dumps(sealed, ensure_ascii=False)


def _channel_key(channel: str, master_key: bytes | None) -> bytes:
    """Pusher's per-channel key: sha256(channel name + master key)."""
    if master_key is None:
        raise ConfigurationError(
            f"{ENCRYPTED_PREFIX} channels need encryption_master_key "
            "(32 bytes; parse_master_key() reads the base64 form)",
            adapter=_ADAPTER,
        )
    if len(master_key) != MASTER_KEY_BYTES:
        raise ConfigurationError(
            f"encryption_master_key must be {MASTER_KEY_BYTES} bytes, got {len(master_key)}",
            adapter=_ADAPTER,
        )
    return hashlib.sha256(channel.encode() + master_key).digest()


def _seal(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    """NaCl secretbox with a random nonce; PyNaCl is imported only by those who encrypt."""
    try:
        import nacl.secret
        import nacl.utils
    except ImportError as exc:
        raise ConfigurationError(
            "encrypted channels need PyNaCl: install realtime-bridge[pusher]", adapter=_ADAPTER
        ) from exc
    box = nacl.secret.SecretBox(key)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    return nonce, box.encrypt(data, nonce).ciphertext


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- webhooks ----------------------------------------------------------------------------


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    key: str,
    secret: str,
    now: float | None = None,
    max_age: float = WEBHOOK_MAX_AGE,
) -> list[WebhookEvent]:
    """Check a Pusher webhook and return its events, normalised.

    Anyone can POST to a webhook URL, so the key header, the HMAC of the raw
    body and the age of ``time_ms`` (against replays) are checked before the
    body is trusted. Failures raise ``InvalidWebhook`` saying which check
    failed, never with the secret or the expected signature.
    """
    _check_webhook_signature(headers, body, key=key, secret=secret)
    time_ms, entries = _parse_webhook(body)
    _check_webhook_age(time_ms, time.time() if now is None else now, max_age)
    at = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return [_webhook_event(entry, at) for entry in entries]


def _check_webhook_signature(
    headers: Mapping[str, str], body: bytes, *, key: str, secret: str
) -> None:
    sent_key = header(headers, "X-Pusher-Key")
    if sent_key is None:
        raise InvalidWebhook("missing X-Pusher-Key header", adapter=_ADAPTER)
    if sent_key != key:
        raise InvalidWebhook("X-Pusher-Key is not this app's key", adapter=_ADAPTER)
    signature = header(headers, "X-Pusher-Signature")
    if signature is None:
        raise InvalidWebhook("missing X-Pusher-Signature header", adapter=_ADAPTER)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.encode(errors="replace"), expected.encode()):
        raise InvalidWebhook(
            "X-Pusher-Signature does not match the body (HMAC-SHA256 with the app secret)",
            adapter=_ADAPTER,
        )


def _parse_webhook(body: bytes) -> tuple[float, list[Any]]:
    """``time_ms`` and ``events`` of a signed body; Pusher always sends both."""
    try:
        payload = strict_json(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidWebhook("body is not valid JSON", adapter=_ADAPTER) from exc
    if not isinstance(payload, dict):
        raise InvalidWebhook("body is not a JSON object", adapter=_ADAPTER)
    time_ms = payload.get("time_ms")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int | float):
        raise InvalidWebhook("body has no numeric time_ms", adapter=_ADAPTER)
    if not math.isfinite(time_ms):  # 1e999 parses as inf
        raise InvalidWebhook("body has no numeric time_ms", adapter=_ADAPTER)
    entries = payload.get("events")
    if not isinstance(entries, list):
        raise InvalidWebhook("body has no events list", adapter=_ADAPTER)
    return float(time_ms), entries


def _check_webhook_age(time_ms: float, now: float, max_age: float) -> None:
    """A replayed webhook still has a valid signature; its ``time_ms`` gives it away."""
    age = now - time_ms / 1000
    if abs(age) <= max_age:
        return
    when = f"{age:.0f}s old" if age > 0 else f"{-age:.0f}s in the future"
    raise InvalidWebhook(
        f"time_ms is {when}; at most {max_age:g}s either way is accepted", adapter=_ADAPTER
    )


def _webhook_event(entry: Any, at: datetime) -> WebhookEvent:
    """One entry of ``events`` in the library's words; unknown kinds keep their name."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidWebhook("an events entry is not an object with a name", adapter=_ADAPTER)
    name = entry["name"]
    kind = _WEBHOOK_KINDS.get(name, WebhookKind.OTHER)
    channel = entry.get("channel")
    if not isinstance(channel, str):
        if kind is not WebhookKind.OTHER:
            raise InvalidWebhook(f"a {name} entry has no channel", adapter=_ADAPTER)
        channel = ""
    client = kind is WebhookKind.CLIENT_EVENT
    return WebhookEvent(
        kind=kind,
        channel=channel,
        at=at,
        vendor=_ADAPTER,
        name=name,
        user_id=_text(entry.get("user_id")),
        event=_text(entry.get("event")) if client else None,
        data=_client_data(entry.get("data")) if client else None,
        socket_id=_text(entry.get("socket_id")) if client else None,
        raw=entry,
    )


def _text(value: Any) -> str | None:
    """Ids as strings: presence user ids may have been given as numbers."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _client_data(data: Any) -> Any:
    """Client events carry their payload as a string, usually JSON: decode it when it is."""
    if not isinstance(data, str):
        return data
    try:
        return strict_json(data)
    except (ValueError, RecursionError):
        return data
