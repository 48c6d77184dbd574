"""The live runs' namespacing transports rewrite exactly the channels a request names."""

from __future__ import annotations

import json

import httpx
from conftest_ably import ChannelNamespace
from conftest_liveblocks import RoomNamespace


def recorder() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return seen, httpx.MockTransport(answer)


async def test_ably_paths_and_batch_channels_are_prefixed() -> None:
    seen, inner = recorder()
    specs = [{"channels": ["a.1", "b.2"], "messages": []}, {"channels": "c.3", "messages": []}]
    async with httpx.AsyncClient(transport=ChannelNamespace("t1-", inner)) as client:
        await client.get("https://ably.test/channels/orders.1/messages?limit=5")
        await client.post("https://ably.test/messages", json=specs)
        await client.get("https://ably.test/time")
    history, batch, other = seen
    assert history.url.raw_path == b"/channels/t1-orders.1/messages?limit=5"
    sent = json.loads(batch.content)
    assert [spec["channels"] for spec in sent] == [["t1-a.1", "t1-b.2"], "t1-c.3"]
    assert batch.headers["content-length"] == str(len(batch.content))
    assert other.url.raw_path == b"/time"


async def test_liveblocks_room_paths_are_prefixed_and_bodies_left_alone() -> None:
    seen, inner = recorder()
    body = {"event": {"channel": "orders.1"}}
    async with httpx.AsyncClient(transport=RoomNamespace("t2-", inner)) as client:
        await client.post("https://lb.test/v2/rooms/orders.1/broadcast_event", json=body)
    [request] = seen
    assert request.url.raw_path == b"/v2/rooms/t2-orders.1/broadcast_event"
    assert json.loads(request.content) == body
