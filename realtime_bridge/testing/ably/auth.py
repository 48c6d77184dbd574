"""Keys, capabilities, tokens and Ably JWTs, checked as Ably checks them.

Sources: Ably's REST API reference (Basic and token authentication,
``requestToken``), its TokenRequest spec (canonical fields, the MAC, the
±2 minute timestamp window, nonces) and its JWT page (HS256, ``kid`` = key
name, ``x-ably-capability`` and ``x-ably-clientId`` claims).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import AblyError

__all__ = [
    "ApiKey",
    "Authenticator",
    "Capability",
    "Credentials",
    "IssuedToken",
    "canonical",
    "parse_capability",
    "permits",
]

Capability = dict[str, frozenset[str]]

ALL: Capability = {"*": frozenset({"*"})}
DEFAULT_TTL_MS = 3_600_000
TIMESTAMP_WINDOW_MS = 120_000
MIN_NONCE_LENGTH = 16


# -- capabilities ---------------------------------------------------------------------


def parse_capability(value: object) -> Capability:
    """A capability from a mapping or its JSON text: ``{resource: [operation, ...]}``."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise AblyError(40003, f"invalid capability: not JSON: {text[:100]!r}") from None
    if not isinstance(value, Mapping) or not value:
        raise AblyError(40003, "invalid capability: expected a non-empty JSON object")
    parsed: Capability = {}
    for resource, operations in value.items():
        ops = [operations] if isinstance(operations, str) else operations
        if (
            not isinstance(resource, str)
            or not isinstance(ops, list | tuple | set | frozenset)
            or not ops
            or not all(isinstance(op, str) and op for op in ops)
        ):
            raise AblyError(40003, f"invalid capability for resource {resource!r}")
        parsed[resource] = frozenset(ops)
    return parsed


def canonical(capability: Capability) -> str:
    """Ably's canonical text: compact JSON, resources and operations sorted."""
    ordered = {resource: sorted(capability[resource]) for resource in sorted(capability)}
    return json.dumps(ordered, separators=(",", ":"))


def _covers(pattern: str, name: str) -> bool:
    """Does resource ``pattern`` cover ``name`` (a channel, or a narrower pattern)?"""
    if pattern in ("*", "[*]*") or pattern == name:
        return True
    return pattern.endswith("*") and name.startswith(pattern[:-1])


def permits(capability: Capability, channel: str, operation: str) -> bool:
    return any(
        _covers(resource, channel) and ("*" in ops or operation in ops)
        for resource, ops in capability.items()
    )


def intersect(requested: Capability, allowed: Capability) -> Capability:
    """What a token may have: the requested capability cut down to what the key allows."""
    result: dict[str, set[str]] = {}
    for resource, wanted in requested.items():
        for pattern, granted in allowed.items():
            if _covers(pattern, resource):
                narrower = resource
            elif _covers(resource, pattern):
                narrower = pattern
            else:
                continue
            if "*" in granted:
                ops = set(wanted)
            elif "*" in wanted:
                ops = set(granted)
            else:
                ops = set(wanted & granted)
            if ops:
                result.setdefault(narrower, set()).update(ops)
    return {resource: frozenset(ops) for resource, ops in result.items()}


# -- keys, tokens, credentials --------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """An API key ``appId.keyId:secret`` and the capability Ably gives it."""

    name: str
    secret: str
    capability: Capability

    @classmethod
    def parse(cls, key: str, capability: object = None) -> ApiKey:
        name, sep, secret = key.partition(":")
        app_id, dot, key_id = name.partition(".")
        if not (sep and secret and dot and app_id and key_id):
            raise ValueError(
                f"an Ably key is 'appId.keyId:secret' (e.g. 'emulator.key:secret'), got {key!r}"
            )
        return cls(name, secret, ALL if capability is None else parse_capability(capability))

    @property
    def app_id(self) -> str:
        return self.name.partition(".")[0]

    def __str__(self) -> str:
        return f"{self.name}:{self.secret}"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    key_name: str
    issued: int
    expires: int
    capability: Capability
    client_id: str | None

    def details(self) -> dict[str, Any]:
        """The TokenDetails ``requestToken`` answers with."""
        details: dict[str, Any] = {
            "token": self.token,
            "keyName": self.key_name,
            "issued": self.issued,
            "expires": self.expires,
            "capability": canonical(self.capability),
        }
        if self.client_id is not None:
            details["clientId"] = self.client_id
        return details


@dataclass(frozen=True)
class Credentials:
    """Who made a request: the key behind it, how it authenticated, what it may do."""

    key: ApiKey
    method: str  # "basic", "token" or "jwt"
    capability: Capability
    client_id: str | None  # None: anonymous; "*": may act as any client

    def require(self, channel: str, operation: str) -> None:
        if not permits(self.capability, channel, operation):
            raise AblyError(
                40160,
                f"Unauthorized: {operation!r} on channel {channel!r} is not permitted with "
                f"the provided capability {canonical(self.capability)}",
            )


def _b64decode(text: str, *, urlsafe: bool = False) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    if urlsafe:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def _ms(value: object, field: str) -> int:
    """An integer number of milliseconds, as a number or decimal text."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise AblyError(40001, f"invalid request body: {field} must be an integer, got {value!r}")
    return value


class Authenticator:
    """The keys of one app, the tokens issued for them, and the nonces seen."""

    def __init__(self, clock: Callable[[], float], *, allow_basic_over_http: bool = False) -> None:
        self.clock = clock
        self.allow_basic_over_http = allow_basic_over_http
        self.keys: dict[str, ApiKey] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self._nonces: dict[tuple[str, str, int], int] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def add_key(self, key: ApiKey) -> None:
        self.keys[key.name] = key

    # -- issuing -----------------------------------------------------------------------

    def issue(
        self, key: ApiKey, capability: Capability, client_id: str | None, ttl_ms: int
    ) -> IssuedToken:
        issued = self.now_ms()
        token = IssuedToken(
            token=f"{key.app_id}.{secrets.token_urlsafe(24)}",
            key_name=key.name,
            issued=issued,
            expires=issued + ttl_ms,
            capability=capability,
            client_id=client_id,
        )
        self.tokens[token.token] = token
        return token

    def request_token(
        self, key_name: str, body: object, authorization: str | None, secure: bool
    ) -> IssuedToken:
        """``POST /keys/{keyName}/requestToken``: a signed TokenRequest, or unsigned with auth."""
        if not isinstance(body, Mapping):
            raise AblyError(40001, "invalid request body: a TokenRequest is a JSON object")
        key = self.keys.get(key_name)
        if key is None:
            raise AblyError(40400, f"No key found with name {key_name!r}")
        if body.get("keyName") not in (None, key_name):
            raise AblyError(40101, "keyName in the TokenRequest does not match the request path")
        timestamp = _ms(body.get("timestamp"), "timestamp")
        if body.get("mac") is not None:
            self._check_mac(key, body)
            base = key.capability
        else:
            credentials = self.authenticate(authorization, None, secure)
            if credentials.key.name != key.name:
                raise AblyError(40101, "an unsigned TokenRequest must be authorized by its own key")
            base = credentials.capability
        if abs(self.now_ms() - timestamp) > TIMESTAMP_WINDOW_MS:
            raise AblyError(40104, "Timestamp not current")
        self._check_nonce(key.name, body.get("nonce"), timestamp)
        ttl, capability, client_id = _token_params(body, base)
        return self.issue(key, capability, client_id, ttl)

    def _check_mac(self, key: ApiKey, body: Mapping[str, Any]) -> None:
        """HMAC-SHA256 over keyName, ttl, capability, clientId, timestamp, nonce, each + "\\n".

        The capability is taken as sent: the ``ably`` SDK signs its own (spaced)
        JSON text, not the canonical form.
        """

        def text(field: str) -> str:
            value = body.get(field)
            return "" if value is None else str(value)

        signed = "".join(
            f"{text(field)}\n"
            for field in ("keyName", "ttl", "capability", "clientId", "timestamp", "nonce")
        )
        expected = hmac.new(key.secret.encode(), signed.encode(), hashlib.sha256).digest()
        mac = body.get("mac")
        try:
            given = _b64decode(mac) if isinstance(mac, str) else b""
        except (binascii.Error, ValueError):
            given = b""
        if not hmac.compare_digest(expected, given):
            raise AblyError(40101, "Invalid credentials: the TokenRequest mac does not match")

    def _check_nonce(self, key_name: str, nonce: object, timestamp: int) -> None:
        if nonce is None:
            return
        if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_LENGTH:
            raise AblyError(40001, "invalid request body: nonce must be 16 characters or more")
        now = self.now_ms()
        self._nonces = {seen: until for seen, until in self._nonces.items() if until > now}
        if (key_name, nonce, timestamp) in self._nonces:
            raise AblyError(40105, "Nonce value replayed")
        self._nonces[key_name, nonce, timestamp] = timestamp + 2 * TIMESTAMP_WINDOW_MS

    # -- checking ------------------------------------------------------------------------

    def authenticate(
        self, authorization: str | None, client_id_header: str | None, secure: bool
    ) -> Credentials:
        """The credentials of an ``Authorization`` header, or the error Ably would answer."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return self._basic(value.strip(), client_id_header, secure)
        if scheme == "bearer":
            return self._bearer(value.strip())
        if not scheme:
            raise AblyError(40101, "Invalid credentials: no Authorization header")
        raise AblyError(40101, f"Invalid credentials: unsupported scheme {scheme!r}")

    def _basic(self, value: str, client_id_header: str | None, secure: bool) -> Credentials:
        if not secure and not self.allow_basic_over_http:
            raise AblyError(40103, "Invalid use of Basic authentication over non-TLS transport")
        try:
            name, _, secret = _b64decode(value).decode().partition(":")
        except (binascii.Error, ValueError):
            raise AblyError(40101, "Invalid credentials: malformed Basic credentials") from None
        key = self.keys.get(name)
        if key is None or not hmac.compare_digest(key.secret.encode(), secret.encode()):
            raise AblyError(40101, "Invalid credentials")
        client_id = None
        if client_id_header:
            try:
                client_id = _b64decode(client_id_header).decode()
            except (binascii.Error, ValueError):
                raise AblyError(40012, "Invalid X-Ably-ClientId header: not base64") from None
        return Credentials(key, "basic", key.capability, client_id)

    def _bearer(self, value: str) -> Credentials:
        """An Ably token or an Ably JWT, base64-encoded (as the SDKs send them) or not."""
        try:
            text = _b64decode(value).decode()
        except (binascii.Error, ValueError):
            text = value
        if text.count(".") == 2:
            return self._jwt(text)
        issued = self.tokens.get(text) or self.tokens.get(value)
        if issued is None:
            raise AblyError(40143, "Token unrecognized")
        if self.now_ms() >= issued.expires:
            raise AblyError(40142, "Token expired")
        key = self.keys.get(issued.key_name)
        if key is None:
            raise AblyError(40131, "Key revoked")
        return Credentials(key, "token", issued.capability, issued.client_id)

    def _jwt(self, token: str) -> Credentials:
        head, claims_text, signature = token.split(".")
        header, claims, given = _jwt_parts(head, claims_text, signature)
        if header.get("alg") != "HS256":
            raise AblyError(40144, f"Invalid token; unsupported alg {header.get('alg')!r}")
        key = self.keys.get(str(header.get("kid")))
        if key is None:
            raise AblyError(40144, "Invalid token; kid must name one of the app's keys")
        signing_input = f"{head}.{claims_text}".encode()
        expected = hmac.new(key.secret.encode(), signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            raise AblyError(40144, "Invalid token; signature verification failed")
        for claim in ("iat", "exp"):
            if not isinstance(claims.get(claim), int | float) or isinstance(claims[claim], bool):
                raise AblyError(40144, f"Invalid token; {claim} must be specified", 400)
        if self.now_ms() >= claims["exp"] * 1000:
            raise AblyError(40142, "Token expired")
        capability = key.capability
        if claims.get("x-ably-capability") is not None:
            capability = intersect(parse_capability(claims["x-ably-capability"]), key.capability)
        client_id = claims.get("x-ably-clientId")
        if client_id is not None and not isinstance(client_id, str):
            raise AblyError(40012, "Invalid token; clientId must be a string")
        return Credentials(key, "jwt", capability, client_id)


def _jwt_parts(
    head: str, claims: str, signature: str
) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    try:
        header_json = json.loads(_b64decode(head, urlsafe=True))
        claims_json = json.loads(_b64decode(claims, urlsafe=True))
        given = _b64decode(signature, urlsafe=True)
    except (binascii.Error, ValueError) as exc:
        raise AblyError(40144, f"Unexpected exception decoding token; err = {exc}") from None
    if not isinstance(header_json, dict) or not isinstance(claims_json, dict):
        raise AblyError(40144, "Unexpected exception decoding token; err = not JSON objects")
    return header_json, claims_json, given


def _token_params(body: Mapping[str, Any], base: Capability) -> tuple[int, Capability, str | None]:
    """A TokenRequest's ttl (default 1 h), capability (cut to ``base``) and clientId."""
    ttl = DEFAULT_TTL_MS if body.get("ttl") in (None, "") else _ms(body.get("ttl"), "ttl")
    if ttl <= 0:
        raise AblyError(40003, f"invalid ttl {ttl}: must be a positive number of ms")
    capability = base
    if body.get("capability") not in (None, ""):
        capability = intersect(parse_capability(body.get("capability")), base)
        if not capability:
            raise AblyError(40160, "Requested capability is not permitted by the key")
    client_id = body.get("clientId")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise AblyError(40012, "Invalid clientId: must be a non-empty string")
    return ttl, capability, client_id
