"""Row level security on ``realtime.messages``, as declared rules instead of SQL policies.

Supabase authorizes private channels by running the client's JWT against
RLS policies on ``realtime.messages``: SELECT to receive (join, broadcast
and presence), INSERT to send a broadcast or track presence, each for an
extension (``broadcast`` or ``presence``) and a topic (``realtime.topic()``).
Policies are permissive: any matching policy allows. Nothing is allowed
without one, and ``service_role`` bypasses RLS (it has BYPASSRLS in
Postgres). Public channels are not checked at all.

Here a policy is ``Policy(topic, role, sub, insert, select, extension)``:
``topic`` a glob (``fnmatch``: ``room-*``), ``role`` the JWT's ``role``
claim (None: any role, as ``TO public``), ``sub`` its ``sub`` claim (None:
any, as a policy without ``auth.uid()``), ``extension`` one of the two or
None for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

__all__ = ["BYPASS_ROLES", "EXTENSIONS", "Extension", "Policy", "allowed"]

Extension = Literal["broadcast", "presence"]
EXTENSIONS: tuple[Extension, ...] = ("broadcast", "presence")
BYPASS_ROLES = frozenset({"service_role"})


@dataclass(frozen=True)
class Policy:
    topic: str
    role: str | None = None
    sub: str | None = None
    insert: bool = True
    select: bool = True
    extension: Extension | None = None

    def __post_init__(self) -> None:
        if self.extension not in (None, *EXTENSIONS):
            raise ValueError(
                f"extension must be 'broadcast', 'presence' or None, got {self.extension!r}"
            )
        if not (self.insert or self.select):
            raise ValueError("a policy allows insert, select or both")

    def grants(
        self, action: Literal["select", "insert"], extension: Extension, topic: str, claims: Any
    ) -> bool:
        if not (self.select if action == "select" else self.insert):
            return False
        if self.extension is not None and self.extension != extension:
            return False
        if self.role is not None and claims.get("role") != self.role:
            return False
        if self.sub is not None and claims.get("sub") != self.sub:
            return False
        return fnmatchcase(topic, self.topic)


def allowed(
    policies: Iterable[Policy],
    action: Literal["select", "insert"],
    extension: Extension,
    topic: str,
    claims: Mapping[str, Any],
) -> bool:
    """Whether a client with ``claims`` may ``action`` on ``extension`` messages of ``topic``."""
    if claims.get("role") in BYPASS_ROLES:
        return True
    return any(policy.grants(action, extension, topic, claims) for policy in policies)
