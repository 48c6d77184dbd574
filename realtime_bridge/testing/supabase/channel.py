"""The WebSocket side: Phoenix channels (vsn 1.0.0 JSON) as Supabase Realtime answers them.

A frame is a JSON object ``{topic, event, payload, ref, join_ref}`` from the
client; the server writes ``{topic, event, payload, ref}`` (Phoenix's V1
serializer drops ``join_ref``) with ``ref`` null on pushes. One ``Session``
per connection; everything is synchronous, frames out are queued in order.

Follows ``RealtimeWeb.RealtimeChannel`` (join, ``broadcast``, ``presence``,
``access_token``), its ``BroadcastHandler`` and ``PresenceHandler``, and
Phoenix.Socket (``heartbeat`` on ``phoenix``, ``phx_leave`` then
``phx_close``, "unmatched topic" for a topic not joined).
"""

from __future__ import annotations

import json
import logging
import uuid
import zlib
from typing import TYPE_CHECKING, Any

from .store import Broadcast, Dropped, Member, Outbox, frame, new_ref
from .tokens import JwtError

if TYPE_CHECKING:
    from . import SupabaseEmulator

__all__ = ["PRESENCE_CALLS_PER_WINDOW", "PRESENCE_WINDOW", "Session"]

log = logging.getLogger("realtime_bridge.testing.supabase")

# The server's default client presence limit: 5 track/untrack calls per 30 s per channel.
PRESENCE_CALLS_PER_WINDOW = 5
PRESENCE_WINDOW = 30.0

# Join refusals: the reason the server puts in the error reply, by JwtError.reason.
_JOIN_TOKEN_ERRORS = {
    "token_malformed": "MalformedJWT: The token provided is not a valid JWT",
    "signature_error": "JwtSignatureError: Failed to validate JWT signature",
    "missing_claims": "InvalidJWTToken: Fields `role` and `exp` are required in JWT",
    "error_generating_signer": (
        "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration"
    ),
}


# access_token refusals the server words with the JWT's own text (others: inspect(reason))
_SHUTDOWN_TOKEN_ERRORS = frozenset(
    {"expired_token", "missing_claims", "token_malformed", "error_generating_signer"}
)


class ProtocolError(Exception):
    """A frame Phoenix cannot decode: the server's socket process crashes and the socket closes."""


def _flag(value: object) -> bool:
    """The server's FlexibleBoolean: true, or the string "true"."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Session:
    """One WebSocket connection, authenticated with ``tenant_token`` (the ``apikey``)."""

    def __init__(self, emulator: SupabaseEmulator, outbox: Outbox, tenant_token: str) -> None:
        self.emulator = emulator
        self.outbox = outbox
        self.tenant_token = tenant_token
        self.channels: dict[str, Member] = {}  # by full topic, "realtime:..."

    # -- frames ---------------------------------------------------------------------------

    def receive(self, text: str) -> None:
        """Handle one text frame; raises ``ProtocolError`` for one Phoenix cannot decode."""
        try:
            message = json.loads(text)
        except ValueError:
            raise ProtocolError("a frame that is not JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("V1 JSON Serializer expected a map")
        missing = [key for key in ("topic", "event", "payload", "ref") if key not in message]
        if missing:
            raise ProtocolError(f"missing key {missing[0]!r}")
        topic, event, payload, ref = (message[k] for k in ("topic", "event", "payload", "ref"))
        if not (isinstance(topic, str) and isinstance(event, str)):
            raise ProtocolError("a topic or event that is not a string")
        join_ref = message.get("join_ref")
        if topic == "phoenix" and event == "heartbeat":
            self.reply(topic, ref, "ok", {})
        elif event == "phx_join":
            self.join(topic, payload, ref, join_ref)
        elif topic not in self.channels:
            self.reply(topic, ref, "error", {"reason": "unmatched topic"})
        else:
            self.dispatch(self.channels[topic], event, payload, ref)

    def dispatch(self, member: Member, event: str, payload: Any, ref: str | None) -> None:
        if event == "phx_leave":
            self.reply(member.full_topic, ref, "ok", {})
            self.close_channel(member)
        elif event == "broadcast":
            self.broadcast(member, payload, ref)
        elif event == "presence":
            self.presence(member, payload, ref)
        elif event == "access_token":
            self.access_token(member, payload)
        else:  # counted and ignored, as the server does with unexpected events
            self.emulator.rate.add()

    def reply(self, topic: str, ref: str | None, status: str, response: Any) -> None:
        self.outbox.push(frame(topic, "phx_reply", {"status": status, "response": response}, ref))

    def close(self) -> None:
        """The connection is gone: leave every channel (tracked presences leave)."""
        for member in list(self.channels.values()):
            self.drop(member)

    def drop(self, member: Member) -> None:
        if self.channels.get(member.full_topic) is member:
            del self.channels[member.full_topic]
        self.emulator.topics.remove(member)

    def close_channel(self, member: Member) -> None:
        """The channel process stops: ``phx_close`` (ref = the join's ref) follows."""
        self.drop(member)
        self.outbox.push(frame(member.full_topic, "phx_close", {}, member.join_ref))

    def shutdown(self, member: Member, message: str) -> None:
        """The server's shutdown_response: a ``system`` error, then the channel closes."""
        payload = {
            "extension": "system",
            "status": "error",
            "message": message,
            "channel": member.topic,
        }
        self.outbox.push(frame(member.full_topic, "system", payload))
        self.close_channel(member)

    # -- join -------------------------------------------------------------------------------

    def join(self, topic: str, payload: Any, ref: str | None, join_ref: str | None) -> None:
        if not topic.startswith("realtime:"):
            self.reply(topic, ref, "error", {"reason": "unmatched topic"})
            return
        previous = self.channels.get(topic)
        if previous is not None:  # Phoenix closes the existing channel for the new join
            self.drop(previous)
        try:
            member = self._authorize_join(topic, _dict(payload))
        except JoinRefused as refused:
            self.reply(topic, ref, "error", {"reason": refused.reason})
            return
        member.join_ref = join_ref if join_ref is not None else ref
        config = _dict(_dict(payload).get("config"))
        self.reply(topic, ref, "ok", {"postgres_changes": _postgres_changes(config)})
        self.channels[topic] = member
        self.emulator.topics.add(member)
        if member.presence_enabled and member.may_read("presence"):
            state = self.emulator.topics.presence_state(member.private, member.topic)
            self.outbox.push(frame(topic, "presence_state", state))

    def _authorize_join(self, topic: str, params: dict[str, Any]) -> Member:
        emulator = self.emulator
        sub_topic = topic.removeprefix("realtime:")
        if not sub_topic:
            raise JoinRefused("TopicNameRequired: You must provide a topic name")
        config = _dict(params.get("config"))
        private = _flag(config.get("private"))
        presence = _dict(config.get("presence"))
        broadcast = _dict(config.get("broadcast"))
        if emulator.suspended:
            raise JoinRefused("RealtimeDisabledForTenant: Realtime disabled for this tenant")
        if emulator.private_only and not private:
            raise JoinRefused("PrivateOnly: This project only allows private channels")
        token = self._access_token(params)
        claims = _join_claims(emulator, token)
        key = presence.get("key")
        member = Member(
            connection=self.outbox,
            topic=sub_topic,
            private=private,
            key=str(uuid.uuid1()) if key in (None, "") else str(key),
            presence_enabled=_flag(presence.get("enabled")),
            self_broadcast=_flag(broadcast.get("self")),
            ack=_flag(broadcast.get("ack")),
            access_token=token,
            claims=claims,
        )
        if private:
            self._authorize_read(member)
            if not (member.read["broadcast"] or member.read["presence"]):
                raise JoinRefused(
                    "Unauthorized: You do not have permissions to read from this Channel "
                    f"topic: {sub_topic}"
                )
        if "replay" in broadcast:
            if not private:
                raise JoinRefused(
                    "UnableToReplayMessages: Replay is not allowed for public channels"
                )
            if not member.read["broadcast"]:
                raise JoinRefused(
                    "Unauthorized: You do not have permissions to read from this Channel "
                    f"topic: {sub_topic}"
                )
        return member

    def _access_token(self, params: dict[str, Any]) -> str:
        """The token the join authorizes with, as the server's assign_access_token picks it."""
        given = params.get("access_token") or params.get("user_token")
        if isinstance(given, str) and given.startswith("sb_"):
            return self.tenant_token
        for name in ("user_token", "access_token"):
            if isinstance(params.get(name), str):
                return str(params[name])
        return self.tenant_token

    def _authorize_read(self, member: Member) -> None:
        can = self.emulator.can
        member.read["broadcast"] = can("select", "broadcast", member.topic, member.claims)
        if member.presence_enabled:
            member.read["presence"] = can("select", "presence", member.topic, member.claims)

    def _authorize_write(self, member: Member) -> None:
        can = self.emulator.can
        member.write["broadcast"] = can("insert", "broadcast", member.topic, member.claims)
        member.write["presence"] = can("insert", "presence", member.topic, member.claims)

    # -- broadcast ------------------------------------------------------------------------

    def broadcast(self, member: Member, payload: Any, ref: str | None) -> None:
        emulator = self.emulator
        body = _dict(payload)
        event, data = body.get("event"), body.get("payload")
        if member.private:
            if member.write["broadcast"] is None:
                self._authorize_write(member)
            if not member.write["broadcast"]:  # ignored without a word, even with ack
                self._dropped(member, event, data, "no RLS INSERT permission")
                return
        emulator.rate.add()
        if emulator.oversize(payload):
            if member.ack:  # a bare atom as the response, which realtime-py cannot parse
                self.reply(member.full_topic, ref, "error", "payload_size_exceeded")
            else:
                self._dropped(member, event, data, "payload size exceeds tenant limit")
            return
        exclude = None if member.self_broadcast else member
        delivered = emulator.topics.deliver(member.private, member.topic, payload, exclude)
        name = "" if event is None else str(event)
        emulator.record(
            Broadcast(member.topic, name, data, member.private, "websocket", None, delivered)
        )
        if member.ack:
            self.reply(member.full_topic, ref, "ok", {})

    def _dropped(self, member: Member, event: object, data: object, reason: str) -> None:
        role, sub = member.claims.get("role"), member.claims.get("sub")
        name = "" if event is None else str(event)
        self.emulator.drop(Dropped(member.topic, name, data, "websocket", role, sub, reason))

    # -- presence -------------------------------------------------------------------------

    def presence(self, member: Member, payload: Any, ref: str | None) -> None:
        if not isinstance(payload, dict) or "event" not in payload:
            self.reply(member.full_topic, ref, "ok", {})
            return
        if not self._presence_call_allowed(member):
            self.shutdown(member, "Client presence rate limit exceeded")
            return
        event = str(payload["event"]).lower()
        if event == "track":
            self.track(member, payload, ref)
        elif event == "untrack":
            self.untrack(member)
            self.reply(member.full_topic, ref, "ok", {})
        else:
            log.info("Supabase emulator: unknown presence event %r", event)
            self.reply(member.full_topic, ref, "error", {})

    def _presence_call_allowed(self, member: Member) -> bool:
        now = self.emulator.clock()
        if member.presence_window_ends is None or now > member.presence_window_ends:
            member.presence_calls, member.presence_window_ends = 1, now + PRESENCE_WINDOW
            return True
        if member.presence_calls >= PRESENCE_CALLS_PER_WINDOW:
            return False
        member.presence_calls += 1
        return True

    def track(self, member: Member, payload: dict[str, Any], ref: str | None) -> None:
        topics = self.emulator.topics
        if member.private:
            if member.write["presence"] is None:
                if member.read["presence"] is None:
                    member.read["presence"] = self.emulator.can(
                        "select", "presence", member.topic, member.claims
                    )
                self._authorize_write(member)
            if not member.write["presence"]:
                self.reply(member.full_topic, ref, "error", {})
                return
        data = payload.get("payload", {})
        if not isinstance(data, dict):
            reason = "Presence track payload must be a map"
            self.reply(member.full_topic, ref, "error", {"reason": reason})
            return
        if data == member.tracked:  # no change, no diff
            self.reply(member.full_topic, ref, "ok", {})
            return
        if self.emulator.oversize(data):
            self.shutdown(member, "Track message size exceeded")
            return
        leaves = {}
        if member.tracked is not None:  # an update: the old meta leaves, the new one joins
            leaves = {member.key: {"metas": [member.meta()]}}
            member.phx_ref_prev = member.phx_ref
        member.tracked, member.phx_ref = dict(data), new_ref()
        member.presence_enabled = True
        self.reply(member.full_topic, ref, "ok", {})
        joins = {member.key: {"metas": [member.meta()]}}
        topics.presence_diff(member.private, member.topic, joins, leaves)

    def untrack(self, member: Member) -> None:
        if member.tracked is None:
            return
        leaves = {member.key: {"metas": [member.untrack()]}}
        self.emulator.topics.presence_diff(member.private, member.topic, {}, leaves)

    # -- access_token ---------------------------------------------------------------------

    def access_token(self, member: Member, payload: Any) -> None:
        token = _dict(payload).get("access_token")
        if not isinstance(token, str) or token.startswith("sb_") or token == member.access_token:
            return
        try:
            claims = self.emulator.verify(token)
        except JwtError as error:
            # the server's message: the JWT's text for these, inspect(reason) for the rest
            known = error.reason in _SHUTDOWN_TOKEN_ERRORS
            self.shutdown(member, error.message if known else f":{error.reason}")
            return
        previous = dict(member.read)
        member.access_token, member.claims = token, claims
        if member.private:
            member.write = {"broadcast": None, "presence": None}
            self._authorize_read(member)
            revoked = any(previous[ext] is True and member.read[ext] is False for ext in previous)
            if not (member.read["broadcast"] or member.read["presence"]):
                self.shutdown(
                    member,
                    "You do not have permissions to read from this Channel topic: " + member.topic,
                )
            elif revoked:
                text = "You no longer have permission to read from this Channel topic: "
                self.shutdown(member, text + member.topic)

    def confirm_token(self, member: Member) -> bool:
        """The server's periodic token check: a channel whose token expired is shut down."""
        try:
            self.emulator.verify(member.access_token)
        except JwtError as error:
            self.shutdown(member, error.message)
            return False
        return True


class JoinRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _join_claims(emulator: SupabaseEmulator, token: str) -> dict[str, Any]:
    try:
        return emulator.verify(token)
    except JwtError as error:
        if error.reason == "expired_token":
            raise JoinRefused(f"InvalidJWTToken: {error.message}") from None
        if error.reason in _JOIN_TOKEN_ERRORS:
            raise JoinRefused(_JOIN_TOKEN_ERRORS[error.reason]) from None
        raise JoinRefused("Unknown Error on Channel") from None


def _postgres_changes(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The join reply's bindings: each requested one with an id (no changes are ever sent)."""
    bindings = config.get("postgres_changes")
    if not isinstance(bindings, list):
        return []
    answered = []
    for binding in bindings:
        if isinstance(binding, dict):
            text = json.dumps(binding, sort_keys=True).encode()
            answered.append({**binding, "id": zlib.crc32(text)})
    return answered
