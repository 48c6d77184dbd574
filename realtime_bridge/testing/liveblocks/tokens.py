"""The emulated project's keys, and the browser tokens it signs.

Every REST request carries ``Authorization: Bearer sk_...``: none is 401
``MISSING_SECRET_KEY``, a public key 401 ``WRONG_KEY_USED``, a secret key of
another project 403 ``INVALID_SECRET_KEY`` (Liveblocks' documented answers).

``POST /v2/authorize-user`` and ``POST /v2/identify-user`` answer ``{"token":
...}``. Liveblocks signs its tokens with a key of its own; the emulator signs
HS256 with a secret of its own (``signing_secret``), with the claims
``@liveblocks/core`` reads from them: ``k`` (``acc`` for an access token,
``id`` for an ID token), ``pid`` (the project), ``uid``, ``perms`` (access
tokens), ``gids`` (ID tokens), ``ui`` (user info), ``iat`` and ``exp`` (an
hour on; Liveblocks' own lifetime is not documented). ``verify`` reads one back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from ..supabase.tokens import encode
from .errors import DASHBOARD_KEYS, LiveblocksApiError, invalid

__all__ = [
    "MAX_ROOMS_PER_TOKEN",
    "TOKEN_TTL",
    "authenticate",
    "check_secret",
    "sign_access_token",
    "sign_id_token",
    "verify",
]

TOKEN_TTL = 3600
MAX_ROOMS_PER_TOKEN = 10
MAX_USER_ID_LENGTH = 128
MAX_USER_INFO_CHARS = 1024
_KEY = re.compile(r"[\w-]+")
_ROOM_PATTERN = re.compile(r"[*]|[^*]{1,128}[*]?")


def check_secret(secret: str) -> str:
    """A secret key as Liveblocks' SDKs accept them: ``sk_`` and word characters or ``-``."""
    if not secret.startswith("sk_") or not _KEY.fullmatch(secret):
        raise ValueError("a Liveblocks secret key starts with 'sk_' (letters, digits, _ and -)")
    return secret


def authenticate(secrets: frozenset[str], authorization: str | None) -> str:
    """The secret key a request was made with; Liveblocks' 401/403 otherwise."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise LiveblocksApiError(
            401,
            "MISSING_SECRET_KEY",
            "Missing secret key in authentication header",
            f"Please use a secret key, the secret key is available in the dashboard: "
            f"{DASHBOARD_KEYS}",
        )
    if key.startswith("pk_"):
        raise LiveblocksApiError(
            401,
            "WRONG_KEY_USED",
            "Public key instead of the secret key.",
            f"Please use your secret key instead of the public key: {DASHBOARD_KEYS}.",
        )
    if key not in secrets:
        raise LiveblocksApiError(
            403,
            "INVALID_SECRET_KEY",
            "Invalid secret key.",
            f"Please use a valid secret key, the secret key is available in the dashboard: "
            f"{DASHBOARD_KEYS}.",
        )
    return key


# -- token bodies ------------------------------------------------------------------------------


def _user(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    user_id = body.get("userId")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        raise invalid(f"Value at key 'userId': a string of 1 to {MAX_USER_ID_LENGTH} characters")
    info = body.get("userInfo")
    if info is None:
        return user_id, None
    if not isinstance(info, dict):
        raise invalid("Value at key 'userInfo': expected an object")
    if len(json.dumps(info, separators=(",", ":"), ensure_ascii=False)) > MAX_USER_INFO_CHARS:
        raise invalid(f"Value at key 'userInfo': over {MAX_USER_INFO_CHARS} characters as JSON")
    return user_id, info


def _permissions(value: object, known: frozenset[str]) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise invalid("Missing key: 'permissions' (an object of room patterns to permissions)")
    if len(value) > MAX_ROOMS_PER_TOKEN:
        raise invalid(f"Value at key 'permissions': at most {MAX_ROOMS_PER_TOKEN} room patterns")
    for pattern, permissions in value.items():
        if not _ROOM_PATTERN.fullmatch(pattern):
            raise invalid(f"Value at key 'permissions': invalid room pattern {pattern[:140]!r}")
        if not isinstance(permissions, list) or not permissions:
            raise invalid(f"Value at key 'permissions.{pattern}': a non-empty list")
        unknown = sorted({str(item) for item in permissions} - known)
        if unknown:
            raise invalid(f"Value at key 'permissions.{pattern}': not a permission: {unknown}")
    return {pattern: list(permissions) for pattern, permissions in value.items()}


def _claims(kind: str, project: str, user_id: str, info: object, now: float) -> dict[str, Any]:
    claims: dict[str, Any] = {"k": kind, "pid": project, "uid": user_id}
    if info is not None:
        claims["ui"] = info
    return {**claims, "iat": int(now), "exp": int(now) + TOKEN_TTL}


def sign_access_token(
    body: object, *, secret: str, project: str, permissions: frozenset[str], now: float
) -> str:
    """The access token ``POST /v2/authorize-user`` gives for ``body`` (422 if malformed)."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    user_id, info = _user(body)
    claims = _claims("acc", project, user_id, info, now)
    claims["perms"] = _permissions(body.get("permissions"), permissions)
    return encode(claims, secret)


def sign_id_token(body: object, *, secret: str, project: str, now: float) -> str:
    """The ID token ``POST /v2/identify-user`` gives for ``body`` (422 if malformed)."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    user_id, info = _user(body)
    groups = body.get("groupIds")
    if groups is not None and (
        not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)
    ):
        raise invalid("Value at key 'groupIds': expected a list of strings")
    claims = _claims("id", project, user_id, info, now)
    if groups:
        claims["gids"] = list(groups)
    return encode(claims, secret)


def verify(token: str, secret: str, now: float) -> dict[str, Any]:
    """The claims of a token this emulator signed, if it is still valid; ``ValueError`` if not."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    try:
        signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError("not a JWT") from None
    if not hmac.compare_digest(expected, signature):
        raise ValueError("not signed by this emulator")
    if not isinstance(claims, dict) or claims.get("exp", 0) <= now:
        raise ValueError("expired")
    return claims
