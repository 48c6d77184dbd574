"""How channels and member ids become NATS subject tokens and key-value keys, reversibly.

A NATS subject is made of tokens separated by ``.``; ``*`` and ``>`` are
wildcards, whitespace ends a subject, and JetStream's key-value keys allow only
``A-Z a-z 0-9 _ - = / .``. Portable channel names (``A-Z a-z 0-9 _ - = @ , . ;``)
may hold ``.`` (which would split the channel into several tokens, so that
``a..b`` or ``.a`` would not even be a valid subject) and ``@ , ;`` (which
key-value keys refuse). So each channel becomes exactly **one** token: the
characters ``A-Z a-z 0-9 _ -`` stay as they are, and every other byte of its
UTF-8 form is written ``=XX`` (``=`` and two upper-case hex digits), as in
quoted-printable. ``orders.42`` becomes ``orders=2E42``; ``=`` itself becomes
``=3D``, so decoding is unambiguous. Member ids (any text) are encoded the same
way, so a presence key is ``<channel token>.<member token>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "NAME_RULE",
    "NatsNames",
    "PREFIX_RULE",
    "check_name",
    "check_prefix",
    "decode_token",
    "encode_token",
    "subject_matches",
]

_KEPT = re.compile(r"[A-Za-z0-9_\-]+")
_KEPT_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOKEN = re.compile(r"(?:[A-Za-z0-9_\-]|=[0-9A-F]{2})+")
_PREFIX = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,32}")

#: What ``prefix=`` may be: subject tokens without wildcards, joined by dots.
PREFIX_RULE = "tokens of A-Z a-z 0-9 _ - joined by '.', such as 'rb' or 'app.rt'"
#: What ``stream=`` may be (a JetStream stream name that is also a valid bucket name).
NAME_RULE = "1 to 32 characters from A-Z a-z 0-9 _ -"


def encode_token(text: str) -> str:
    """``text`` as one subject token (and key-value key part): ``orders.42`` -> ``orders=2E42``."""
    if not text:
        raise ValueError("an empty name cannot be a NATS subject token")
    if _KEPT.fullmatch(text):
        return text
    return "".join(chr(byte) if byte in _KEPT_BYTES else f"={byte:02X}" for byte in text.encode())


def decode_token(token: str) -> str:
    """The text ``encode_token`` made ``token`` from; ``ValueError`` if it made no such token."""
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"{token!r} is not a token encode_token made")
    if "=" not in token:
        return token
    raw = bytearray()
    position = 0
    while position < len(token):
        if token[position] == "=":
            raw.append(int(token[position + 1 : position + 3], 16))
            position += 3
        else:
            raw.append(ord(token[position]))
            position += 1
    return raw.decode()


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether NATS delivers ``subject`` to a subscription on ``pattern`` (``*``, ``>``)."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, part in enumerate(wanted):
        if part == ">":
            return len(tokens) > index
        if index >= len(tokens) or (part != "*" and part != tokens[index]):
            return False
    return len(tokens) == len(wanted)


def check_prefix(prefix: str) -> str | None:
    """``None`` if ``prefix`` is a usable subject prefix, else what is wrong with it."""
    return None if _PREFIX.fullmatch(prefix) else f"must be {PREFIX_RULE}"


def check_name(name: str) -> str | None:
    """``None`` if ``name`` is a usable stream name, else what is wrong with it."""
    return None if _NAME.fullmatch(name) else f"must be {NAME_RULE}"


@dataclass(frozen=True, slots=True)
class NatsNames:
    """Where one adapter's data lives in NATS: its stream, subjects and presence bucket."""

    prefix: str
    stream: str

    @property
    def bucket(self) -> str:
        """The key-value bucket of presence members."""
        return f"{self.stream}_presence"

    @property
    def presence_stream(self) -> str:
        """The stream JetStream keeps the bucket in."""
        return f"KV_{self.bucket}"

    @property
    def subjects(self) -> str:
        """What the stream captures: every channel's subject under the prefix."""
        return f"{self.prefix}.*"

    def subject(self, channel: str) -> str:
        """The subject of ``channel``'s events: ``rb.orders=2E42`` for ``orders.42``."""
        return f"{self.prefix}.{encode_token(channel)}"

    def presence_key(self, channel: str, member_id: str) -> str:
        return f"{encode_token(channel)}.{encode_token(member_id)}"

    def presence_subjects(self, channel: str) -> str:
        """Every member key of ``channel``, as a subject filter on the bucket's stream."""
        return f"$KV.{self.bucket}.{encode_token(channel)}.*"
