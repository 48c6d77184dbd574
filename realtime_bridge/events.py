"""The event envelope: the versioned, typed message every adapter carries.

An ``Event`` is built once by application code, validated once, serialised
once, and then travels unchanged through the outbox, retries and every
adapter. Its ``id`` is the idempotency key; ``seq`` and ``ts`` are assigned by
the outbox in commit order, so clients order by the database, never by a
client's clock.

Channel names are *portable*: the intersection of what Pusher Channels, Ably
and Supabase Realtime accept, so a channel valid here is valid on every
adapter and a team can switch vendors without renaming anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticSerializationError, from_json, to_json

from .errors import InvalidChannel, InvalidEvent
from .ids import new_event_id

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_CHANNEL_LENGTH",
    "Event",
    "channel_kind",
    "validate_channel",
]

ENVELOPE_VERSION = 1

# Pusher: at most 164 characters including any prefix, drawn from
# A-Z a-z 0-9 _ - = @ , . ; -- the smallest set of the three vendors. Ably
# forbids a leading "[" or ":" and newlines, Supabase only the bare topic
# "realtime"; both are implied by, or added to, Pusher's rule.
MAX_CHANNEL_LENGTH = 164
_CHANNEL_CHARS = "A-Za-z0-9_\\-=@,.;"
_CHANNEL_RE = re.compile(f"[{_CHANNEL_CHARS}]{{1,{MAX_CHANNEL_LENGTH}}}")
_BAD_CHANNEL_CHAR = re.compile(f"[^{_CHANNEL_CHARS}]")
_RESERVED_CHANNELS = frozenset({"realtime"})
CHANNEL_RULE = (
    f"1 to {MAX_CHANNEL_LENGTH} characters from A-Z a-z 0-9 _ - = @ , . ; "
    "(the names Pusher, Ably and Supabase all accept)"
)

_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
_RESERVED_TYPE_PREFIXES = ("pusher:", "pusher_internal:", "client-", "phx_")
_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def validate_channel(name: object) -> str:
    """Return ``name`` if it is a portable channel name, else raise ``InvalidChannel``."""
    if not isinstance(name, str):
        raise InvalidChannel(f"channel must be a string, got {type(name).__name__}")
    if _CHANNEL_RE.fullmatch(name) and name not in _RESERVED_CHANNELS:
        return name
    raise InvalidChannel(f"channel {_clip(name)!r}: {_channel_problem(name)}")


def _channel_problem(name: str) -> str:
    if not name:
        return f"is empty; the rule is {CHANNEL_RULE}"
    if len(name) > MAX_CHANNEL_LENGTH:
        return f"is {len(name)} characters, over the limit of {MAX_CHANNEL_LENGTH} (Pusher's)"
    if name in _RESERVED_CHANNELS:
        return "is reserved by Supabase Realtime"
    bad = _BAD_CHANNEL_CHAR.search(name)
    position = bad.start() if bad else 0
    return f"has {name[position]!r} at position {position}; the rule is {CHANNEL_RULE}"


def channel_kind(channel: str) -> str:
    """``"presence"``, ``"private"`` or ``"public"``, from the channel's prefix."""
    if channel.startswith("presence-"):
        return "presence"
    if channel.startswith("private-"):
        return "private"
    return "public"


def _clip(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


class Event(BaseModel):
    """One real-time event: what happened (``type``), where (``channel``), the new state.

    Subclass it to declare a typed event: narrow ``type`` to a ``Literal`` and
    give ``data`` a pydantic model. ``data`` is always a JSON object, ideally the
    whole new state, so a client that missed earlier events can rebuild from
    this one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    #: Names of the envelope's own fields, in wire order.
    ENVELOPE_FIELDS: ClassVar[tuple[str, ...]] = ("v", "id", "type", "channel", "data", "seq", "ts")

    v: int = Field(default=ENVELOPE_VERSION, ge=1, description="Envelope version.")
    id: str = Field(
        default_factory=new_event_id,
        description="Idempotency key: time-ordered, stable across every retry.",
    )
    type: str = Field(description="The discriminator clients switch on.")
    channel: str = Field(description="Portable channel name.")
    data: Any = Field(default_factory=dict, description="A JSON object: the new state.")
    seq: int | None = Field(default=None, ge=0, description="Per-channel order, from the outbox.")
    ts: datetime | None = Field(default=None, description="Server time at commit.")

    _data_json: bytes = PrivateAttr(default=b"{}")

    def __init__(self, **fields: Any) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise _translate(exc, type(self).__name__) from None

    @field_validator("channel", mode="before")
    @classmethod
    def _check_channel(cls, value: object) -> str:
        return validate_channel(value)

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if not _TYPE_RE.fullmatch(value):
            raise ValueError(
                "must be 1 to 200 characters from A-Z a-z 0-9 _ . -, starting with a letter "
                "or digit"
            )
        if value.startswith(_RESERVED_TYPE_PREFIXES):
            raise ValueError(f"must not start with a reserved prefix {_RESERVED_TYPE_PREFIXES}")
        return value

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID_RE.fullmatch(value):
            raise ValueError("must be 1 to 128 characters from A-Z a-z 0-9 _ . : -")
        return value

    @model_validator(mode="after")
    def _encode_data_once(self) -> Event:
        if not isinstance(self.data, dict | BaseModel):
            raise ValueError(f"data must be a JSON object (a dict), got {type(self.data).__name__}")
        try:
            encoded = to_json(self.data)
        except PydanticSerializationError as exc:
            raise ValueError(f"data is not JSON-serialisable: {exc}") from None
        if b"NaN" in encoded or b"Infinity" in encoded:
            try:  # to_json writes NaN/Infinity as bare tokens, which are not JSON
                from_json(encoded, allow_inf_nan=False)
            except ValueError:
                raise ValueError(
                    "data is not JSON-serialisable: NaN and Infinity have no JSON form"
                ) from None
        self._data_json = encoded
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; with ``update``, the result is validated again (and ``data`` re-encoded)."""
        if not update:
            return super().model_copy(deep=deep)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, **update})

    @property
    def data_json(self) -> bytes:
        """``data`` serialised to JSON bytes, computed once at validation."""
        # Read the private store directly: pydantic's attribute hook costs ~1 us per
        # read, and this is on every publish's hot path.
        return cast(bytes, self.__pydantic_private__["_data_json"])  # type: ignore[index]

    @property
    def kind(self) -> str:
        """The channel's kind: ``"presence"``, ``"private"`` or ``"public"``."""
        return channel_kind(self.channel)

    def encode(self) -> bytes:
        """The whole envelope as compact JSON bytes, reusing the encoded ``data``.

        ``id``, ``type`` and ``channel`` are restricted to characters that need no
        JSON escaping, so they are spliced in directly.
        """
        seq = b"null" if self.seq is None else str(self.seq).encode()
        ts = b"null" if self.ts is None else to_json(self.ts)  # as model_dump(mode="json")
        return b"".join(
            (
                b'{"v":%d,"id":"%s","type":"%s","channel":"%s","data":'
                % (self.v, self.id.encode(), self.type.encode(), self.channel.encode()),
                self.data_json,
                b',"seq":',
                seq,
                b',"ts":',
                ts,
                b"}",
            )
        )

    @classmethod
    def from_stored(
        cls,
        *,
        id: str,
        type: str,
        channel: str,
        data_json: bytes,
        v: int = ENVELOPE_VERSION,
        seq: int | None = None,
        ts: datetime | None = None,
    ) -> Event:
        """Rebuild an event that was validated when it was stored (the outbox's rows).

        Skips validation and reuses the stored JSON as ``data_json``: the relay
        rebuilds every event it publishes, and validating twice would cost more
        than the publish itself.
        """
        # What model_construct does, without its per-call introspection: this runs once
        # per event the relay publishes.
        event = cls.__new__(cls)
        fields = {"v": v, "id": id, "type": type, "channel": channel, "data": from_json(data_json)}
        fields.update(seq=seq, ts=ts)
        object.__setattr__(event, "__dict__", fields)
        object.__setattr__(event, "__pydantic_fields_set__", _ALL_FIELDS)
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", {"_data_json": data_json})
        return event

    @classmethod
    def decode(cls, raw: bytes | str) -> Event:
        """Parse an envelope produced by ``encode()``; raises ``InvalidEvent`` if malformed."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise _translate(exc, cls.__name__) from None


_ALL_FIELDS = frozenset(Event.model_fields)


def _translate(exc: ValidationError, model: str) -> InvalidEvent:
    """Turn pydantic's report into one line per problem: field, rule, value."""
    problems = []
    channel_only = True
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(event)"
        channel_only = channel_only and field == "channel"
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if field == "channel" or isinstance(value, dict) else f" (got {value!r:.80})"
        # validate_channel's message already starts with "channel '...'".
        prefix = "" if field == "channel" and message.startswith("channel") else f"{field}: "
        problems.append(f"{prefix}{message}{shown}")
    error_class = InvalidChannel if channel_only else InvalidEvent
    return error_class(f"invalid {model}: " + "; ".join(problems))
