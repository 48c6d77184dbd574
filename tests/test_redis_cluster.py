"""The Redis adapter on a real three-node Redis Cluster (private redis-server processes).

Every key of a channel shares the hash tag ``{channel}``, so one channel lives
on one node; a batch spanning channels is split by hash slot, each part one
atomic script on the node that owns it. These tests pick channels owned by
three different nodes (checked with the server's own ``CLUSTER KEYSLOT`` and
``CLUSTER SLOTS``) and publish, deduplicate, page history, and count presence
and subscribers across them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis_servers import HOST, LiveTap, RedisCluster, running_cluster

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.base import Member
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.errors import ConfigurationError, CursorNotFound


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with running_cluster(3) as started:
        yield started


@pytest.fixture
async def adapter(cluster: RedisCluster) -> AsyncIterator[RedisAdapter]:
    prefix = f"rbc-{uuid.uuid4().hex[:8]}"
    adapter = RedisAdapter.from_url(cluster.url(query=f"prefix={prefix}&history=100"))
    yield adapter
    await adapter.aclose()


async def _slot_owners(cluster: RedisCluster) -> dict[range, int]:
    """Slot range -> port of the primary owning it, as the cluster itself says."""
    async with aioredis.Redis(host=HOST, port=cluster.ports[0]) as client:
        slots = await client.execute_command("CLUSTER", "SLOTS")
    return {range(int(row[0]), int(row[1]) + 1): int(row[2][1]) for row in slots}


async def _channels_on_distinct_nodes(
    cluster: RedisCluster, adapter: RedisAdapter
) -> dict[str, int]:
    """One channel per node: channel -> owning port, slots checked client- and server-side."""
    owners = await _slot_owners(cluster)
    chosen: dict[int, str] = {}
    async with aioredis.Redis(host=HOST, port=cluster.ports[1]) as client:
        for n in range(200):
            channel = f"orders.{n}"
            tag = adapter.keys(channel).tag
            slot = key_slot(tag.encode())
            # The server agrees with redis-py's CRC16 on every key of the channel.
            for key in (tag, adapter.keys(channel).stream, adapter.keys(channel).dedupe("x")):
                assert await client.execute_command("CLUSTER", "KEYSLOT", key) == slot
            port = next(port for slots, port in owners.items() if slot in slots)
            chosen.setdefault(port, channel)
            if len(chosen) == len(cluster.ports):
                break
    assert sorted(chosen) == sorted(cluster.ports), "no channel found for some node"
    slots = {key_slot(adapter.keys(channel).tag.encode()) for channel in chosen.values()}
    assert len(slots) == len(cluster.ports)
    return {channel: port for port, channel in chosen.items()}


async def test_cluster_url_takes_db_zero_only(cluster: RedisCluster) -> None:
    # redis-py's cluster client accepts the /0 path of the documented URL form ...
    client = aioredis.RedisCluster.from_url(f"redis://{HOST}:{cluster.ports[0]}/0")
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    adapter = RedisAdapter.from_url(f"redis://{HOST}:{cluster.ports[0]}/0?cluster=true")
    try:
        await adapter.ping()
    finally:
        await adapter.aclose()
    # ... and a cluster has no other database: one clear configuration error, no secret.
    with pytest.raises(ConfigurationError, match="only database 0") as caught:
        RedisAdapter.from_url(f"redis://:hunter2@{HOST}:{cluster.ports[0]}/1?cluster=true")
    assert "hunter2" not in str(caught.value)
    assert ":***@" in str(caught.value)


async def test_batch_across_nodes_is_published_once_per_id(
    cluster: RedisCluster, adapter: RedisAdapter
) -> None:
    channels = await _channels_on_distinct_nodes(cluster, adapter)
    names = list(channels)
    # Interleaved, so the batch is split into one part per slot and order must hold per channel.
    events = [
        Event(channel=names[i % len(names)], type="order.updated", data={"n": i}) for i in range(12)
    ]
    topics = [adapter.keys(channel).topic for channel in names]
    async with (
        LiveTap(cluster.ports[0], topics) as tap0,
        LiveTap(cluster.ports[1], topics) as tap1,
        LiveTap(cluster.ports[2], topics) as tap2,
    ):
        result = await adapter.publish([*events, events[0], events[5]])
        assert result.published == 12
        assert sorted(result.duplicates) == sorted([events[0].id, events[5].id])

        again = await adapter.publish(events)
        assert again.published == 0
        assert sorted(again.duplicates) == sorted(event.id for event in events)

        fresh = [Event(channel=name, type="order.updated", data={"fresh": True}) for name in names]
        mixed = await adapter.publish([events[1], fresh[0], events[2], fresh[1], fresh[2]])
        assert mixed.published == 3
        assert sorted(mixed.duplicates) == sorted([events[1].id, events[2].id])

        expected = [*events, *fresh]
        for tap in (tap0, tap1, tap2):  # PUBLISH reaches subscribers on every node
            await tap.collect_ids(event.id for event in expected)
            assert sorted(tap.ids()) == sorted(event.id for event in expected)  # each once
            for name in names:
                seen = [m.event.id for m in tap.messages if m.event.channel == name]
                assert seen == [e.id for e in expected if e.channel == name]
            for message in tap.messages:
                assert message.topic == adapter.keys(message.event.channel).topic

    for name in names:
        page = await adapter.history(name, limit=50)
        assert [event.id for event in page] == [e.id for e in expected if e.channel == name]
        assert not page.has_more


async def test_history_cursors_per_channel(cluster: RedisCluster, adapter: RedisAdapter) -> None:
    first, second, _ = await _channels_on_distinct_nodes(cluster, adapter)
    ours = [Event(channel=first, type="tick", data={"n": n}) for n in range(5)]
    theirs = [Event(channel=second, type="tick", data={"n": n}) for n in range(3)]
    await adapter.publish([e for pair in zip(ours, theirs, strict=False) for e in pair] + ours[3:])

    latest = await adapter.history(first, limit=2)
    assert [e.id for e in latest] == [ours[3].id, ours[4].id]
    assert latest.has_more
    before = await adapter.history(first, limit=2, before=ours[3].id)
    assert [e.id for e in before] == [ours[1].id, ours[2].id]
    assert before.has_more
    oldest = await adapter.history(first, limit=2, before=ours[1].id)
    assert [e.id for e in oldest] == [ours[0].id]
    assert not oldest.has_more
    after = await adapter.history(first, limit=3, after=ours[0].id)
    assert [e.id for e in after] == [ours[1].id, ours[2].id, ours[3].id]
    assert after.has_more
    assert [e.id for e in await adapter.history(second, limit=10)] == [e.id for e in theirs]

    # A cursor from a channel on another node is unknown here: a clear error, not CROSSSLOT.
    with pytest.raises(CursorNotFound):
        await adapter.history(first, after=theirs[0].id)


async def test_presence_and_occupancy_across_nodes(
    cluster: RedisCluster, adapter: RedisAdapter
) -> None:
    channels = list(await _channels_on_distinct_nodes(cluster, adapter))
    for n, channel in enumerate(channels):
        await adapter.enter_presence(channel, Member(f"user-{n}", {"n": n}), ttl=60)
        await adapter.enter_presence(channel, Member("shared", {}), ttl=60)
    for n, channel in enumerate(channels):
        assert await adapter.presence(channel) == [
            Member("shared", {}),
            Member(f"user-{n}", {"n": n}),
        ]

    await adapter.leave_presence(channels[0], "shared")
    assert await adapter.presence(channels[0]) == [Member("user-0", {"n": 0})]

    topic = adapter.keys(channels[0]).topic
    # Subscribers of one channel, one on each node: occupancy counts all of them.
    async with (
        LiveTap(cluster.ports[0], [topic]),
        LiveTap(cluster.ports[1], [topic]),
        LiveTap(cluster.ports[2], [topic]),
    ):
        occupancy = await adapter.occupancy(channels[0])
        assert (occupancy.subscribers, occupancy.members) == (3, 1)
    occupancy = await adapter.occupancy(channels[1])
    assert (occupancy.subscribers, occupancy.members) == (0, 2)


async def test_bridge_from_cluster_url(cluster: RedisCluster) -> None:
    prefix = f"rbc-{uuid.uuid4().hex[:8]}"
    async with Bridge.from_url(cluster.url(query=f"prefix={prefix}")) as bridge:
        events = [Event(channel=f"room.{n}", type="said", data={"n": n}) for n in range(10)]
        receipt = await bridge.publish_many(events)
        assert (receipt.published, receipt.failed_over) == (10, False)
        assert (await bridge.publish_many(events)).published == 0
        for event in events:
            assert [e.id for e in await bridge.history(event.channel)] == [event.id]
