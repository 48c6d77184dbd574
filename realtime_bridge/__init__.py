"""realtime_bridge: database-first real-time publishing, one interface over many vendors.

Publish typed events to Pusher Channels, Ably, Supabase Realtime or a
self-hosted Redis fallback, chosen by one URL; read presence, history and
occupancy the same way everywhere; switch vendors by changing configuration.
"""

from __future__ import annotations

import logging

from .adapters.base import (
    Adapter,
    Capability,
    HistoryPage,
    Limits,
    Member,
    Occupancy,
    PublishResult,
)
from .bridge import Bridge, HistorySource, PublishReceipt
from .catalog import EventCatalog
from .errors import (
    AuthenticationFailed,
    CapabilityNotSupported,
    CircuitOpen,
    ConfigurationError,
    CursorNotFound,
    DatabaseUnavailable,
    DeliveryFailed,
    InvalidChannel,
    InvalidEvent,
    InvalidWebhook,
    PayloadTooLarge,
    PermanentError,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    TransientError,
    VendorUnavailable,
)
from .events import ENVELOPE_VERSION, MAX_CHANNEL_LENGTH, Event, channel_kind, validate_channel
from .ids import new_event_id
from .retry import BreakerState, CircuitBreaker, RetryPolicy
from .settings import BridgeSettings, adapter_from_url, redact_url
from .webhooks import WebhookEvent, WebhookKind

__version__ = "0.1.0"

# A library logs; the application decides where logs go.
logging.getLogger("realtime_bridge").addHandler(logging.NullHandler())

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_CHANNEL_LENGTH",
    "Adapter",
    "AuthenticationFailed",
    "BreakerState",
    "Bridge",
    "BridgeSettings",
    "Capability",
    "CapabilityNotSupported",
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigurationError",
    "CursorNotFound",
    "DatabaseUnavailable",
    "DeliveryFailed",
    "Event",
    "EventCatalog",
    "HistoryPage",
    "HistorySource",
    "InvalidChannel",
    "InvalidEvent",
    "InvalidWebhook",
    "Limits",
    "Member",
    "Occupancy",
    "PayloadTooLarge",
    "PermanentError",
    "PublishReceipt",
    "PublishRejected",
    "PublishResult",
    "RateLimited",
    "RealtimeBridgeError",
    "RetryPolicy",
    "TransientError",
    "VendorUnavailable",
    "WebhookEvent",
    "WebhookKind",
    "__version__",
    "adapter_from_url",
    "channel_kind",
    "new_event_id",
    "redact_url",
    "validate_channel",
]
