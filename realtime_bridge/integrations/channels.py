"""Channel authorisation by pattern: a browser joins a channel only if a callback says yes.

An application declares, once, who may join which channels, one callback per
channel pattern (Laravel's ``Broadcast::channel`` in Python)::

    channels = ChannelAuth()

    @channels.channel("orders.{order_id:int}")
    async def order_channel(user, order_id: int) -> bool:
        return await owns_order(user, order_id)

The rules, in the order they apply:

- **A pattern names the channel without its kind prefix** and matches it under
  any of them: ``orders.{order_id}`` matches ``orders.42``, ``private-orders.42``,
  ``private-encrypted-orders.42`` and ``presence-orders.42``, so one callback
  serves every vendor's spelling. A pattern that starts with a prefix
  (``presence-room.{room_id}``) matches only channels of that kind.
- ``{name}`` matches one segment: one or more channel characters other than
  ``.``; ``{name:int}`` matches a number written without leading zeros and
  passes it as an ``int``. Each parameter reaches the callback by name, after
  the user.
- Patterns are tried in the order they were declared; the first that matches
  decides, and no other is tried.
- **Refused by default**: a channel no pattern matches is refused, and so is
  one whose callback returns ``False`` or ``None``.
- ``True`` grants the channel. A ``Member``, or a dict with an ``"id"`` (the
  other keys are its info), grants it *as that member*: presence channels need
  one (``True`` on a presence channel is refused), and elsewhere it is the
  identity the vendor gives the browser (Ably's clientId, a gateway token's user).
- Any other return value is a bug in the callback (an ORM object is truthy,
  but granting on it would be an accident): ``TypeError``, never a grant.

Nothing here knows a web framework, so every integration shares it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..adapters.base import Member
from ..errors import InvalidChannel, PermanentError
from ..events import channel_kind, validate_channel
from ._calls import call

__all__ = ["ChannelAuth", "ChannelGrant", "ChannelPattern", "ClientAuthRefused", "split_prefix"]

#: The kind prefixes a pattern may leave out, longest first so ``private-encrypted-`` wins.
PREFIXES = ("private-encrypted-", "private-", "presence-")

_PARAMETER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LITERAL = re.compile(r"[A-Za-z0-9_\-=@,.;]*")
_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[A-Za-z0-9_\-=@,;]+", str),
    "int": (r"0|[1-9][0-9]*", int),
}

C = TypeVar("C", bound=Callable[..., Any])


class ClientAuthRefused(PermanentError):
    """A browser's request for channel credentials, refused.

    ``status`` is the HTTP status to answer (400 a malformed request, 401 no
    user, 403 a refusal) and ``reason`` a short code a client can switch on
    (``no_channel_pattern``, ``channel_refused``, ``member_required``...).
    """

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def split_prefix(channel: str) -> tuple[str, str]:
    """``(prefix, rest)``: ``("presence-", "room.7")``; ``("", name)`` without a prefix."""
    for prefix in PREFIXES:
        if channel.startswith(prefix):
            return prefix, channel[len(prefix) :]
    return "", channel


@dataclass(frozen=True)
class ChannelPattern:
    """One declared pattern, compiled, with its callback."""

    text: str
    #: The kind prefix the pattern was written with; ``None``: it matches every kind.
    prefix: str | None
    regex: re.Pattern[str] = field(repr=False)
    converters: Mapping[str, Callable[[str], Any]] = field(repr=False)
    callback: Callable[..., Any] = field(repr=False)

    @classmethod
    def compile(cls, text: str, callback: Callable[..., Any]) -> ChannelPattern:
        """Check ``text`` and the callback's signature now, at declaration, not per request."""
        if not isinstance(text, str):
            raise TypeError(f"a channel pattern is a string, got {type(text).__name__}")
        prefix, rest = split_prefix(text)
        if not rest:
            raise ValueError(f"channel pattern {text!r} names no channel after its prefix")
        regex, converters = _compile(text, rest)
        _check_signature(text, callback, converters)
        return cls(text, prefix or None, regex, converters, callback)

    def match(self, channel: str) -> dict[str, Any] | None:
        """The parameters of ``channel`` if this pattern matches it, else ``None``."""
        prefix, rest = split_prefix(channel)
        if self.prefix is not None and prefix != self.prefix:
            return None
        found = self.regex.fullmatch(rest)
        if found is None:
            return None
        return {name: convert(found[name]) for name, convert in self.converters.items()}


def _compile(text: str, rest: str) -> tuple[re.Pattern[str], dict[str, Callable[[str], Any]]]:
    """The regex of a pattern's prefix-less part, and a converter per parameter."""
    parts: list[str] = []
    converters: dict[str, Callable[[str], Any]] = {}
    position = 0
    for found in _PARAMETER.finditer(rest):
        literal = rest[position : found.start()]
        if not literal and parts:
            raise ValueError(f"channel pattern {text!r}: parameters must be apart, not adjacent")
        parts.append(_literal(text, literal))
        name, expression, convert = _parameter(text, found[1], converters)
        parts.append(f"(?P<{name}>{expression})")
        converters[name] = convert
        position = found.end()
    parts.append(_literal(text, rest[position:]))
    return re.compile("".join(parts)), converters


def _literal(text: str, literal: str) -> str:
    if not _LITERAL.fullmatch(literal):
        raise ValueError(
            f"channel pattern {text!r}: {literal!r} has characters no channel name may have "
            "(A-Z a-z 0-9 _ - = @ , . ; and {parameters})"
        )
    return re.escape(literal)


def _parameter(
    text: str, body: str, seen: Mapping[str, object]
) -> tuple[str, str, Callable[[str], Any]]:
    """``(name, regex, converter)`` of one ``{name}`` or ``{name:converter}``."""
    name, _, kind = body.partition(":")
    if not _NAME.fullmatch(name):
        raise ValueError(f"channel pattern {text!r}: {{{body}}} is not {{name}} or {{name:int}}")
    if name in seen:
        raise ValueError(f"channel pattern {text!r}: parameter {name!r} appears twice")
    if (kind or "str") not in _CONVERTERS:
        raise ValueError(
            f"channel pattern {text!r}: unknown converter {kind!r} in {{{body}}} "
            f"(known: {', '.join(_CONVERTERS)})"
        )
    expression, convert = _CONVERTERS[kind or "str"]
    return name, expression, convert


def _check_signature(text: str, callback: Callable[..., Any], parameters: Iterable[str]) -> None:
    """The callback must take the user and then every parameter by name."""
    if not callable(callback):
        raise TypeError(f"the callback of channel pattern {text!r} is not callable")
    try:
        inspect.signature(callback).bind(None, **dict.fromkeys(parameters))
    except TypeError as exc:
        names = ", ".join(["user", *parameters])
        raise TypeError(
            f"the callback of channel pattern {text!r} must take ({names}): {exc}"
        ) from None
    except ValueError:  # no signature to read (some builtins): trust the caller
        return


@dataclass(frozen=True)
class ChannelGrant:
    """A channel a callback granted, and as whom (``None``: no member named)."""

    channel: str
    pattern: str
    params: Mapping[str, Any]
    member: Member | None = None


class ChannelAuth:
    """The application's channel patterns and their callbacks; refuses what none grants."""

    def __init__(self) -> None:
        self._patterns: list[ChannelPattern] = []

    def channel(self, pattern: str) -> Callable[[C], C]:
        """Decorator: ``callback(user, **params)`` decides who may join channels of ``pattern``."""

        def register(callback: C) -> C:
            self.add(pattern, callback)
            return callback

        return register

    def add(self, pattern: str, callback: Callable[..., Any]) -> None:
        """Declare ``pattern`` (checked now, with the callback's signature)."""
        if any(known.text == pattern for known in self._patterns):
            raise ValueError(f"channel pattern {pattern!r} is declared twice")
        self._patterns.append(ChannelPattern.compile(pattern, callback))

    @property
    def patterns(self) -> list[str]:
        """The declared patterns, in the order they are tried."""
        return [pattern.text for pattern in self._patterns]

    def match(self, channel: str) -> tuple[ChannelPattern, dict[str, Any]] | None:
        """The first pattern matching ``channel``, with its parameters; ``None`` if none does."""
        for pattern in self._patterns:
            params = pattern.match(channel)
            if params is not None:
                return pattern, params
        return None

    async def grant(self, user: Any, channel: str) -> ChannelGrant:
        """Ask the matching callback about ``user`` on ``channel``; ``ClientAuthRefused`` if no."""
        try:
            validate_channel(channel)
        except InvalidChannel as exc:
            raise ClientAuthRefused(str(exc), status=400, reason="bad_request") from None
        found = self.match(channel)
        if found is None:
            raise ClientAuthRefused(
                f"no channel pattern matches {channel!r}", status=403, reason="no_channel_pattern"
            )
        pattern, params = found
        result = await call(pattern.callback, user, **params)
        member = _member_granted(result, pattern.text, channel)
        if member is None and channel_kind(channel) == "presence":
            raise ClientAuthRefused(
                f"presence channel {channel!r} needs a member, and the callback of "
                f"{pattern.text!r} returned True: return a Member or a dict with an 'id'",
                status=403,
                reason="member_required",
            )
        return ChannelGrant(channel, pattern.text, params, member)

    async def grant_all(self, user: Any, channels: Iterable[str]) -> list[ChannelGrant]:
        """``grant`` each channel in turn; the first refusal refuses them all."""
        return [await self.grant(user, channel) for channel in channels]


def _member_granted(result: object, pattern: str, channel: str) -> Member | None:
    """What a callback's answer grants: nothing (raise), the channel, or the channel as a member."""
    if result is True:
        return None
    if result is None or result is False:
        raise ClientAuthRefused(f"not allowed on {channel!r}", status=403, reason="channel_refused")
    if isinstance(result, Member):
        return result
    if isinstance(result, Mapping):
        return _member_of(result, pattern)
    raise TypeError(
        f"the callback of channel pattern {pattern!r} returned a {type(result).__name__}: "
        "return True, False or None, a Member, or a dict with an 'id'"
    )


def _member_of(info: Mapping[Any, Any], pattern: str) -> Member:
    """``{"id": 7, "name": "Ada"}`` is ``Member("7", {"name": "Ada"})``."""
    member_id = info.get("id")
    if isinstance(member_id, bool) or not isinstance(member_id, str | int) or member_id == "":
        raise TypeError(
            f"the callback of channel pattern {pattern!r} returned a dict whose 'id' is "
            f"{member_id!r}: a member's id is a non-empty string or an int"
        )
    return Member(str(member_id), {key: value for key, value in info.items() if key != "id"})
