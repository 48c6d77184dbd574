"""Redis as the primary, memory as the fallback, and what the meter saw.

Run: .venv/bin/python examples/redis_with_fallback.py [REDIS_URL]
With a Redis that is down, the events fail over to memory and still arrive.
"""

from __future__ import annotations

import asyncio
import sys

from realtime_bridge import Bridge, Event, RetryPolicy


async def main(redis_url: str) -> None:
    bridge = Bridge.from_url(
        redis_url,
        fallback_urls=["memory://"],
        retry=RetryPolicy(attempts=2, initial_delay=0.01),
    )
    async with bridge:
        events = [
            Event(channel="jobs.7", type="job.progress", data={"percent": pct})
            for pct in (10, 50, 100)
        ]
        receipt = await bridge.publish_many(events)
        print(f"delivered by {receipt.adapter} (failed over: {receipt.failed_over})")
        for name, stats in bridge.stats().items():
            print(f"{name}: {stats['events']} events, {stats['failures']} failures")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0?prefix=rbexample"
    asyncio.run(main(url))
