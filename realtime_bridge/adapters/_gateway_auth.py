"""Client auth for the self-hosted adapters: tokens for the gateway, signed with a shared secret.

The Redis and memory adapters have no vendor to ask for client credentials.
Their browsers connect to the gateway (``realtime_bridge.gateway``), which
checks an HS256 token naming the channels it opens. With a
``gateway_secret`` an adapter can mint those tokens itself, as pure
computation; without one it does not offer ``client_auth`` at all, so the
Bridge refuses ``authorize`` before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from ..errors import CapabilityNotSupported
from ..gateway import tokens
from .base import Capability, Member

__all__ = ["GatewayClientAuth"]


class GatewayClientAuth:
    """Mixin: ``authorize`` / ``authorize_channels`` for adapters that the gateway serves."""

    scheme: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    _gateway_secret: str | None = None
    _token_ttl: int = tokens.DEFAULT_TTL
    _token_clock: Callable[[], float]

    def _init_client_auth(
        self,
        secret: str | None,
        ttl: int,
        clock: Callable[[], float],
        without: frozenset[Capability],
    ) -> None:
        """Keep the secret (checked), or narrow this instance's capabilities to ``without``."""
        if secret is None:
            self.capabilities = without  # type: ignore[misc]  # this instance only
        self._gateway_secret = None if secret is None else tokens.check_secret(secret)
        self._token_ttl = ttl
        self._token_clock = clock

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def gateway_secret(self) -> str | None:
        """The secret this adapter signs gateway tokens with: an in-process gateway checks them."""
        return self._gateway_secret

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """A gateway token for ``channel``: ``{"token", "expires_at", "expires_in", ...}``.

        The browser passes ``token`` to the gateway (``?token=`` or an
        ``Authorization: Bearer`` header). With ``user``, it may also enter
        presence there as that user. ``socket_id`` is ignored: the gateway has
        no socket ids, the token is not bound to one connection.
        """
        if channel is None:
            raise ValueError("gateway tokens name their channels: pass the channel")
        return self.authorize_channels([channel], user=user)

    def authorize_channels(
        self, channels: Iterable[str], *, user: Member | None = None
    ) -> dict[str, Any]:
        """One token for several channels, for one gateway connection that carries them all."""
        if self._gateway_secret is None:
            raise CapabilityNotSupported(
                adapter=self.name,
                capability=str(Capability.CLIENT_AUTH),
                hint=f"add ?gateway_secret= (the gateway's --secret) to the {self.scheme}:// URL",
            )
        return tokens.grant_token(
            self._gateway_secret,
            channels=channels,
            user=user,
            now=self._token_clock(),
            ttl=self._token_ttl,
        )
