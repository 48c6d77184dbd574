"""Gateway tokens: what the backend hands a browser so the gateway lets it in.

A token is a JWT signed with HS256 (HMAC-SHA256 over a secret that the backend
and every gateway process share). Any JWT library can read one, and checking it
needs no database and no shared session: a client can reconnect to any gateway
behind a plain load balancer. The claims are:

- ``aud``: ``realtime-bridge-gateway``, so a token minted with the same secret
  for another service is not accepted here;
- ``iat`` and ``exp``: when the token was issued and when it stops working,
  in Unix seconds. The gateway also ends connections when their token expires,
  so a token the backend would no longer issue cannot stay connected forever;
- ``channels``: exactly the channels the token opens. A token for ``orders.1``
  never opens ``orders.2``, and there are no wildcards;
- ``presence``: whether the holder may enter presence on those channels, as
  ``sub`` (the user id) with ``info``.

``issue_token`` mints a token; ``RedisAdapter.authorize`` calls it through
``grant_token``. ``verify_token`` (used by the gateway) checks a token and
returns its ``Grant``, or raises ``TokenRejected`` with a short ``reason`` and
the HTTP ``status`` (401 for a token that is not good, 403 for one that is good
but does not grant what was asked). Everything here is a pure function of its
arguments. The secret only ever keys an HMAC and never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..adapters.base import Member
from ..errors import AuthenticationFailed, ConfigurationError, InvalidChannel
from ..events import validate_channel

__all__ = [
    "AUDIENCE",
    "DEFAULT_TTL",
    "MIN_SECRET_LENGTH",
    "Grant",
    "TokenRejected",
    "check_secret",
    "grant_token",
    "issue_token",
    "verify_token",
]

AUDIENCE = "realtime-bridge-gateway"
#: Seconds a token works for, unless the adapter URL says otherwise (``gateway_token_ttl``).
DEFAULT_TTL = 3600
#: Bytes of secret, at least: an HMAC-SHA256 key shorter than its output is weaker than it.
MIN_SECRET_LENGTH = 32

_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenRejected(AuthenticationFailed):
    """A gateway token that is missing, malformed, forged, expired, or does not grant this.

    ``reason`` is a short code clients can switch on (``token_expired``,
    ``channel_not_granted``...); ``status`` is 401 when the token itself is no
    good (get a new one) and 403 when it is good but does not allow the request.
    """

    def __init__(self, reason: str, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: its channels, presence as ``user``, until ``expires_at``."""

    channels: frozenset[str]
    presence: bool
    user: Member | None
    expires_at: int

    def check(self, channel: str, *, presence: bool = False) -> None:
        """Raise ``TokenRejected`` (403) unless this grant opens ``channel`` (and presence)."""
        if channel not in self.channels:
            raise TokenRejected(
                "channel_not_granted", f"the token does not grant channel {channel!r}", status=403
            )
        if presence and not (self.presence and self.user is not None):
            raise TokenRejected(
                "presence_not_granted",
                f"the token does not allow entering presence on {channel!r}",
                status=403,
            )


def check_secret(secret: str) -> str:
    """``secret`` if it is long enough to sign tokens, else a ``ConfigurationError``.

    The error gives the length and never the secret itself.
    """
    if len(secret.encode()) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"the gateway secret must be at least {MIN_SECRET_LENGTH} bytes "
            f"(got {len(secret.encode())}); generate one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return secret


def issue_token(
    secret: str,
    *,
    channels: Iterable[str],
    user: Member | None = None,
    now: float,
    ttl: int = DEFAULT_TTL,
) -> str:
    """A token opening ``channels`` for ``ttl`` seconds from ``now``.

    With ``user``, the holder may also enter presence on them as that user.
    """
    check_secret(secret)
    granted = list(dict.fromkeys(validate_channel(channel) for channel in channels))
    if not granted:
        raise ValueError("a gateway token must name at least one channel")
    if ttl < 1:
        raise ValueError(f"a gateway token must live at least 1 second, got ttl={ttl}")
    if user is not None and not user.id:
        raise ValueError("the user's id (the token's sub) must not be empty")
    issued = math.floor(now)
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + ttl,
        "channels": granted,
        "presence": user is not None,
    }
    if user is not None:
        claims["sub"] = user.id
        claims["info"] = user.info
    signing_input = f"{_b64_json(_HEADER)}.{_b64_json(claims)}"
    return f"{signing_input}.{_b64(_sign(secret, signing_input))}"


def grant_token(
    secret: str,
    *,
    channels: Iterable[str],
    user: Member | None,
    now: float,
    ttl: int = DEFAULT_TTL,
) -> dict[str, Any]:
    """The JSON body ``authorize`` returns: the token, when it expires, and what it grants."""
    granted = list(dict.fromkeys(channels))
    token = issue_token(secret, channels=granted, user=user, now=now, ttl=ttl)
    expires_at = math.floor(now) + ttl
    return {
        "token": token,
        "expires_at": expires_at,
        "expires_in": ttl,
        "channels": granted,
        "presence": user is not None,
    }


def verify_token(token: str, secret: str, *, now: float) -> Grant:
    """The ``Grant`` of a token signed with ``secret``; ``TokenRejected`` (401) if it is no good."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected("malformed_token", "the token is not a JWT (header.claims.signature)")
    header, body, signature = parts
    if _json(header, "header").get("alg") != "HS256":
        raise TokenRejected("malformed_token", "the token is not signed with HS256")
    expected = _sign(secret, f"{header}.{body}")
    if not hmac.compare_digest(expected, _unb64(signature, "signature")):
        raise TokenRejected("bad_signature", "the token's signature does not match")
    claims = _json(body, "claims")
    if claims.get("aud") != AUDIENCE:
        raise TokenRejected("wrong_audience", f"the token is not for {AUDIENCE}")
    expires_at = claims.get("exp")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise TokenRejected("malformed_token", "the token has no integer exp claim")
    if now >= expires_at:
        raise TokenRejected("token_expired", f"the token expired at {expires_at} (Unix seconds)")
    return Grant(
        channels=_channels(claims.get("channels")),
        presence=claims.get("presence") is True,
        user=_user(claims),
        expires_at=expires_at,
    )


def _channels(raw: object) -> frozenset[str]:
    if not isinstance(raw, list) or not raw:
        raise TokenRejected("malformed_token", "the token's channels claim is not a list")
    try:
        return frozenset(validate_channel(channel) for channel in raw)
    except InvalidChannel as exc:
        raise TokenRejected("malformed_token", f"the token names a bad channel: {exc}") from None


def _user(claims: dict[str, Any]) -> Member | None:
    sub, info = claims.get("sub"), claims.get("info", {})
    if sub is None:
        return None
    if not isinstance(sub, str) or not sub or not isinstance(info, dict):
        raise TokenRejected("malformed_token", "the token's sub or info claim is malformed")
    return Member(id=sub, info=info)


def _sign(secret: str, signing_input: str) -> bytes:
    return hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64_json(value: object) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _unb64(text: str, part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed_token", f"the token's {part} is not base64url") from None


def _json(text: str, part: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(text, part))
    except (ValueError, UnicodeDecodeError):
        raise TokenRejected("malformed_token", f"the token's {part} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenRejected("malformed_token", f"the token's {part} is not a JSON object")
    return value
