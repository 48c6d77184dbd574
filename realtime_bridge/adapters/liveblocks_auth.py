"""What a Liveblocks token request says: users, rooms and permissions, checked before any I/O.

Liveblocks signs browser tokens on its own servers, so the backend cannot mint
one locally as it can for Pusher, Ably or Supabase: it asks
``POST /v2/authorize-user`` for an *access token* (the permissions travel in
the token) or ``POST /v2/identify-user`` for an *ID token* (who the user is
and their groups; permissions live on the rooms, set over the REST API). This
module builds those request bodies and refuses, with the field, rule and value
named, what Liveblocks would refuse: a user id over 128 characters, user info
over 1,024 characters of JSON, a room pattern that is not a room id or a
prefix ending in ``*``, more than ten room patterns, an unknown permission.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Member

__all__ = [
    "DEFAULT_PERMISSIONS",
    "MAX_ROOM_ID_LENGTH",
    "MAX_ROOMS_PER_TOKEN",
    "MAX_USER_ID_LENGTH",
    "MAX_USER_INFO_CHARS",
    "PERMISSIONS",
    "access_token_body",
    "check_room_pattern",
    "check_user",
    "id_token_body",
    "user_info_json",
]

#: Liveblocks' limits (docs: "Limits", technical limits).
MAX_ROOM_ID_LENGTH = 128
MAX_USER_ID_LENGTH = 128
MAX_USER_INFO_CHARS = 1024
#: Room ids or patterns one access token may name (Liveblocks refuses an eleventh).
MAX_ROOMS_PER_TOKEN = 10

#: The permissions an access token may grant on a room, as Liveblocks lists them.
PERMISSIONS = frozenset(
    {
        "*:read",
        "*:write",
        "room:read",
        "room:write",
        "room:presence:write",
        "storage:read",
        "storage:write",
        "storage:none",
        "comments:read",
        "comments:write",
        "comments:none",
        "comments:public:read",
        "comments:public:write",
        "comments:public:none",
        "comments:private:read",
        "comments:private:write",
        "comments:private:none",
        "feeds:read",
        "feeds:write",
        "feeds:none",
    }
)

#: What a browser gets by default: it receives the room's events and shows its own presence,
#: and cannot write the room's storage (events go through the outbox, database first).
DEFAULT_PERMISSIONS: tuple[str, ...] = ("room:read", "room:presence:write")

# A room id, or a prefix of at most 128 characters ending in "*", or "*" alone.
_ROOM_PATTERN = re.compile(r"[*]|[^*]{1,128}[*]?")


def user_info_json(info: Mapping[str, Any]) -> str:
    """``info`` as compact JSON, the form whose length Liveblocks limits."""
    return json.dumps(info, separators=(",", ":"), ensure_ascii=False)


def check_user(user: Member) -> None:
    """Refuse a user Liveblocks would refuse: id 1 to 128 characters, info <= 1,024 as JSON."""
    if not isinstance(user, Member):
        raise TypeError(f"user must be a realtime_bridge.Member, got {type(user).__name__}")
    if not user.id or len(user.id) > MAX_USER_ID_LENGTH:
        raise ValueError(
            f"user.id must be 1 to {MAX_USER_ID_LENGTH} characters (Liveblocks' userId limit), "
            f"got {len(user.id)}: {user.id[:40]!r}"
        )
    try:
        size = len(user_info_json(user.info))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"user.info of {user.id!r} must be JSON: {exc}") from None
    if size > MAX_USER_INFO_CHARS:
        raise ValueError(
            f"user.info of {user.id!r} is {size} characters of JSON, over Liveblocks' limit of "
            f"{MAX_USER_INFO_CHARS} (userInfo)"
        )


def check_room_pattern(pattern: str) -> str:
    """A room id, or a prefix ending in ``*``, as an access token's ``permissions`` keys."""
    if not isinstance(pattern, str) or not _ROOM_PATTERN.fullmatch(pattern):
        raise ValueError(
            f"room {str(pattern)[:40]!r} is not a Liveblocks room pattern: a room id of 1 to "
            f"{MAX_ROOM_ID_LENGTH} characters without '*', or such a prefix ending in '*'"
        )
    return pattern


def _permissions(rooms: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    if not rooms:
        raise ValueError("an access token needs at least one room (or pattern) to grant")
    if len(rooms) > MAX_ROOMS_PER_TOKEN:
        raise ValueError(
            f"an access token grants at most {MAX_ROOMS_PER_TOKEN} rooms or patterns "
            f"(Liveblocks' limit), got {len(rooms)}"
        )
    granted: dict[str, list[str]] = {}
    for pattern, permissions in rooms.items():
        check_room_pattern(pattern)
        if isinstance(permissions, str) or not permissions:
            raise ValueError(f"the permissions of room {pattern!r} must be a non-empty list")
        unknown = sorted(set(permissions) - PERMISSIONS)
        if unknown:
            raise ValueError(
                f"unknown Liveblocks permission(s) {unknown} for room {pattern!r}; "
                f"known: {sorted(PERMISSIONS)}"
            )
        granted[pattern] = list(dict.fromkeys(permissions))
    return granted


def access_token_body(
    user: Member,
    rooms: Mapping[str, Sequence[str]],
    *,
    organization_id: str | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v2/authorize-user``: the user, their info and what they may do where."""
    check_user(user)
    body: dict[str, Any] = {"userId": user.id, "permissions": _permissions(rooms)}
    if user.info:
        body["userInfo"] = dict(user.info)
    if organization_id is not None:
        body["organizationId"] = organization_id
    return body


def id_token_body(
    user: Member,
    *,
    groups: Sequence[str] = (),
    organization_id: str | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v2/identify-user``: the user, their info and groups."""
    check_user(user)
    if isinstance(groups, str) or not all(isinstance(group, str) and group for group in groups):
        raise ValueError(f"groups must be a list of non-empty group ids, got {groups!r}")
    body: dict[str, Any] = {"userId": user.id}
    if groups:
        body["groupIds"] = list(groups)
    if user.info:
        body["userInfo"] = dict(user.info)
    if organization_id is not None:
        body["organizationId"] = organization_id
    return body
