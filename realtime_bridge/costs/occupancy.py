"""Fan-out from the adapters: how many subscribers each channel has, right now.

Every vendor bills deliveries, so the subscribers per channel matter as much
as the events. Pusher (channel info), Ably (occupancy metrics) and the Redis
gateway count them: ``bridge.occupancy(channel)`` asks the configured primary
adapter. A sample is one instant; taken during a representative hour it is
still better than a guess, and the report says which one it used.

Sampling costs something on some vendors (Pusher bills every REST call as a
message), so only the busiest ``limit`` channels are asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..bridge import Bridge
from ..errors import CapabilityNotSupported, ConfigurationError, RealtimeBridgeError

__all__ = ["DEFAULT_SAMPLE_LIMIT", "sample_subscribers"]

logger = logging.getLogger("realtime_bridge")

DEFAULT_SAMPLE_LIMIT = 50
_CONCURRENCY = 4


async def _one(bridge: Bridge, channel: str, gate: asyncio.Semaphore) -> int | None:
    async with gate:
        try:
            occupancy = await bridge.occupancy(channel)
        except CapabilityNotSupported as exc:
            raise ConfigurationError(
                f"cannot sample subscribers: {exc}; state them with --subscribers-per-channel"
            ) from exc
        except RealtimeBridgeError as exc:
            logger.warning("occupancy of %s not sampled: %s", channel, exc)
            return None
    # Presence channels count members, not subscriptions (Pusher's user_count).
    return occupancy.subscribers if occupancy.subscribers is not None else occupancy.members


async def sample_subscribers(
    bridge: Bridge, channels: Iterable[str], *, limit: int = DEFAULT_SAMPLE_LIMIT
) -> dict[str, int]:
    """Subscribers now, per channel, for the first ``limit`` of ``channels`` (pass the
    busiest first); a channel the adapter could not count is left out."""
    if limit < 1:
        raise ValueError(f"limit must be 1 or more, got {limit}")
    chosen = list(dict.fromkeys(channels))[:limit]
    gate = asyncio.Semaphore(_CONCURRENCY)
    counts = await asyncio.gather(*(_one(bridge, channel, gate) for channel in chosen))
    return {c: n for c, n in zip(chosen, counts, strict=True) if n is not None}
