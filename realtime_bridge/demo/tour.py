"""A narrated walk-through of realtime_bridge, on in-memory adapters only.

``realtime-bridge demo --tour`` runs it: no server to start, done in well under a
second, so a newcomer sees the whole idea before configuring anything. Each
section does one thing for real and prints what happened: a typed event, a
live listener, single and batch publishing, a duplicate dropped by its id,
history paged with a cursor, presence and occupancy, then an outage that the
Bridge rides out by failing over while a shadow receives copies, and finally
what the Bridge metered.

The demo's typed events live in ``shop.py``, so
``realtime-bridge schema realtime_bridge.demo`` prints a real catalog.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from ..adapters.base import HistoryPage, Member
from ..adapters.memory import MemoryAdapter, Subscription
from ..bridge import Bridge, PublishReceipt
from ..cli import render_table
from ..errors import InvalidChannel
from ..events import Event
from ..testing import FakeAdapter, instant_retry
from .shop import Order, OrderUpdated

__all__ = ["run"]

CHANNEL = "orders.42"
ROOM = "presence-room.7"
#: Generous bound on waiting for the listener; only reached if delivery is broken.
LISTEN_TIMEOUT = 5.0

Write = Callable[[str], object]


def order(status: str) -> OrderUpdated:
    return OrderUpdated(channel=CHANNEL, data=Order(id=42, status=status, total_cents=2599))


def _status(event: Event) -> str:
    return str(json.loads(event.data_json)["status"])


def _receipt(receipt: PublishReceipt) -> str:
    text = f"published {receipt.published} via {receipt.adapter}"
    if receipt.duplicates:
        text += f", dropped duplicate(s) {list(receipt.duplicates)}"
    return text + (" (failed over)" if receipt.failed_over else "")


class _Narrator:
    """Numbered section headings and indented lines, so the output reads as a story."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._section = 0

    def section(self, title: str) -> None:
        self._section += 1
        self._write(f"\n== {self._section}. {title}")

    def say(self, text: str) -> None:
        for line in text.splitlines():
            self._write(f"   {line}")


async def _collect(live: Subscription, count: int) -> list[Event]:
    return [await anext(live) for _ in range(count)]


# -- the happy path: one memory:// adapter ------------------------------------


def _declare(n: _Narrator) -> OrderUpdated:
    n.section("Declare a typed event")
    n.say(
        "class Order(BaseModel): id: int; status: str; total_cents: int\n"
        "class OrderUpdated(Event):\n"
        '    type: Literal["order.updated"] = "order.updated"\n'
        "    data: Order"
    )
    first = order("placed")
    n.say(f"on the wire: {first.encode().decode()}")
    try:
        Event(channel="orders 42", type="order.updated")
    except InvalidChannel as exc:
        n.say(f"bad input is refused before any I/O: {exc}")
    return first


async def _publish(n: _Narrator, bridge: Bridge, first: OrderUpdated) -> list[Event]:
    n.section("Publish one event, then a batch of three")
    n.say(f"bridge.publish(...)      -> {_receipt(await bridge.publish(first))}")
    batch = [order(status) for status in ("paid", "packed", "shipped")]
    n.say(f"bridge.publish_many(...) -> {_receipt(await bridge.publish_many(batch))}")
    return [first, *batch]


def _show_received(n: _Narrator, sent: Sequence[Event], received: Sequence[Event]) -> None:
    n.section("The listener received them, in order")
    for number, event in enumerate(received, start=1):
        n.say(f"{number}. {event.type} {_status(event):<8} id {event.id}")
    same = [e.id for e in received] == [e.id for e in sent]
    n.say(f"same ids, same order as published: {same}")


async def _duplicate(n: _Narrator, bridge: Bridge, first: OrderUpdated) -> None:
    n.section("Publish the same event again (same id): a retry, say")
    n.say(f"bridge.publish(first) -> {_receipt(await bridge.publish(first))}")
    page = await bridge.history(CHANNEL, limit=10)
    n.say(f"history still holds {len(page)} events: the id is the idempotency key")


def _page(label: str, page: HistoryPage) -> str:
    statuses = ", ".join(_status(event) for event in page)
    return f"{label}: {statuses} (has_more={page.has_more})"


async def _history(n: _Narrator, bridge: Bridge) -> None:
    n.section("History, paged with a cursor")
    latest = await bridge.history(CHANNEL, limit=2)
    n.say(_page("history(limit=2)", latest))
    cursor = latest.events[0].id
    older = await bridge.history(CHANNEL, limit=2, before=cursor)
    n.say(_page(f"history(limit=2, before={cursor})", older))


async def _presence(n: _Narrator, bridge: Bridge, memory: MemoryAdapter) -> None:
    n.section("Presence and occupancy")
    await memory.enter_presence(ROOM, Member("alice", {"name": "Alice"}), ttl=30)
    await memory.enter_presence(ROOM, Member("bob", {"name": "Bob"}), ttl=30)
    members = await bridge.presence(ROOM)
    n.say(f"presence({ROOM}): " + ", ".join(f"{m.id} {json.dumps(m.info)}" for m in members))
    for channel in (CHANNEL, ROOM):
        occ = await bridge.occupancy(channel)
        n.say(f"occupancy({channel}): {occ.subscribers} subscriber(s), {occ.members} member(s)")


async def _happy_path(n: _Narrator) -> None:
    memory = MemoryAdapter()
    first = _declare(n)
    async with Bridge(memory, retry=instant_retry()) as bridge, memory.subscribe(CHANNEL) as live:
        n.section(f"Subscribe a live listener to {CHANNEL}")
        n.say(f"async with memory.subscribe({CHANNEL!r}) as live: ... (a bounded queue)")
        listener = asyncio.create_task(_collect(live, 4))
        sent = await _publish(n, bridge, first)
        _show_received(n, sent, await asyncio.wait_for(listener, LISTEN_TIMEOUT))
        await _duplicate(n, bridge, first)
        await _history(n, bridge)
        await _presence(n, bridge, memory)


# -- the outage: a failing primary, a fallback, a shadow ------------------------


async def _outage(n: _Narrator) -> Bridge:
    n.section("An outage: the primary fails, the fallback delivers, a shadow gets copies")
    primary = FakeAdapter(label="fake://primary")
    shadow = FakeAdapter(label="fake://shadow")
    bridge = Bridge(primary, fallbacks=[MemoryAdapter()], shadows=[shadow], retry=instant_retry(3))
    async with bridge:
        primary.fail_next(3)
        n.say("fake://primary will fail its next 3 calls; the retry policy tries 3 times")
        n.say(f"during the outage -> {_receipt(await bridge.publish(order('refunded')))}")
        n.say(f"after the outage  -> {_receipt(await bridge.publish(order('closed')))}")
        await bridge.drain_shadows()
        copies = ", ".join(_status(event) for event in shadow.published)
        n.say(f"fake://shadow received copies of both, never delaying the primary: {copies}")
    return bridge


def _stats_table(bridge: Bridge) -> str:
    headers = ["adapter", "role", "calls", "failures", "events", "bytes", "p50 ms", "last error"]
    keys = ["role", "calls", "failures", "events", "bytes", "latency_p50_ms", "last_error"]
    rows = [
        [name, *("-" if stats[key] is None else str(stats[key]) for key in keys)]
        for name, stats in bridge.stats().items()
    ]
    return render_table(headers, rows)


async def run(write: Write = print) -> None:
    """Run every section, writing the narration line by line with ``write``."""
    n = _Narrator(write)
    write("realtime_bridge demo: everything runs in this process, on memory:// adapters")
    await _happy_path(n)
    bridge = await _outage(n)
    n.section("What the Bridge metered: bridge.stats()")
    n.say(_stats_table(bridge))
    write("\nNext: point REALTIME_BRIDGE_URL at redis://... and run `realtime-bridge doctor`.")


if __name__ == "__main__":
    from ..cli import main

    raise SystemExit(main(["demo", "--tour"]))
