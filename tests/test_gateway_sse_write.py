"""The SSE write path built for big fan-outs: lazy timers, batched writes, the write watchdog.

``bench/gateway_sse.py`` measures what these buy with 10,000 streams; these
tests hold what they must keep: an inbox wait still ends exactly when asked
(its timer may fire early, then waits on), queued events go out in one
write with one ``id:`` each, and a write a client does not take is still cut
after ``send_timeout`` (counted as ``stalled``), while quick writes never are.

The stream is driven at the ASGI level, with a memory feed: no server, no
Redis, nothing timed but the watchdog's own deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.gateway import GatewaySettings, MemoryFeed, issue_token
from realtime_bridge.gateway.entries import Entry
from realtime_bridge.gateway.inbox import WAKE_CHUNK, Inbox
from realtime_bridge.gateway.service import Gateway
from realtime_bridge.gateway.session import Session
from realtime_bridge.gateway.sse import BATCH, SseEndpoint

SECRET = "sse-write-test-secret-0123456789abcdefgh"
CHANNEL = "orders.9"
#: A bound on waits that should end long before it: a hang fails instead of blocking.
PATIENCE = 10.0


def entry(key: tuple[int, int]) -> Entry:
    return Entry(CHANNEL, f"{key[0]}-{key[1]}", b'{"n":%d}' % key[1])


# -- the inbox's lazy timer -------------------------------------------------------------------


async def test_a_wait_cut_short_leaves_its_timer_and_the_next_wait_still_waits_its_full_time() -> (
    None
):
    inbox: Inbox[str] = Inbox(8)
    asyncio.get_running_loop().call_later(0.01, inbox.offer, entry((1, 0)))
    assert isinstance(await inbox.get(0.2), Entry)  # its timer, due at 0.2 s, stays armed

    waiting = asyncio.create_task(inbox.get(30))
    await asyncio.sleep(0.5)  # the old timer fired meanwhile: it must re-arm, not end the wait
    assert not waiting.done()
    inbox.offer(entry((1, 1)))
    async with asyncio.timeout(PATIENCE):
        assert isinstance(await waiting, Entry)


async def test_a_shorter_wait_than_the_armed_timer_re_arms_it_earlier() -> None:
    inbox: Inbox[str] = Inbox(8)
    asyncio.get_running_loop().call_later(0.01, inbox.offer, entry((1, 0)))
    assert isinstance(await inbox.get(60), Entry)  # leaves a timer due in a minute

    async with asyncio.timeout(PATIENCE):  # without re-arming, this would wait the minute
        assert await inbox.get(0.05) is None


async def test_until_ready_is_resolved_at_once_when_something_is_queued_or_no_time_is_left() -> (
    None
):
    inbox: Inbox[str] = Inbox(8)
    assert inbox.until_ready(0).done()
    waiting = inbox.until_ready(30)
    assert not waiting.done() and not inbox.ready
    inbox.request("ping")
    assert inbox.ready
    async with asyncio.timeout(PATIENCE):
        await waiting
    assert inbox.until_ready(30).done()


async def test_one_event_wakes_every_waiting_inbox_a_chunk_at_a_time_in_the_order_offered() -> None:
    inboxes: list[Inbox[str]] = [Inbox(8) for _ in range(3 * WAKE_CHUNK + 5)]
    woken: list[int] = []

    async def wait(index: int) -> None:
        await inboxes[index].until_ready(30)
        woken.append(index)

    waiting = [asyncio.create_task(wait(index)) for index in range(len(inboxes))]
    await asyncio.sleep(0)  # every task now waits
    shared = entry((1, 0))
    for inbox in reversed(inboxes):  # as a hub would: one event, offered to each in turn
        inbox.offer(shared)
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(*waiting)

    assert woken == list(reversed(range(len(inboxes))))


# -- one stream at the ASGI level -------------------------------------------------------------


@dataclass
class Client:
    """The ASGI side of one SSE request: what the stream sent, and a switch to stop reading."""

    bodies: list[bytes] = field(default_factory=list)
    reading: bool = True
    disconnect: asyncio.Event = field(default_factory=asyncio.Event)
    wrote: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self) -> dict[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        if not self.reading and message.get("more_body"):
            await asyncio.Event().wait()  # a client that stopped reading: the write never ends
        self.bodies.append(message["body"])
        self.wrote.set()

    def text(self) -> str:
        return b"".join(self.bodies).decode()


@dataclass
class Rig:
    gateway: Gateway
    client: Client
    stream: asyncio.Task[None]

    def session(self) -> Session[Any]:
        [session] = self.gateway.sessions
        return session

    async def until(self, what: str) -> None:
        async with asyncio.timeout(PATIENCE):
            while what not in self.client.text():
                self.client.wrote.clear()
                await self.client.wrote.wait()

    def next_keys(self, count: int) -> list[tuple[int, int]]:
        """Stream positions after the session's, as Redis would assign them next."""
        milliseconds, sequence = map(int, self.session().positions[CHANNEL].split("-"))
        return [(milliseconds, sequence + 1 + index) for index in range(count)]


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    options = getattr(request, "param", {})
    adapter = MemoryAdapter.from_url(f"memory://?gateway_secret={SECRET}")
    gateway = Gateway(GatewaySettings(**options), feed=MemoryFeed(adapter))
    token = issue_token(SECRET, channels=[CHANNEL], now=time.time())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/sse",
        "query_string": f"token={token}".encode(),
        "headers": [],
    }
    client = Client()
    stream = asyncio.create_task(SseEndpoint(gateway)(scope, client.receive, client.send))  # type: ignore[arg-type]
    rig = Rig(gateway, client, stream)
    try:
        await rig.until("event: ready")
        yield rig
    finally:
        client.disconnect.set()
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(stream, return_exceptions=True)
        await gateway.aclose()


async def test_queued_events_go_out_in_one_write_each_with_its_own_id(rig: Rig) -> None:
    keys = rig.next_keys(5)
    before = len(rig.client.bodies)
    for key in keys:  # all queued before the stream runs again
        rig.session().inbox.offer(entry(key))
    await rig.until(f"{CHANNEL}:{keys[-1][0]}-{keys[-1][1]}")

    [body] = rig.client.bodies[before:]
    frames = body.decode().split("\n\n")[:-1]
    assert [frame.splitlines()[0] for frame in frames] == [
        f"id: {CHANNEL}:{milliseconds}-{sequence}" for milliseconds, sequence in keys
    ]
    assert all(frame.splitlines()[1].startswith('data: {"n":') for frame in frames)


async def test_a_long_queue_is_written_in_batches_of_at_most_batch(rig: Rig) -> None:
    keys = rig.next_keys(BATCH + 3)
    before = len(rig.client.bodies)
    for key in keys:
        rig.session().inbox.offer(entry(key))
    await rig.until(f"{CHANNEL}:{keys[-1][0]}-{keys[-1][1]}")

    counts = [
        body.count(b"\nid: ") + body.startswith(b"id: ") for body in rig.client.bodies[before:]
    ]
    assert counts == [BATCH, 3]


@pytest.mark.parametrize("rig", [{"send_timeout": 0.2}], indirect=True)
async def test_a_write_the_client_does_not_take_is_cut_after_send_timeout(rig: Rig) -> None:
    rig.client.reading = False
    rig.session().inbox.offer(entry(rig.next_keys(1)[0]))

    async with asyncio.timeout(PATIENCE):
        await rig.stream  # the watchdog ended the stream; nothing raised out of the endpoint

    assert rig.gateway.stats()["totals"]["stalled"] == 1
    assert not rig.gateway.sessions


@pytest.mark.parametrize("rig", [{"send_timeout": 0.2}], indirect=True)
async def test_quick_writes_spanning_many_send_timeouts_are_never_cut(rig: Rig) -> None:
    for key in rig.next_keys(12):  # 0.6 s of writes: the watchdog fires between some of them
        rig.session().inbox.offer(entry(key))
        await asyncio.sleep(0.05)
    await rig.until(f"{CHANNEL}:{key[0]}-{key[1]}")

    assert not rig.stream.done()
    assert "stalled" not in rig.gateway.stats()["totals"]
