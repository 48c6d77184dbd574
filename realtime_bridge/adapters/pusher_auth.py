"""Pusher's signatures: REST requests, browser authorisation and webhooks.

Everything here is a pure function of the app's key and secret, so it is
tested against Pusher's published vectors and against the ``pusher`` SDK's
output, byte for byte, without a network.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["sign_query"]

AUTH_VERSION = "1.0"


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
