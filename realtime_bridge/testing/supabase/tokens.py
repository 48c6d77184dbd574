"""JWTs as Supabase Realtime checks them: HMAC (HS256/384/512) against the project's secret.

Minting and verification use ``hmac`` only (no PyJWT in the package). The
checks and messages follow the server: ``RealtimeWeb.JwtVerification`` (alg
from the header, signature, ``exp`` a number after now, ``iat`` a number if
present) and ``RealtimeWeb.ChannelsAuthorization.authorize_conn`` (``role``
and ``exp`` required; "Token has expired N seconds ago"). JWKS (RS*, ES*,
EdDSA) is not emulated: such tokens fail as the server fails them without a
JWKS, "Failed to generate JWT signer".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["JwtError", "encode", "verify"]

_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class JwtError(Exception):
    """Why a token was refused: ``reason`` is the server's atom, ``message`` its text."""

    reason: str  # token_malformed, signature_error, expired_token, missing_claims, ...
    message: str

    def __str__(self) -> str:
        return self.message


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: Mapping[str, Any], secret: str, algorithm: str = "HS256") -> str:
    """A signed JWT of ``claims`` (``{"alg": algorithm, "typ": "JWT"}`` header)."""
    digest = _HASHES.get(algorithm)
    if digest is None:
        raise ValueError(f"algorithm must be one of {sorted(_HASHES)}, got {algorithm!r}")
    header = {"alg": algorithm, "typ": "JWT"}
    signing_input = ".".join(
        _b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64encode(signature)}"


def _segment(text: str) -> Any:
    try:
        return json.loads(_b64decode(text))
    except (ValueError, binascii.Error):
        raise JwtError("token_malformed", "The token provided is not a valid JWT") from None


def verify(token: object, secret: str, now: float) -> dict[str, Any]:
    """The claims of ``token`` if it is valid at ``now`` (seconds); raises ``JwtError``."""
    if not isinstance(token, str):
        raise JwtError("invalid_token", "The token provided is not a valid JWT")
    token = _SPACE.sub("", unquote(token))  # the server's clean_token
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("token_malformed", "The token provided is not a valid JWT")
    header, claims = _segment(parts[0]), _segment(parts[1])
    if not isinstance(claims, dict):
        raise JwtError("expected_claims_map", "The token's claims are not a JSON object")
    if not isinstance(header, dict):
        raise JwtError("expected_header_map", "The token's header is not a JSON object")
    digest = _HASHES.get(header.get("alg"))  # type: ignore[arg-type]
    if digest is None:
        raise JwtError(
            "error_generating_signer",
            "Failed to generate JWT signer, check your JWT secret or JWKS configuration",
        )
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), digest).digest()
    try:
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        signature = b""
    if not hmac.compare_digest(expected, signature):
        raise JwtError("signature_error", "Failed to validate JWT signature")
    return _validate(claims, int(now))


def _validate(claims: dict[str, Any], now: int) -> dict[str, Any]:
    if "exp" in claims:
        exp = claims["exp"]
        if not _is_number(exp):
            raise JwtError("invalid_claim", "Invalid token: claim exp is not a number")
        if exp <= now:
            if isinstance(exp, float):  # the server words only integer ones
                raise JwtError("invalid_claim", "Invalid token: claim exp has passed")
            raise JwtError("expired_token", f"Token has expired {now - exp} seconds ago")
    if "iat" in claims and not _is_number(claims["iat"]):
        raise JwtError("invalid_claim", "Invalid token: claim iat is not a number")
    if "role" not in claims or "exp" not in claims:
        raise JwtError("missing_claims", "Fields `role` and `exp` are required in JWT")
    for key in ("exp", "iat"):  # the server rounds decimal exp and iat
        if _is_number(claims.get(key)):
            claims[key] = round(claims[key])
    return claims


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
