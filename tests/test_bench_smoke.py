"""The publish benchmark's harness works: every peer yields a figure and the report renders.

Tiny event counts, one round: this proves the harness, not the speed, so it
asserts no timing and no ratio (those depend on the machine; see BENCHMARKS.md).
"""

from __future__ import annotations

import uuid

import redis

from bench import redis_publish


async def test_every_peer_yields_a_figure_and_no_key_is_left(redis_server: str) -> None:
    prefix = f"rbbench-test-{uuid.uuid4().hex[:12]}"

    report = await redis_publish.measure(
        redis_server, single=20, batched=200, rounds=1, prefix=prefix
    )

    assert [figure.peer.key for figure in report.figures] == [
        peer.key for peer in redis_publish.PEERS
    ]
    for figure in report.figures:
        assert len(figure.rates) == 1
        assert figure.median > 0
        assert report.ratio(figure) > 0
    assert report.machine["redis server"] != "unknown"
    client = redis.Redis.from_url(redis_server)
    try:
        assert not list(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()


async def test_report_renders_both_tables(redis_server: str) -> None:
    report = await redis_publish.measure(redis_server, single=10, batched=100, rounds=1)

    text = redis_publish.render(report)

    assert "### Single events" in text
    assert "### Batches of 100" in text
    assert all(peer.name in text for peer in redis_publish.PEERS)
    assert "bench/run" in text
