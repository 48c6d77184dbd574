"""The REST side: Realtime's broadcast endpoints, as the server's plugs and controllers answer.

``POST /api/broadcast`` (``BroadcastController`` and ``Tenants.BatchBroadcast``)
and ``POST /api/broadcast/{topic}/events/{event}`` (``BroadcastSingleController``
and ``Tenants.SingleBroadcast``), behind the plugs in the router's order:
``ValidateBroadcastContentType`` (single only: 415), ``RateLimiter`` (the
``x-rate-*`` headers on every answer from here on, 429 "Too many requests"),
``AuthTenant`` (401 ``{"message":"Unauthorized"}``). Validation errors are
422 ``{"errors": {...}}`` as Ecto changesets render; others ``{"message": ...}``.
No Starlette here: the app hands in headers and bytes and writes out ``Answer``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .store import Broadcast, Dropped
from .tokens import JwtError

if TYPE_CHECKING:
    from . import SupabaseEmulator

__all__ = [
    "Answer",
    "RestError",
    "authenticate",
    "batch",
    "check_content_type",
    "parse_body",
    "rate_headers",
    "single",
]

_SINGLE_TYPES = (("application", "json"), ("application", "octet-stream"))
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-able; None: an empty body
    headers: dict[str, str] = field(default_factory=dict)


class RestError(Exception):
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.answer = Answer(status, body, dict(headers or {}))


def message(status: int, text: str) -> RestError:
    return RestError(status, {"message": text})


# -- plugs ---------------------------------------------------------------------------------


def media_type(content_type: str | None) -> tuple[str, str] | None:
    if not content_type:
        return None
    kind, _, subtype = content_type.split(";", 1)[0].strip().lower().partition("/")
    return kind, subtype


def check_content_type(content_type: str | None) -> None:
    """The single endpoint takes JSON or octet-stream, or no Content-Type at all (415)."""
    media = media_type(content_type)
    if media is not None and media not in _SINGLE_TYPES:
        text = "Unsupported Media Type. Use application/json or application/octet-stream"
        raise RestError(415, {"error": text})


def parse_body(content_type: str | None, raw: bytes) -> Any:
    """The body as Plug.Parsers gives it: JSON objects as they are, other JSON under
    ``"_json"``, octet-stream under ``"_binary"``, nothing parsed without a known type.
    Malformed JSON is a 400."""
    media = media_type(content_type)
    if media == ("application", "octet-stream"):
        return {"_binary": raw}
    if (
        media is None
        or media[0] != "application"
        or not (media[1] == "json" or media[1].endswith("+json"))
    ):
        return {}
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise RestError(400, "Bad Request") from None  # Phoenix renders its status text
    return body if isinstance(body, dict) else {"_json": body}


def rate_headers(emulator: SupabaseEmulator) -> dict[str, str]:
    rolling, limit = emulator.rate.count, emulator.messages_per_second
    return {
        "x-rate-rolling": str(rolling),
        "x-rate-limit": str(limit),
        "x-rate-limit-remaining": str(limit - rolling),
    }


def access_token(headers: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer`` first, then ``apikey``, as AuthTenant picks them."""
    authorization = headers.get("authorization")
    if authorization:
        parts = authorization.split(" ")
        if len(parts) != 2:  # the server's pattern match fails: a crash, so a 500
            raise RestError(500, "Internal Server Error")
        if parts[0].lower() == "bearer":
            return parts[1]
    return headers.get("apikey") or None


def authenticate(emulator: SupabaseEmulator, headers: Mapping[str, str]) -> dict[str, Any]:
    token = access_token(headers)
    if token is None:
        raise message(401, "Unauthorized")
    try:
        return emulator.verify(token)
    except JwtError:
        raise message(401, "Unauthorized") from None


# -- POST /api/broadcast ----------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    event: str
    payload: dict[str, Any]
    private: bool
    id: str | None


def batch(emulator: SupabaseEmulator, claims: Mapping[str, Any], params: Any) -> Answer:
    if emulator.suspended:
        raise message(403, "Tenant is suspended")
    messages = _messages(emulator, params)
    rolling, limit = emulator.rate.count, emulator.messages_per_second
    if rolling > limit:
        raise message(429, "You have exceeded your rate limit")
    if rolling + len(messages) > limit:
        raise message(429, "Too many messages to broadcast, please reduce the batch size")
    for item in messages:
        if not item.private:
            _send(emulator, item)
    private_topics: dict[str, list[Message]] = {}
    for item in messages:
        if item.private:
            private_topics.setdefault(item.topic, []).append(item)
    for topic in sorted(private_topics):  # the server walks a map of topics: sorted
        _send_private(emulator, claims, topic, private_topics[topic])
    return Answer(202)


def _send_private(
    emulator: SupabaseEmulator, claims: Mapping[str, Any], topic: str, items: list[Message]
) -> None:
    allowed = emulator.can("insert", "broadcast", topic, claims)
    for item in items:
        if allowed:
            _send(emulator, item)
        else:  # the silent drop: no error, and the answer is still 202
            role, sub = claims.get("role"), claims.get("sub")
            reason = "no RLS INSERT permission"
            emulator.drop(Dropped(topic, item.event, item.payload, "rest", role, sub, reason))


def _send(emulator: SupabaseEmulator, item: Message) -> None:
    payload: dict[str, Any] = {"payload": item.payload, "event": item.event, "type": "broadcast"}
    if item.id is not None:
        payload["meta"] = {"id": item.id}
    emulator.rate.add()
    delivered = emulator.topics.deliver(item.private, item.topic, payload)
    emulator.record(
        Broadcast(item.topic, item.event, item.payload, item.private, "rest", item.id, delivered)
    )


def _messages(emulator: SupabaseEmulator, params: Any) -> list[Message]:
    """The batch validated as the server's changeset does it (422 with its errors)."""
    raw = params.get("messages") if isinstance(params, dict) else None
    if raw is None or raw == []:
        raise RestError(422, {"errors": {"messages": ["can't be blank"]}})
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise RestError(422, {"errors": {"messages": ["is invalid"]}})
    errors: list[dict[str, list[str]]] = []
    messages: list[Message] = []
    for item in raw:
        item_errors, parsed = _message(emulator, item)
        errors.append(item_errors)
        if parsed is not None:
            messages.append(parsed)
    if any(errors):
        raise RestError(422, {"errors": {"messages": errors}})
    return messages


def _message(
    emulator: SupabaseEmulator, item: dict[str, Any]
) -> tuple[dict[str, list[str]], Message | None]:
    errors: dict[str, list[str]] = {}
    for name in ("topic", "event"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = ["is invalid"]
        elif value is None or not value.strip():
            errors[name] = ["can't be blank"]
    payload = item.get("payload")
    payload_error = _payload_error(emulator, payload)
    if payload_error:
        errors["payload"] = [payload_error]
    private = _boolean(item.get("private"))
    if private is None:
        errors["private"] = ["is invalid"]
    message_id = item.get("id")
    if message_id is not None:
        message_id = _uuid(message_id)
        if message_id is None:
            errors["id"] = ["is invalid"]
    if errors or not isinstance(payload, dict):
        return errors, None
    return {}, Message(item["topic"], item["event"], payload, bool(private), message_id)


def _payload_error(emulator: SupabaseEmulator, payload: object) -> str | None:
    if payload is None:
        return "can't be blank"
    if not isinstance(payload, dict):
        return "is invalid"
    if emulator.oversize(payload):
        return "Payload size exceeds tenant limit"
    return None


def _boolean(value: object) -> bool | None:
    """Ecto's boolean cast (missing: false); None when it is not one."""
    if value is None or isinstance(value, bool):
        return bool(value)
    return _BOOLEANS.get(value) if isinstance(value, str) else None


def _uuid(value: object) -> str | None:
    """Ecto.UUID's cast: the 36-character form (any case), lower-cased; else invalid."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        return str(uuid.UUID(value)) if value[8] == value[13] == value[18] == "-" else None
    except ValueError:
        return None


# -- POST /api/broadcast/{topic}/events/{event} ----------------------------------------------


def single(
    emulator: SupabaseEmulator,
    claims: Mapping[str, Any],
    topic: str,
    event: str,
    private: bool,
    body: dict[str, Any],
) -> Answer:
    if emulator.suspended:
        raise message(403, "Tenant is suspended")
    binary = "_binary" in body
    payload = body["_binary"] if binary else body
    too_big = len(payload) > emulator.max_payload_bytes if binary else emulator.oversize(payload)
    if too_big:
        raise RestError(422, {"errors": {"payload": ["Payload size exceeds tenant limit"]}})
    if emulator.rate.count >= emulator.messages_per_second:
        raise message(429, "You have exceeded your rate limit")
    if private and not emulator.can("insert", "broadcast", topic, claims):
        raise message(403, "Unauthorized")  # this endpoint refuses, unlike the batch one
    emulator.rate.add()
    delivered = 0
    if not binary:  # a binary payload cannot reach vsn 1.0.0 sockets, so none gets it
        wire = {"event": event, "payload": payload, "type": "broadcast"}
        delivered = emulator.topics.deliver(private, topic, wire)
    emulator.record(Broadcast(topic, event, payload, private, "rest-single", None, delivered))
    return Answer(202)
