"""The SSE fan-out benchmark's harness works: both servers deliver, every delivery is counted.

Tiny counts (20 streams, 3 broadcasts a phase): this proves the harness, not
the speed, so it asserts no timing and no ratio (those depend on the
machine; see BENCHMARKS.md). It does assert what a figure would be
meaningless without: every stream opened, every broadcast reached every
stream exactly once, the section renders, and no process or Redis key is left.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from bench import gateway_sse, sse_load
from bench.gateway_sse import Phase, Settings
from realtime_bridge import Event

TINY = Settings(
    connections=20,
    concurrency=5,
    phases=(Phase(20.0, 3), Phase(50.0, 3)),
    settle=0.1,
    stall=10.0,
    drain=60.0,
)


def children_of_this_process() -> list[str]:
    """The command lines of this process's children still in /proc (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
            found.append(cmdline)
    return found


async def test_both_servers_deliver_every_broadcast_to_every_stream_and_leave_nothing(
    redis_server: str,
) -> None:
    prefix = f"rbbench-test-{uuid.uuid4().hex[:12]}"

    report = await gateway_sse.measure(TINY, redis_server, prefix=prefix)

    assert [run.key for run in report.runs] == [gateway_sse.OURS, gateway_sse.PEER]
    for run in report.runs:
        assert (run.streams, run.failures) == (20, {}), run.key
        assert 0 < run.rss_idle_kib <= run.rss_open_kib
        assert [result.phase for result in run.phases] == list(TINY.phases)
        for result in run.phases:
            assert (result.delivered, result.missed, result.duplicates) == (60, 0, 0), run.key
            assert result.lost == 0
            assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
            assert result.rate > 0
    assert report.machine["redis server"] != "unknown"
    assert not [line for line in children_of_this_process() if "bench.sse_" in line]
    assert not [line for line in children_of_this_process() if "realtime_bridge.cli" in line]
    client = redis.Redis.from_url(redis_server)
    try:
        assert not list(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()

    text = gateway_sse.render(report)

    assert text.startswith("## SSE fan-out: our gateway vs sse-starlette + broadcaster")
    assert "bench/run gateway_sse" in text
    assert "20 msg/s: p99 (ms)" in text and "50 msg/s: deliveries/s" in text
    assert "Targets (issue 7)" in text
    assert "fewer than 10,000 streams: not judged" in text


def test_the_section_says_plainly_which_targets_are_not_met() -> None:
    def result(rate: float, p99: float, delivered: int, missed: int = 0) -> gateway_sse.PhaseResult:
        return gateway_sse.PhaseResult(
            phase=Phase(rate, 10),
            streams=10_000,
            delivered=delivered,
            missed=missed,
            duplicates=0,
            seconds=10.0,
            p50_ms=p99 / 2,
            p99_ms=p99,
            max_ms=p99,
            server_cpu=5.0,
            load_cpu=1.0,
            wall=10.0,
            lost=0,
        )

    def run(key: str, rss_mib: int, phases: tuple[gateway_sse.PhaseResult, ...]) -> Any:
        return gateway_sse.ServerRun(
            key=key,
            requested=10_000,
            streams=10_000,
            failures={},
            connect_seconds=5.0,
            rss_idle_kib=50 * 1024,
            rss_open_kib=rss_mib * 1024,
            rss_after_kib=rss_mib * 1024,
            phases=phases,
        )

    ours = run("ours", 1500, (result(1, 900, 100_000, missed=7), result(10, 5000, 300_000)))
    peer = run("peer", 500, (result(1, 300, 100_000), result(10, 5000, 200_000)))
    report = gateway_sse.Report(runs=(ours, peer), machine={"CPUs": "2"}, settings=Settings())

    text = gateway_sse.render(report)

    assert "**NOT met: 10,000 streams under 1,024 MiB RSS**" in text
    assert "**NOT met: p99 <= 500 ms at 1 msg/s to all**: p99 900 ms, 7 missed" in text
    assert "**NOT met: >= 2x the peer's deliveries/s**" in text and "**1.50x**" in text
    assert "missed 7 deliveries at 1 msg/s" in text


def test_phases_are_read_as_rate_and_seconds() -> None:
    assert gateway_sse.parse_phases("1:12,10:10") == (Phase(1.0, 12), Phase(10.0, 100))
    with pytest.raises(ValueError, match="'fast' is not RATE:SECONDS"):
        gateway_sse.parse_phases("1:12,fast")


# -- the load generator's counting ----------------------------------------------------------


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _frames(events: list[Event], *, crlf: bool) -> bytes:
    """Events as the servers send them: our ``id:`` + ``data:`` with LF, or the peer's CRLF."""
    body = b""
    for index, event in enumerate(events):
        if crlf:
            frame = b"data: " + event.encode() + b"\r\n\r\n"
        else:
            frame = b"id: c:%d-0\ndata: " % index + event.encode() + b"\n\n"
        body += b"%x\r\n%s\r\n" % (len(frame), frame)  # chunked transfer encoding
    return body


@pytest.mark.parametrize("crlf", [False, True], ids=["ours", "peer"])
async def test_the_load_generator_counts_each_delivery_once_however_the_bytes_are_cut(
    crlf: bool,
) -> None:
    generator = sse_load.LoadGenerator()
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client = sse_load.StreamClient(generator, b"GET / HTTP/1.1\r\n\r\n", ready)
    client.connection_made(_Transport())  # type: ignore[arg-type]
    events = [gateway_sse.stamped(phase, number) for phase in (0, 1) for number in range(5)]
    ready_event = b"event: ready\r\ndata: {}\r\n\r\n" if crlf else b"event: ready\ndata: {}\n\n"
    wire = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(ready_event), ready_event)
        + _frames(events, crlf=crlf)
    )

    for start in range(0, len(wire), 7):  # cut anywhere: inside stamps, numbers, frames
        client.data_received(wire[start : start + 7])

    assert ready.done() and client.streaming
    for phase in (0, 1):
        tally = generator.phases[phase]
        assert tally.delivered == 5
        assert dict(tally.per_broadcast) == {number: 1 for number in range(5)}
        assert all(latency > 0 for latency in tally.latencies_ns)


async def test_a_stream_refused_with_a_status_is_a_failure_not_a_stream() -> None:
    generator = sse_load.LoadGenerator()
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client = sse_load.StreamClient(generator, b"GET / HTTP/1.1\r\n\r\n", ready)
    client.connection_made(_Transport())  # type: ignore[arg-type]

    client.data_received(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}")

    with pytest.raises(ConnectionError, match="status 401"):
        await ready
    assert not client.streaming
