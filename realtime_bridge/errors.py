"""The errors realtime_bridge raises, and nothing else.

Every error the library raises derives from one root, and is either
*transient* (the same call may succeed later: retry it, fail over) or
*permanent* (retrying cannot help: fix the input or the configuration)::

    RealtimeBridgeError
    ├── TransientError                 retried with backoff, then failed over
    │   ├── RateLimited                carries ``retry_after`` seconds, when the vendor said
    │   └── VendorUnavailable          network error, timeout, 5xx, server down
    │       ├── CircuitOpen            the breaker is open: the adapter is not even tried
    │       ├── DeliveryFailed         every adapter (primary and fallbacks) failed
    │       └── DatabaseUnavailable    the outbox's database cannot be reached
    └── PermanentError                 never retried
        ├── ConfigurationError         bad URL, unknown scheme, missing setting
        ├── AuthenticationFailed       wrong key, secret or password
        ├── CapabilityNotSupported     the adapter cannot do this; raised before any I/O
        ├── CursorNotFound             a history cursor the adapter no longer knows
        ├── PublishRejected            the vendor refused the request for another reason
        ├── InvalidWebhook             a webhook whose signature, key or age does not check out
        └── InvalidEvent               an event breaks a rule (a ``ValueError`` too)
            ├── InvalidChannel         the channel name is not portable
            └── PayloadTooLarge        bigger than an adapter's limit, in bytes

Misusing an argument (a history ``limit`` out of range, ``before`` and
``after`` together) raises ``ValueError``, as any Python API would; bad
*events* and bad *configuration* always raise the library's own errors.

Errors are raised at the edge where a vendor's or a driver's error is caught,
once, with ``raise ... from exc`` so the original stays on ``__cause__``.
Messages name the adapter, the field, the rule and the value, and never a
secret: URLs in messages are always redacted first.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "CapabilityNotSupported",
    "CircuitOpen",
    "ConfigurationError",
    "CursorNotFound",
    "DatabaseUnavailable",
    "DeliveryFailed",
    "InvalidChannel",
    "InvalidEvent",
    "InvalidWebhook",
    "PayloadTooLarge",
    "PermanentError",
    "PublishRejected",
    "RateLimited",
    "RealtimeBridgeError",
    "TransientError",
    "VendorUnavailable",
]


class RealtimeBridgeError(Exception):
    """Root of every error raised by realtime_bridge."""

    def __init__(self, message: str | None = None, *, adapter: str | None = None) -> None:
        text = message or (self.__doc__ or type(self).__name__).strip()
        if adapter:
            text = f"{adapter}: {text}"
        super().__init__(text)
        self.adapter = adapter


class TransientError(RealtimeBridgeError):
    """The call may succeed if tried again later."""


class PermanentError(RealtimeBridgeError):
    """Trying again cannot help: the input or the configuration must change."""


class RateLimited(TransientError):
    """The vendor asked us to slow down."""

    def __init__(
        self,
        message: str | None = None,
        *,
        adapter: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        if retry_after is not None:
            message = f"{message or 'rate limited'} (retry after {retry_after:g}s)"
        super().__init__(message, adapter=adapter)
        self.retry_after = retry_after


class VendorUnavailable(TransientError):
    """The vendor or server could not be reached, or answered with a server error."""


class CircuitOpen(VendorUnavailable):
    """The adapter failed repeatedly; its circuit breaker is open, so it was not called."""

    def __init__(self, *, adapter: str, retry_in: float) -> None:
        super().__init__(
            f"circuit open after repeated failures; next try in {retry_in:.1f}s",
            adapter=adapter,
        )
        self.retry_in = retry_in


class DeliveryFailed(VendorUnavailable):
    """Every configured adapter failed; ``errors`` maps each adapter to its last error."""

    def __init__(self, errors: dict[str, RealtimeBridgeError]) -> None:
        detail = "; ".join(f"[{exc}]" for exc in errors.values())
        super().__init__(f"every adapter failed: {detail}")
        self.errors = errors


class DatabaseUnavailable(VendorUnavailable):
    """The outbox's database cannot be reached; the relay reconnects by itself."""


class ConfigurationError(PermanentError):
    """The configuration is missing, malformed or names something unknown."""


class AuthenticationFailed(PermanentError):
    """The vendor refused the credentials, or what they may do.

    ``event_id`` names the event refused when the vendor refused one event of a
    batch (a key that may not publish on its channel): the relay holds that
    event's channel and sends the rest.
    """

    def __init__(
        self, message: str | None = None, *, adapter: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message, adapter=adapter)
        self.event_id = event_id


class CapabilityNotSupported(PermanentError):
    """The adapter does not support this call."""

    def __init__(self, *, adapter: str, capability: str, hint: str = "") -> None:
        message = f"does not support {capability!r}"
        super().__init__(f"{message}{'; ' + hint if hint else ''}", adapter=adapter)
        self.capability = capability


class CursorNotFound(PermanentError):
    """The history cursor is unknown to the adapter (too old, or never published there)."""


class PublishRejected(PermanentError):
    """The vendor refused the request; the message says why.

    ``event_id`` names the one event the vendor refused, when it said which (a
    batch that failed for one event): the relay dead-letters that event and
    sends the rest.
    """

    def __init__(
        self, message: str | None = None, *, adapter: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message, adapter=adapter)
        self.event_id = event_id


class InvalidWebhook(PermanentError):
    """A webhook failed verification: missing or wrong signature, unknown key, or too old."""


class InvalidEvent(PermanentError, ValueError):
    """An event breaks one of the envelope's rules."""


class InvalidChannel(InvalidEvent):
    """A channel name breaks the portable channel-name rule."""


class PayloadTooLarge(InvalidEvent):
    """An event is bigger than an adapter accepts."""

    def __init__(self, *, adapter: str, event_id: str, size: int, limit: int, measure: str) -> None:
        super().__init__(
            f"event {event_id} is {size} bytes of {measure}; this adapter accepts at most "
            f"{limit} bytes",
            adapter=adapter,
        )
        self.event_id = event_id
        self.size = size
        self.limit = limit
