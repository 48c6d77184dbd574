"""Publish, read history, and watch a live subscriber, all in memory.

Run: .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import asyncio

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.memory import MemoryAdapter


async def main() -> None:
    memory = MemoryAdapter()
    async with Bridge(memory) as bridge, memory.subscribe("orders.42") as live:
        events = [
            Event(channel="orders.42", type="order.updated", data={"id": 42, "status": status})
            for status in ("paid", "packed", "shipped")
        ]
        receipt = await bridge.publish_many(events)
        print(f"published {receipt.published} via {receipt.adapter}")
        for _ in events:
            event = await live.__anext__()
            print(f"live: {event.type} {event.data['status']}")
        page = await bridge.history("orders.42", limit=2)
        print("latest two:", [event.data["status"] for event in page])


if __name__ == "__main__":
    asyncio.run(main())
