"""The options a ``redis://`` URL may carry, known without importing the redis package.

The Redis adapter reads them; the gateway's settings check the same URL
(and the demo builds one) without needing the ``redis`` extra installed.
"""

from __future__ import annotations

__all__ = ["REDIS_OPTIONS"]

REDIS_OPTIONS = frozenset(
    {
        "history",
        "exact",
        "dedupe_ttl",
        "history_ttl",
        "prefix",
        "cluster",
        "timeout",
        "max_connections",
        "max_payload",
        "gateway_secret",
        "gateway_token_ttl",
    }
)
