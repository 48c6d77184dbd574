"""The NATS publish benchmark's harness works: every peer yields a figure, the section renders,
and nothing is left on the servers.

Tiny event counts, one round, against a private nats-server the benchmark starts itself:
this proves the harness, not the speed, so it asserts no timing and no ratio.
"""

from __future__ import annotations

import uuid

import redis

from bench import compose, nats_publish


async def test_every_peer_yields_a_figure_and_the_section_renders(redis_server: str) -> None:
    tag = f"test{uuid.uuid4().hex[:8]}"

    report = await nats_publish.measure(events=200, rounds=1, redis_url=redis_server, tag=tag)

    assert [figure.peer.key for figure in report.figures] == [p.key for p in nats_publish.PEERS]
    for figure in report.figures:
        assert len(figure.samples) == 1
        assert figure.samples[0].events == 200
        assert figure.median > 0
        assert report.ratio(figure) > 0
    assert report.machine["nats-server"].startswith("v2.")
    text = nats_publish.render(report)
    assert text.startswith("## Publish throughput: NATS adapter")
    assert all(peer.name in text for peer in nats_publish.PEERS)
    assert "bench/run nats_publish" in text
    with redis.Redis.from_url(redis_server) as client:  # the Redis peer's keys are gone
        assert not list(client.scan_iter(match=f"rbbench-{tag}:*", count=1000))


def test_the_benchmark_is_listed_where_bench_run_finds_it() -> None:
    assert "nats_publish" in compose.SECTIONS
    [listed] = [
        line for line in (compose.BENCH / "run").read_text().splitlines() if "all=(" in line
    ]
    assert "nats_publish" in listed.split("(", 1)[1].split(")", 1)[0].split()
