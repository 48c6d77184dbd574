"""The benchmarks' harnesses work: every peer yields a figure and the sections render.

Tiny event counts, one round: this proves the harnesses, not the speed, so it
asserts no timing and no ratio (those depend on the machine; see BENCHMARKS.md).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from conftest_pusher import soketi_missing
from soketi_server import SoketiServer, SoketiUnavailable

from bench import (
    ably_publish,
    compose,
    harness,
    outbox,
    pusher_publish,
    redis_publish,
    supabase_publish,
)
from realtime_bridge import Event

pytest_plugins = ["conftest_pusher"]


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


# -- the outbox benchmark ------------------------------------------------------------------


async def test_outbox_benchmark_yields_positive_figures_and_leaves_nothing(
    postgres_server: str, redis_server: str
) -> None:
    report = await outbox.measure(postgres_server, redis_server, outbox.QUICK)

    contenders = {drain.key for drain in report.drains}
    assert contenders == {outbox.OURS, outbox.PROCRASTINATE} | (
        {outbox.PGQUEUER} if outbox.pgqueuer_installed() else set()
    )
    assert [d.setting for d in report.drains if d.key == outbox.OURS] == [
        f"batch_size={size}" for size in outbox.QUICK.batch_sizes
    ]
    for drain in report.drains:
        assert drain.events > 0
        assert drain.rate > 0
    ours = next(lat for lat in report.latencies if lat.key == outbox.OURS)
    assert ours.sent > 0
    assert ours.missing == 0
    assert ours.percentile(50) > 0
    for latency in report.latencies:
        assert latency.skipped or latency.samples
    assert {entry.variant.key for entry in report.enqueues} >= {"asyncpg", "asyncpg+ours"}
    for entry in report.enqueues:
        assert entry.median > 0
        ratios = report.enqueue_ratio(entry.variant.key)
        assert ratios is None or all(value > 0 for value in ratios[:2])
    assert_nothing_left(report.run, postgres_server, redis_server)


def assert_nothing_left(run: str, postgres_server: str, redis_server: str) -> None:
    """The run's databases are dropped and its Redis keys deleted."""
    with psycopg.connect(postgres_server) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"rbbench_{run}_%",)
        ).fetchall()
    assert left == []
    client = redis.Redis.from_url(redis_server)
    try:
        assert not list(client.scan_iter(match=f"rbbench-{run}-*", count=1000))
    finally:
        client.close()


def test_outbox_section_renders_every_part() -> None:
    report = outbox.Report(
        drains=(
            outbox.Drain(outbox.OURS, "ours", "batch_size=500", 1000, 0.1, _phases()),
            outbox.Drain(outbox.PROCRASTINATE, "procrastinate", "concurrency=10", 10, 0.1),
        ),
        latencies=(
            outbox.Latency(outbox.OURS, "ours", 100.0, sent=3, seconds=1.0, samples=(0.001,) * 3),
            outbox.Latency(outbox.PROCRASTINATE, "procrastinate", 100.0, skipped="too slow"),
        ),
        enqueues=tuple(
            outbox.Enqueue(variant, (0.001, 0.002), (0.0015,)) for variant in outbox.VARIANTS
        ),
        machine={"CPUs": "2"},
        settings=outbox.QUICK,
        run="00000000",
    )

    text = outbox.render(report)

    assert text.startswith("## Transactional outbox")
    for heading in ("### Drain", "### Commit-to-publish latency", "### Enqueue cost"):
        assert heading in text
    assert "too slow" in text
    assert "bench/run outbox" in text


# -- the Pusher benchmark ------------------------------------------------------------------


async def test_pusher_benchmark_yields_a_figure_per_peer_and_renders(
    soketi: SoketiServer,
) -> None:
    report = await pusher_publish.measure(events=40, rounds=1, in_flight=4, server=soketi)

    assert [figure.peer.key for figure in report.figures] == [
        peer.key for peer in pusher_publish.PEERS
    ]
    for figure in report.figures:
        assert len(figure.samples) == 1
        assert figure.samples[0].events == 40
        assert figure.median > 0
        assert figure.cpu_us > 0
        assert report.ratio(figure) > 0
    assert report.machine["soketi"] != "unknown"
    assert soketi.running  # a server it was given is left running
    text = pusher_publish.render(report)
    assert text.startswith("## Publish throughput: Pusher adapter")
    assert all(report.name(figure) in text for figure in report.figures)
    assert "### Reading the figures" in text
    assert "bench/run pusher_publish" in text


async def test_pusher_benchmark_stops_the_soketi_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[SoketiServer] = []
    start_soketi = pusher_publish.start_soketi

    def start() -> SoketiServer:
        started.append(start_soketi())
        return started[-1]

    monkeypatch.setattr(pusher_publish, "start_soketi", start)
    try:
        await pusher_publish.measure(events=20, rounds=1, peers=pusher_publish.PEERS[1:])
    except SoketiUnavailable as error:
        soketi_missing(error)

    [server] = started
    assert not server.running
    assert server.pid is None


def test_lanes_hold_whole_channels_in_order() -> None:
    events = [Event(channel=f"bench.{i % 10}", type="t", data={"i": i}) for i in range(95)]

    split = harness.lanes(events, 4)

    assert sorted(len(lane) for lane in split) == [19, 19, 28, 29]
    owners = {event.channel: index for index, lane in enumerate(split) for event in lane}
    for index, lane in enumerate(split):  # each channel in one lane, in the events' order
        assert lane == [event for event in events if owners[event.channel] == index]


# -- the Ably benchmark --------------------------------------------------------------------


async def test_ably_benchmark_yields_a_figure_per_peer_renders_and_stops_its_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[ably_publish.EmulatorProcess] = []
    start_emulator = ably_publish.start_emulator

    def start() -> ably_publish.EmulatorProcess:
        started.append(start_emulator())
        return started[-1]

    monkeypatch.setattr(ably_publish, "start_emulator", start)

    report = await ably_publish.measure(events=40, rounds=1, in_flight=4)

    [emulator] = started
    assert not emulator.running  # the emulator it started is stopped and reaped
    assert [figure.peer.key for figure in report.figures] == [
        peer.key for peer in ably_publish.PEERS
    ]
    for figure in report.figures:
        assert len(figure.samples) == 1
        assert figure.samples[0].events == 40
        assert figure.requests > 0
        assert figure.median > 0
        assert figure.cpu_us > 0
        assert report.ratio(figure) > 0
    assert report.figure(ably_publish.BASELINE).requests == 40  # one request per event
    assert report.figure(ably_publish.TARGET).requests == 1  # one batch publish of 40
    text = ably_publish.render(report)
    assert text.startswith("## Publish throughput: Ably adapter")
    assert all(report.name(figure) in text for figure in report.figures)
    assert "### Reading the figures" in text
    assert "bench/run ably_publish" in text


async def test_ably_benchmark_refuses_a_run_the_emulator_did_not_store() -> None:
    emulator = ably_publish.start_emulator()
    try:
        rig = ably_publish.Rig.open(emulator, in_flight=2)
        try:
            events = ably_publish.build_events(5)

            async def send_all_but_one() -> None:
                await rig.adapter.publish(events[:-1])

            with pytest.raises(RuntimeError, match="holds 0 messages, 1 were sent"):
                await ably_publish.clock(rig, events, 1, "a lossy peer", send_all_but_one)
        finally:
            await rig.close()
    finally:
        emulator.close()
    assert not emulator.running


def test_an_emulator_that_does_not_start_is_one_error_and_leaves_no_process() -> None:
    emulator = ably_publish.EmulatorProcess(key="nope")

    with pytest.raises(ably_publish.EmulatorUnavailable, match="the Ably emulator did not start"):
        emulator.start("ably", ["--key", "nope"], probe="/_emulator")

    assert not emulator.running
    assert emulator.pid is None


# -- the Supabase benchmark ----------------------------------------------------------------


async def test_supabase_benchmark_yields_a_figure_per_peer_renders_and_stops_its_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[supabase_publish.EmulatorProcess] = []
    start_emulator = supabase_publish.start_emulator

    def start() -> supabase_publish.EmulatorProcess:
        started.append(start_emulator())
        return started[-1]

    monkeypatch.setattr(supabase_publish, "start_emulator", start)

    report = await supabase_publish.measure(events=40, sdk_events=20, rounds=1, in_flight=4)

    [emulator] = started
    assert not emulator.running  # the emulator it started is stopped and reaped
    assert [figure.peer.key for figure in report.figures] == [
        peer.key for peer in supabase_publish.PEERS
    ]
    for figure in report.figures:
        assert len(figure.samples) == 1
        assert figure.requests > 0
        assert figure.median > 0
        assert figure.cpu_us > 0
        assert report.ratio(figure) > 0
    sdk = report.figure(supabase_publish.BASELINE)
    assert (sdk.events, sdk.requests) == (20, 20)  # the first 20 events, one request each
    target = report.figure(supabase_publish.TARGET)
    assert (target.events, target.requests) == (40, 1)  # one batch broadcast of 40
    text = supabase_publish.render(report)
    assert text.startswith("## Publish throughput: Supabase adapter")
    assert all(report.name(figure) in text for figure in report.figures)
    assert "the SDK's send the first 20 of them" in text
    assert "### Reading the figures" in text
    assert "bench/run supabase_publish" in text


async def test_supabase_benchmark_refuses_a_run_the_emulator_did_not_store_as_sent() -> None:
    emulator = supabase_publish.start_emulator()
    try:
        rig = supabase_publish.Rig.open(emulator, in_flight=2)
        try:
            events = supabase_publish.build_events(5)
            batch = (supabase_publish.BATCH_ROUTE, 1)

            async def send_all_but_one() -> None:
                await rig.adapter.publish(events[:-1])

            async def send_all() -> None:
                await rig.adapter.publish(events)

            with pytest.raises(RuntimeError, match="holds 4 broadcasts, sent 5"):
                await supabase_publish.clock(rig, events, batch, "a lossy peer", send_all_but_one)
            single = (supabase_publish.SINGLE_ROUTE, 5)
            with pytest.raises(
                RuntimeError, match=r"a batching peer made .* requests; its shape implies"
            ):
                await supabase_publish.clock(rig, events, single, "a batching peer", send_all)
            sample = await supabase_publish.clock(rig, events, batch, "our adapter", send_all)
            assert (sample.events, sample.requests) == (5, 1)
        finally:
            await rig.close()
    finally:
        emulator.close()
    assert not emulator.running


def test_benchmarks_md_joins_the_sections_and_names_the_missing(tmp_path: Path) -> None:
    compose.write_section("outbox", "## Outbox figures\n", directory=tmp_path)

    text = compose.compose(tmp_path)

    assert text.startswith("# Benchmarks")
    assert "## Outbox figures" in text
    assert "Not measured yet: run `bench/run redis_publish`" in text
    assert text.index("Not measured yet") < text.index("## Outbox figures")


def _phases() -> dict[str, float]:
    return {key: 0.01 for key, _ in outbox.PHASES}
