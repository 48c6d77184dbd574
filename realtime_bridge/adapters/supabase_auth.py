"""Supabase browser auth: user JWTs for private channels, and the RLS policies that read them.

Supabase Realtime has no signed per-channel grant like Pusher's or Ably's: a
browser joins a private channel with a user JWT, and Realtime checks Row Level
Security policies on ``realtime.messages`` as that user. So authorising a
browser here is two pieces that must agree:

- ``user_token`` mints the JWT, HS256 with the project's JWT secret, with the
  claims Supabase Auth itself puts in a user's token (``aud`` and ``role``
  ``authenticated``, ``sub`` the user id, ``iat``, ``exp``; the user's info as
  ``user_metadata``) plus ``{"realtime_bridge": {"topics": [...]}}``, the
  channels the backend authorised;
- ``policies_sql`` gives the policies (shipped as package data,
  ``sql/supabase/realtime_policies.sql``) that grant exactly those topics.

The topics live in the token, not in the policy, because Realtime holds one
access token per browser connection (``setAuth`` applies to every channel):
a browser on several private channels needs one token naming all of them.

Everything here is a pure function of its arguments; the secret only ever keys
an HMAC and never appears in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from ..errors import ConfigurationError
from ..events import validate_channel
from .base import Member

__all__ = [
    "AUDIENCE",
    "CLAIM",
    "MIN_SECRET_LENGTH",
    "encode_hs256",
    "is_jwt",
    "policies_sql",
    "user_token",
]

#: ``aud`` and ``role`` of a signed-in user's token, as Supabase Auth issues them.
AUDIENCE = "authenticated"
#: The claim listing the topics a token grants; the shipped policies read it.
CLAIM = "realtime_bridge"
#: Supabase refuses shorter JWT secrets (self-hosted ``JWT_SECRET``).
MIN_SECRET_LENGTH = 32
DEFAULT_TTL_S = 3600

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BLOCK = re.compile(r"^-- >>> (\w+)\n(.*?)^-- <<< \1\n", re.DOTALL | re.MULTILINE)
_POLICIES = ("sql", "supabase", "realtime_policies.sql")


def is_jwt(value: str) -> bool:
    """Whether ``value`` looks like a JWT (legacy ``anon``/``service_role`` keys, user tokens).

    Supabase's newer ``sb_publishable_``/``sb_secret_`` keys are not JWTs: they
    go in the ``apikey`` header only, and the gateway turns them into one.
    """
    return _JWT.fullmatch(value) is not None


def check_secret(secret: str) -> str:
    """``secret`` if it can sign Supabase JWTs, else a ``ConfigurationError`` (never echoing it)."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"option 'jwt_secret' must be the project's JWT secret, at least "
            f"{MIN_SECRET_LENGTH} characters (got {len(secret)})"
        )
    return secret


def encode_hs256(claims: Mapping[str, Any], secret: str) -> str:
    """A compact JWS, HS256 over ``secret``'s UTF-8 bytes (how Supabase uses its JWT secret)."""
    header = _b64url_json({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{header}.{_b64url_json(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def user_token(
    secret: str,
    *,
    user: Member | None,
    topics: Iterable[str],
    now: float,
    ttl_s: int = DEFAULT_TTL_S,
) -> tuple[str, int]:
    """A user's JWT granting ``topics`` (no ``sub`` without a user), and when it expires.

    Realtime disconnects a browser when its token expires, so the browser asks
    the backend for a new one before ``exp`` and passes it to ``setAuth``. The
    token is a real ``authenticated`` token of the project: it also works on
    its other APIs (PostgREST, Storage) as that user, as a Supabase Auth
    session token would, so give it a short life.
    """
    check_secret(secret)
    if user is not None and not user.id:
        raise ValueError("the user's id (the token's sub) must not be empty")
    if ttl_s < 1:
        raise ValueError(f"ttl_s must be at least 1 second, got {ttl_s}")
    granted = list(dict.fromkeys(validate_channel(topic) for topic in topics))
    if not granted:
        raise ValueError("a Supabase browser token must name at least one channel")
    issued = math.floor(now)
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "role": AUDIENCE,
        "iat": issued,
        "exp": issued + ttl_s,
        CLAIM: {"topics": granted},
    }
    if user is not None:
        claims["sub"] = user.id
        if user.info:
            claims["user_metadata"] = dict(user.info)
    try:
        return encode_hs256(claims, secret), issued + ttl_s
    except (TypeError, ValueError) as exc:
        raise ValueError(f"user.info must be JSON-serialisable: {exc}") from exc


def policies_sql(*, client_broadcast: bool = False) -> str:
    """The RLS policies on ``realtime.messages`` that honour ``user_token``'s topics.

    Receiving (broadcast and the presence list) on every granted channel,
    tracking presence on granted ``presence-`` channels, and, only with
    ``client_broadcast``, sending broadcasts from the browser (off by default:
    events go database first, through the outbox).
    """
    text = resources.files(__package__).joinpath(*_POLICIES).read_text("utf-8")
    keep = {"client_broadcast": client_broadcast}
    return _BLOCK.sub(lambda block: block.group(2) if keep[block.group(1)] else "", text)


def _b64url_json(value: Mapping[str, Any]) -> str:
    return _b64url(
        json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
