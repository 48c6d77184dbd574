"""The adapter contract: what every vendor or server must offer the Bridge.

An adapter is a small class that speaks one vendor's protocol. It declares up
front what it can do (``capabilities``) and how much it accepts (``limits``),
so the Bridge refuses an unsupported or oversized call before any I/O, and a
team can compare adapters on paper before switching. Only ``publish`` is
required; a capability an adapter declares must be implemented, which is
checked when the class is defined, not when a user first calls it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ..errors import CapabilityNotSupported, PayloadTooLarge
from ..events import Event

if TYPE_CHECKING:
    from ..webhooks import WebhookEvent

__all__ = [
    "Adapter",
    "Capability",
    "HistoryPage",
    "Limits",
    "Member",
    "Occupancy",
    "PublishResult",
]


class Capability(StrEnum):
    """Something an adapter may support."""

    PUBLISH = "publish"
    BATCH = "batch"
    PRESENCE = "presence"
    HISTORY = "history"
    OCCUPANCY = "occupancy"
    IDEMPOTENT = "idempotent"
    CLIENT_AUTH = "client_auth"
    WEBHOOKS = "webhooks"


#: What the memory and Redis adapters (and the gateway over them) offer: all but
#: the vendor-only client auth and webhooks.
SELF_HOSTED_CAPABILITIES = frozenset(
    {
        Capability.PUBLISH,
        Capability.BATCH,
        Capability.PRESENCE,
        Capability.HISTORY,
        Capability.OCCUPANCY,
        Capability.IDEMPOTENT,
    }
)

# Which method each capability obliges an adapter to override.
_REQUIRED_METHOD = {
    Capability.PRESENCE: "presence",
    Capability.HISTORY: "history",
    Capability.OCCUPANCY: "occupancy",
    Capability.CLIENT_AUTH: "authorize",
    Capability.WEBHOOKS: "verify_webhook",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one adapter accepts; checked before anything is sent."""

    max_payload_bytes: int
    max_events_per_batch: int
    max_channels_per_publish: int = 1
    #: What ``max_payload_bytes`` measures, for error messages.
    payload_measure: str = "data"


@dataclass(frozen=True, slots=True)
class Member:
    """One presence member: a user id and what the app said about them."""

    id: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Occupancy:
    """How busy a channel is: ``None`` where the adapter cannot tell."""

    channel: str
    subscribers: int | None
    members: int | None


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What an adapter did with one batch: how many went out, which ids it dropped."""

    published: int
    duplicates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Events of one channel, oldest first, and whether older ones remain."""

    events: tuple[Event, ...]
    has_more: bool

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


class Adapter(ABC):
    """Base class of every adapter; subclasses set ``scheme`` and ``capabilities``."""

    scheme: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    limits: Limits

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for capability, method in _REQUIRED_METHOD.items():
            declared = capability in getattr(cls, "capabilities", frozenset())
            if declared and getattr(cls, method) is getattr(Adapter, method):
                raise TypeError(
                    f"{cls.__name__} declares {capability} but does not define {method}"
                )

    @property
    def name(self) -> str:
        """A label for logs and errors: the scheme and a redacted location."""
        return self.scheme

    def supports(self, capability: Capability) -> bool:
        """Whether this adapter declares ``capability``."""
        return capability in self.capabilities

    def require(self, capability: Capability) -> None:
        """Raise ``CapabilityNotSupported`` unless this adapter declares ``capability``."""
        if capability not in self.capabilities:
            raise CapabilityNotSupported(adapter=self.name, capability=str(capability))

    def payload_size(self, event: Event) -> int:
        """Bytes of ``event`` counted against ``limits.max_payload_bytes``."""
        return len(event.data_json)

    def check(self, event: Event) -> None:
        """Raise ``PayloadTooLarge`` if ``event`` is over this adapter's limit."""
        size = self.payload_size(event)
        if size > self.limits.max_payload_bytes:
            raise PayloadTooLarge(
                adapter=self.name,
                event_id=event.id,
                size=size,
                limit=self.limits.max_payload_bytes,
                measure=self.limits.payload_measure,
            )

    @abstractmethod
    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """Send a batch of at most ``limits.max_events_per_batch`` events."""

    async def presence(self, channel: str) -> list[Member]:
        """Members present on ``channel``."""
        raise CapabilityNotSupported(adapter=self.name, capability="presence")

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """Up to ``limit`` events of ``channel``, oldest first, around an event-id cursor."""
        raise CapabilityNotSupported(adapter=self.name, capability="history")

    async def occupancy(self, channel: str) -> Occupancy:
        """Subscriber and member counts of ``channel``."""
        raise CapabilityNotSupported(adapter=self.name, capability="occupancy")

    def authorize(
        self,
        channel: str | None,
        *,
        user: Member | None = None,
        socket_id: str | None = None,
    ) -> dict[str, Any]:
        """The JSON body a browser's SDK needs to join ``channel`` (vendor-specific).

        ``user`` is required for presence channels; ``channel=None`` signs the
        user in where the vendor has user authentication (Pusher).
        """
        raise CapabilityNotSupported(adapter=self.name, capability="client_auth")

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Check a webhook's signature and return its entries, normalised.

        Raises ``InvalidWebhook`` when the signature, key or timestamp does not check out.
        """
        raise CapabilityNotSupported(adapter=self.name, capability="webhooks")

    async def ping(self) -> None:
        """Reach the vendor or server once; raise the library's error if that fails."""

    async def aclose(self) -> None:
        """Release connections. Safe to call twice, and before any other call."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
