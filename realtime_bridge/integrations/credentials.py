"""What a browser gets for the channels it was granted, in the configured vendor's format.

The callbacks of ``ChannelAuth`` decide *whether*; this module turns their
grants into the body the browser's SDK expects from its auth endpoint, from
the Bridge's primary adapter:

- Pusher: ``{"auth": "key:signature"}`` (and ``channel_data`` on presence
  channels), for the ``socket_id`` pusher-js sent;
- Ably: a signed TokenRequest (or ``{"token": <Ably JWT>}``);
- Supabase: a user JWT for ``setAuth``; several channels share one token;
- Redis and memory (the gateway): a gateway token; several channels share one;
- Liveblocks: ``{"token": ...}``, an access token Liveblocks itself signs,
  which is network I/O, so it is awaited from the adapter (``authorize_room``):
  the Bridge's synchronous ``authorize`` cannot give one.

Vendors are told apart by what their adapter can do, not by name, so an
adapter added later with the same abilities is served the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..adapters.base import Capability, Member
from ..bridge import Bridge
from .channels import ChannelGrant, ClientAuthRefused

__all__ = ["ChannelsAuthorizer", "RoomAuthorizer", "check_client_auth", "client_credentials"]


@runtime_checkable
class RoomAuthorizer(Protocol):
    """An adapter whose vendor signs browser tokens itself, on request (Liveblocks)."""

    async def authorize_room(self, room: str, *, user: Member) -> dict[str, Any]: ...


@runtime_checkable
class ChannelsAuthorizer(Protocol):
    """An adapter that puts several channels in one credential (Supabase, the gateway)."""

    def authorize_channels(
        self, channels: Sequence[str], *, user: Member | None
    ) -> dict[str, Any]: ...


def check_client_auth(bridge: Bridge) -> None:
    """Raise ``CapabilityNotSupported`` now, at startup, unless browsers can be authorised.

    An endpoint built on a Bridge that cannot authorise browsers (``redis://``
    without ``gateway_secret``, Supabase without ``jwt_secret``, NATS) would fail
    every request; it fails once, where the app is assembled, with the hint.
    """
    if not isinstance(bridge.primary, RoomAuthorizer):
        bridge.primary.require(Capability.CLIENT_AUTH)


async def client_credentials(
    bridge: Bridge, grants: Sequence[ChannelGrant], *, socket_id: str | None = None
) -> dict[str, Any]:
    """The JSON body for the browser: one credential for every channel in ``grants``.

    Raises ``ClientAuthRefused`` (400) when the vendor cannot do what was
    asked (several channels in one Pusher or Ably request, a malformed
    ``socket_id``, a public Pusher channel), or (403) when the grants name
    different members, or Liveblocks is asked for a token naming none.
    """
    if not grants:
        raise ClientAuthRefused("no channel was asked for", status=400, reason="bad_request")
    member = _one_member(grants)
    adapter = bridge.primary
    try:
        if isinstance(adapter, RoomAuthorizer):
            return await _room_token(adapter, grants, member)
        if len(grants) == 1:
            return bridge.authorize(grants[0].channel, user=member, socket_id=socket_id)
        if not isinstance(adapter, ChannelsAuthorizer):
            raise ClientAuthRefused(
                f"{adapter.scheme} credentials name one channel: ask for each apart",
                status=400,
                reason="bad_request",
            )
        adapter.require(Capability.CLIENT_AUTH)
        return adapter.authorize_channels([grant.channel for grant in grants], user=member)
    except ValueError as exc:  # what the vendor's rules refuse, named by the adapter
        raise ClientAuthRefused(str(exc), status=400, reason="bad_request") from exc


def _one_member(grants: Sequence[ChannelGrant]) -> Member | None:
    """The member the grants name; one credential cannot carry two identities."""
    members = [grant.member for grant in grants if grant.member is not None]
    if any(member != members[0] for member in members[1:]):
        raise ClientAuthRefused(
            "the channels were granted as different members: ask for them apart",
            status=403,
            reason="member_conflict",
        )
    return members[0] if members else None


async def _room_token(
    adapter: RoomAuthorizer, grants: Sequence[ChannelGrant], member: Member | None
) -> dict[str, Any]:
    """Liveblocks: one room per request (its client asks per room), always with a member."""
    if len(grants) != 1:
        raise ClientAuthRefused(
            "Liveblocks tokens are asked for one room at a time", status=400, reason="bad_request"
        )
    [grant] = grants
    if member is None:
        raise ClientAuthRefused(
            f"Liveblocks needs the user, and the callback of {grant.pattern!r} returned True: "
            "return a Member or a dict with an 'id'",
            status=403,
            reason="member_required",
        )
    return await adapter.authorize_room(grant.channel, user=member)
