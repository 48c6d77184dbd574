"""Publish throughput of the NATS adapter, beside plain nats-py JetStream and the Redis adapter.

Why: the NATS adapter is the second self-hosted path (issue 9), so a team
choosing it wants to know what it costs against publishing to JetStream with
nats-py directly, and against the Redis adapter it would otherwise run.
Issue 9 asks for the adapter's batches of 100 beside both, in one run.

How, so the figures compare like with like:

- a private ``nats-server -js`` is started on a free loopback port with a
  temporary store (file storage, as the adapter's stream), so its CPU can be
  read from ``/proc`` and no other test's traffic shares it; ``--url`` measures
  an existing server instead (its CPU is then not read);
- every NATS peer publishes to the same stream, which the adapter creates (one
  subject per channel, ``history`` 1000 per channel, a 600 s duplicate window),
  the same encoded envelopes (``Event.encode()``) with the same ``Nats-Msg-Id``
  header (the event id), so JetStream does the same dedupe work for each; every
  run gets fresh events (new ids), round-robin over 100 channels, built before
  the clock starts, and every acknowledgement is checked (stored, not a duplicate);
- the peers: nats-py's ``js.publish`` one event at a time (awaiting each ack: the
  README way, the yardstick), nats-py's ``js.publish_async`` of 100 then waiting
  for the 100 acks (its batched form), our ``NatsAdapter.publish`` of 100, and our
  ``RedisAdapter.publish`` of 100 on the machine's Redis (one Lua script per
  batch: dedupe, capped stream, PUBLISH);
- beside the wall clock, each run reads this process's CPU time and the server's
  (nats-server's, or redis-server's for the Redis row), per event;
- peers run interleaved in rounds, the order rotated each round, after one
  untimed warm-up; each peer's median is reported, so machine noise hits all of
  them alike.

Run ``bench/run nats_publish`` (writes ``bench/sections/nats_publish.md``, then
BENCHMARKS.md), or ``python -m bench.nats_publish --help``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import nats
import nats.js.errors
import redis.asyncio as aioredis
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from bench import compose, harness
from bench.harness import CHANNELS, LanesReport, Peer, Sample, build_events
from realtime_bridge import Event
from realtime_bridge.adapters.nats import NatsAdapter
from realtime_bridge.adapters.redis import RedisAdapter

__all__ = ["PEERS", "Rig", "main", "measure", "render"]

NAME = "nats_publish"
BATCH = 100
EVENTS = 10_000
ROUNDS = 10
HISTORY = 1000
QUICK_EVENTS = 200
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"
STARTUP_TIMEOUT = 15.0


class NatsUnavailable(RuntimeError):
    """No nats-server could be had for the benchmark."""


@dataclass(frozen=True, slots=True)
class NatsServer:
    url: str
    pid: int | None


@contextlib.contextmanager
def private_nats() -> Iterator[NatsServer]:
    """A ``nats-server -js`` on a free loopback port with a temporary store; killed after."""
    if not Path(NATS_BINARY).exists():
        raise NatsUnavailable(f"{NATS_BINARY} is not installed (apt-get install nats-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="rb-bench-nats-") as store:
        command = [NATS_BINARY, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_jetstream(port, process)
            yield NatsServer(f"nats://127.0.0.1:{port}", process.pid)
        finally:
            process.kill()
            process.wait(timeout=STARTUP_TIMEOUT)


def _wait_for_jetstream(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            line = s.makefile("rb").readline(64 * 1024)
            if line.startswith(b"INFO ") and json.loads(line[5:]).get("jetstream"):
                return
        time.sleep(0.02)
    raise NatsUnavailable(f"nats-server -js did not start on port {port}")


@dataclass(slots=True)
class Rig:
    """The connections every peer shares during one benchmark run."""

    adapter: NatsAdapter
    redis: RedisAdapter
    redis_prefix: str
    nc: Client
    js: JetStreamContext
    nats_pid: int | None
    redis_pid: int | None

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, server: NatsServer, redis_url: str, tag: str) -> AsyncIterator[Rig]:
        """Connections under names made from ``tag``; everything they made is deleted after."""
        query = f"prefix=rbbench.{tag}&stream=RBBENCH_{tag}&history={HISTORY}"
        adapter = NatsAdapter.from_url(f"{server.url}?{query}")
        prefix = f"rbbench-{tag}"
        redis = RedisAdapter.from_url(
            f"{redis_url}?prefix={prefix}&history={HISTORY}&dedupe_ttl=600&history_ttl=600"
        )
        nc = await nats.connect(server.url)
        client = aioredis.Redis.from_url(redis_url)
        try:
            await adapter.ping()  # creates the stream every NATS peer publishes to
            redis_pid = int((await client.info("server"))["process_id"])
            yield cls(adapter, redis, prefix, nc, nc.jetstream(), server.pid, redis_pid)
        finally:
            for stream in (adapter.names.stream, adapter.names.presence_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await nc.jetstream().delete_stream(stream)
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for chunk in harness.chunks(keys, 1000):
                await client.delete(*chunk)
            await client.aclose()
            await nc.close()
            await adapter.aclose()
            await redis.aclose()

    def nats_cpu(self) -> float | None:
        return None if self.nats_pid is None else harness.process_cpu(self.nats_pid)

    def redis_cpu(self) -> float | None:
        return None if self.redis_pid is None else harness.process_cpu(self.redis_pid)

    def messages(self, events: Sequence[Event]) -> list[tuple[str, bytes, dict[str, str]]]:
        """What nats-py is given: our subject, payload and ``Nats-Msg-Id`` for each event."""
        subject = self.adapter.names.subject
        return [(subject(e.channel), e.encode(), {"Nats-Msg-Id": e.id}) for e in events]


def _expect_stored(acks: Sequence[object], count: int, who: str) -> None:
    """Fail loudly unless every acknowledgement says stored (the figure would be for less)."""
    stored = sum(1 for ack in acks if not getattr(ack, "duplicate", False))
    harness.expect_published(who, stored, count)


# -- the peers: each prepares untimed, then returns its timed Sample ------------------


async def nats_py_publish(rig: Rig, count: int) -> Sample:
    """The yardstick, as nats-py's README shows: ``await js.publish(...)`` per event."""
    messages = rig.messages(build_events(count))
    acks: list[object] = []

    async def send() -> None:
        for subject, payload, headers in messages:
            acks.append(await rig.js.publish(subject, payload, headers=headers))

    sample = await harness.timed(count, send, rig.nats_cpu, requests=count)
    _expect_stored(acks, count, "nats-py js.publish")
    return sample


async def nats_py_publish_async(rig: Rig, count: int) -> Sample:
    """nats-py's batched form: ``js.publish_async`` of 100, then wait for their acks."""
    batches = harness.chunks(rig.messages(build_events(count)), BATCH)
    acks: list[object] = []

    async def send() -> None:
        for batch in batches:
            futures = [
                await rig.js.publish_async(subject, payload, headers=headers)
                for subject, payload, headers in batch
            ]
            acks.extend(await asyncio.gather(*futures))

    sample = await harness.timed(count, send, rig.nats_cpu, requests=count)
    _expect_stored(acks, count, "nats-py js.publish_async")
    return sample


async def ours_nats(rig: Rig, count: int) -> Sample:
    """Our NATS adapter as the relay calls it: ``publish`` of 100, awaited in turn."""
    batches = harness.chunks(build_events(count), BATCH)
    tally = harness.Tally()
    sample = await harness.timed(
        count, harness.send_batches(rig.adapter, batches, tally), rig.nats_cpu, requests=count
    )
    tally.expect("our NATS adapter", count)
    return sample


async def ours_redis(rig: Rig, count: int) -> Sample:
    """Our Redis adapter the same way: ``publish`` of 100, one Lua script each."""
    batches = harness.chunks(build_events(count), BATCH)
    tally = harness.Tally()
    sample = await harness.timed(
        count, harness.send_batches(rig.redis, batches, tally), rig.redis_cpu, requests=count
    )
    tally.expect("our Redis adapter", count)
    return sample


BASELINE = "nats-py-publish"
NATS_PY_BATCH = "nats-py-async"
TARGET = "ours-nats"
REDIS = "ours-redis"
_STORED = "stored in the stream (dedupe by `Nats-Msg-Id`, capped per channel), acknowledged"
PEERS: tuple[Peer[Rig], ...] = (
    Peer(
        BASELINE,
        "nats-py `js.publish()` per event (its README way)",
        f"one message, awaiting its ack before the next: {_STORED}",
        nats_py_publish,
    ),
    Peer(
        NATS_PY_BATCH,
        f"nats-py `js.publish_async()` x {BATCH}, then the acks",
        f"{BATCH} messages sent, then their {BATCH} acks awaited: {_STORED}",
        nats_py_publish_async,
    ),
    Peer(
        TARGET,
        f"**our NATS adapter**, `publish(batch of {BATCH})`",
        f"{BATCH} messages in one write, then their {BATCH} acks awaited (one deadline): "
        f"{_STORED}; duplicates reported",
        ours_nats,
    ),
    Peer(
        REDIS,
        f"our Redis adapter, `publish(batch of {BATCH})`",
        f"one Lua script per {BATCH}: per event EXISTS id, XADD (MAXLEN ~ {HISTORY}), "
        "SET id EX ttl, PUBLISH; atomic",
        ours_redis,
    ),
)


async def measure(
    *,
    events: int = EVENTS,
    rounds: int = ROUNDS,
    peers: Sequence[Peer[Rig]] = PEERS,
    url: str | None = None,
    redis_url: str = REDIS_URL,
    tag: str | None = None,
) -> LanesReport[Rig]:
    """Measure every peer ``rounds`` times, interleaved, ``events`` events per run.

    Against the NATS at ``url`` if given; otherwise a private nats-server is
    started (``NatsUnavailable`` if it cannot be) and killed afterwards. The
    stream is ``RBBENCH_<tag>``, the Redis keys ``rbbench-<tag>:*`` (a new random
    tag by default); both are deleted afterwards.
    """
    if events % BATCH:
        raise ValueError(f"events must be a multiple of {BATCH}, got {events}")
    with contextlib.ExitStack() as stack:
        server = NatsServer(url, None) if url else stack.enter_context(private_nats())
        async with Rig.opened(server, redis_url, tag or uuid.uuid4().hex[:10]) as rig:
            figures = await harness.interleave(rig, peers, events, rounds)
            machine = await describe_machine(rig)
    sample = build_events(1)[0]
    settings = {
        "rounds": str(rounds),
        "events per run": f"{events} over {min(events, CHANNELS)} channels, round-robin",
        "payload": f"`data` {len(sample.data_json)} bytes, envelope {len(sample.encode())} bytes",
        "stream": f"file storage, `max_msgs_per_subject` {HISTORY}, duplicate window 600 s, "
        "no consumers; "
        + ("a private nats-server on loopback" if url is None else f"the server at {url}"),
        "Redis": f"the machine's, at {redis_url}, no subscribers",
    }
    return LanesReport(
        figures=figures, machine=machine, settings=settings, baseline=BASELINE, in_flight=1
    )


async def describe_machine(rig: Rig) -> dict[str, str]:
    """What the figures were measured on, so a reader can tell whether theirs should match."""
    return {
        **compose.machine(),
        "nats-server": str(rig.nc.connected_server_version)
        .strip("<>")
        .removeprefix("nats server "),
        "nats-py": metadata.version("nats-py"),
        "redis-py": metadata.version("redis"),
    }


# -- BENCHMARKS.md ----------------------------------------------------------------

_METHOD = """\
The code is `bench/nats_publish.py`; `bench/run nats_publish` re-measures this
section alone (about half a minute).

Every NATS peer publishes the same {events:,} fresh events per run, round-robin
over {channels} channels, as the same encoded envelopes with the same
`Nats-Msg-Id` (the event id), to the same JetStream stream, which the adapter
created, on a private nats-server over loopback, from one process. Every
acknowledgement is checked: stored, not a duplicate. Events are built and
batches cut before the clock starts. Peers run interleaved, order rotated each
round, after an untimed warm-up; the table shows each peer's median events/s
and the range over the rounds. "vs js.publish" divides by the median of nats-py
called as its README shows, awaiting each acknowledgement. CPU per event is this
process's CPU time over the run (`time.process_time()`) and the server's
(`/proc/<pid>/stat`: nats-server, or redis-server for the Redis row).
Issue 9 sets no target; it asks for these figures side by side.
"""


def _reading(report: LanesReport[Rig]) -> str:
    """The notes under the table: what the figures say, from this run's numbers."""
    ours, batch = report.figure(TARGET), report.figure(NATS_PY_BATCH)
    redis, single = report.figure(REDIS), report.figure(BASELINE)
    return (
        "\n".join(
            [
                "### Reading the figures\n",
                f"- Batches of {BATCH}: our adapter ran at {ours.median / batch.median:.2f}x "
                f"nats-py's `publish_async` ({ours.cpu_us:.0f} vs {batch.cpu_us:.0f} µs of our "
                "CPU per event). Both pipeline the batch and wait for every ack; ours queues "
                "the batch without yielding (one write, so a dropped connection stores a "
                "prefix of the batch, never a middle part) and waits once, with one deadline.",
                f"- One ack awaited at a time costs a round trip per event: our batches ran at "
                f"{ours.median / single.median:.1f}x nats-py's `js.publish` per event.",
                f"- Against our Redis adapter's batches of {BATCH}: NATS ran at "
                f"{ours.median / redis.median:.2f}x its rate; nats-server spent "
                + _server_cpu(ours)
                + " of CPU per event, redis-server "
                + _server_cpu(redis)
                + ". JetStream writes every event to its file store, drops each channel's "
                "oldest once it holds `history` (as here, after the first runs) and answers "
                "one ack per event; Redis answers one reply per batch and keeps its stream in "
                "memory.",
            ]
        )
        + "\n"
    )


def _server_cpu(figure: harness.Figure[Rig]) -> str:
    return "n/a" if figure.server_us is None else f"{figure.server_us:.0f} µs"


def render(report: LanesReport[Rig]) -> str:
    """This benchmark's section of BENCHMARKS.md: method, verdict, machine, settings, table."""
    ours = report.figure(TARGET)
    events = ours.samples[0].events
    parts = [
        "## Publish throughput: NATS adapter vs nats-py JetStream vs the Redis adapter\n",
        _METHOD.format(events=events, channels=min(events, CHANNELS)),
        f"**Our NATS adapter's batches of {BATCH} ran at {ours.median:,.0f} events/s: "
        f"{report.ratio(ours, NATS_PY_BATCH):.2f}x nats-py's `publish_async` batches, "
        f"{report.ratio(ours, REDIS):.2f}x our Redis adapter's batches and "
        f"{report.ratio(ours):.1f}x nats-py's `js.publish` per event** (ratios of medians).\n",
        compose.bullets("Measured on", report.machine),
        compose.bullets("Settings", report.settings),
        f"### {events:,} events, {min(events, CHANNELS)} channels\n",
        report.table("js.publish", "server"),
        _reading(report),
    ]
    return "\n".join(parts)


def summary(report: LanesReport[Rig]) -> str:
    """A few lines for the terminal: each peer's median, ratio and CPU per event."""
    return report.summary("js.publish")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print a summary: what ``bench/run`` calls."""
    parser = compose.parser(NAME, __doc__)
    parser.add_argument("--events", type=int, default=EVENTS, help="events per run")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--url", help="an existing NATS with JetStream (default: a private one)")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the harness")
    compose.add_output(parser)
    args = parser.parse_args(argv)
    events, rounds = (QUICK_EVENTS, 1) if args.quick else (args.events, args.rounds)
    measuring = measure(events=events, rounds=rounds, url=args.url, redis_url=args.redis_url)
    return compose.run(NAME, measuring, render, summary, args.output, NatsUnavailable)


if __name__ == "__main__":
    sys.exit(main())
