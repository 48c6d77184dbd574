"""SSE fan-out: our gateway vs sse-starlette + broadcaster, 10,000 streams each (issue 7).

One server at a time in a process of its own: our gateway as
``realtime-bridge gateway`` serves it, then the peer a Python team would
write (``bench.sse_peer``: sse-starlette streaming encode/broadcaster's Redis
pub/sub), under the same uvicorn settings (``bench.sse_servers``, which also
serves ours when ``--http``, ``--loop`` or ``--gc-threshold`` asks for other
settings than the command's). For each, a load generator
in another process (``bench.sse_load``) opens the streams, a bounded number
at a time, all on one channel; this process then broadcasts to all of them
through Redis, first at 1 message per second, then at 10: through the
Bridge's Redis adapter for ours (``Bridge.from_url("redis://...")``, as the
relay publishes), through broadcaster's ``publish`` for the peer. Every event
carries its send time (``time.time_ns()``) in ``data``, so the load generator
times each delivery. Resident memory is read from ``/proc/<pid>/status``:
idle, with every stream open, and after the broadcasts.

Run ``python -m bench.gateway_sse`` (two to three minutes; ``--connections``
and ``--phases`` for a shorter run); it writes ``bench/sections/gateway_sse.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import httpx
import redis.asyncio as aioredis
from broadcaster import Broadcast

from bench import compose
from bench.emulated import _die_with_parent, _tail
from bench.harness import DATA, EVENT_TYPE, chunks, process_cpu
from bench.sse_load import raise_open_files_limit
from realtime_bridge import Bridge, Event

__all__ = [
    "OURS",
    "PEER",
    "Phase",
    "PhaseResult",
    "Report",
    "ServerRun",
    "Settings",
    "main",
    "measure",
    "render",
]

NAME = "gateway_sse"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
CHANNEL = "bench.sse"
OURS = "ours"
PEER = "peer"
NAMES = {OURS: "**our gateway**", PEER: "sse-starlette + broadcaster"}
#: Upper bound for a server or the load generator to start or stop; reached only when broken.
STARTUP_TIMEOUT = 30.0
#: The targets of issue 7.
RSS_TARGET_MIB = 1024
P99_TARGET_MS = 500.0
RATIO_TARGET = 2.0


@dataclass(frozen=True, slots=True)
class Phase:
    """``broadcasts`` messages to every stream, ``rate`` per second."""

    rate: float
    broadcasts: int

    @property
    def label(self) -> str:
        return f"{self.rate:g} msg/s"


@dataclass(frozen=True, slots=True)
class Settings:
    """What one run does; the defaults are issue 7's benchmark."""

    connections: int = 10_000
    #: Streams being opened at once (connected, not yet ready): a reconnection storm in small.
    concurrency: int = 100
    phases: tuple[Phase, ...] = (Phase(1.0, 12), Phase(10.0, 100))
    #: uvicorn's HTTP implementation and the event loop, for both servers alike.
    http: str = "auto"
    loop: str = "asyncio"
    #: ``gc.set_threshold`` in both servers ("": Python's default, as the CLI runs).
    gc_threshold: str = ""
    order: tuple[str, ...] = (OURS, PEER)
    #: Seconds between the last stream opening and the first broadcast.
    settle: float = 2.0
    #: A phase's deliveries are over when none arrived for this long...
    stall: float = 10.0
    #: ...or this long after its last broadcast.
    drain: float = 90.0
    connect_timeout: float = 120.0

    @property
    def as_shipped(self) -> bool:
        """True when our gateway runs as ``realtime-bridge gateway`` itself runs it."""
        return self.http == "auto" and self.loop == "asyncio" and not self.gc_threshold

    def server_options(self) -> list[str]:
        """``bench.sse_servers``'s options for these settings."""
        options = ["--http", self.http, "--loop", self.loop]
        return options + (["--gc-threshold", self.gc_threshold] if self.gc_threshold else [])


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """What the streams received of one phase."""

    phase: Phase
    streams: int
    delivered: int
    #: Deliveries that never arrived (per broadcast: streams open minus those that got it).
    missed: int
    duplicates: int
    #: From the first broadcast to the last delivery.
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: CPU seconds each process used over the phase, and the phase's wall seconds.
    server_cpu: float
    load_cpu: float
    wall: float
    #: Streams that ended during the phase.
    lost: int

    @property
    def rate(self) -> float:
        """Deliveries per second."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_cores(self) -> float:
        return self.server_cpu / self.wall

    @property
    def load_cores(self) -> float:
        return self.load_cpu / self.wall

    @property
    def server_us(self) -> float:
        """The server's CPU microseconds per delivery: what a busy machine moves least."""
        return self.server_cpu / self.delivered * 1e6 if self.delivered else 0.0


@dataclass(frozen=True, slots=True)
class ServerRun:
    """One server's figures."""

    key: str
    requested: int
    streams: int
    failures: dict[str, int]
    connect_seconds: float
    rss_idle_kib: int
    rss_open_kib: int
    rss_after_kib: int
    phases: tuple[PhaseResult, ...]

    @property
    def per_stream_kib(self) -> float:
        return (self.rss_open_kib - self.rss_idle_kib) / max(1, self.streams)

    @property
    def rss_peak_mib(self) -> float:
        return max(self.rss_open_kib, self.rss_after_kib) / 1024


@dataclass(frozen=True, slots=True)
class Report:
    runs: tuple[ServerRun, ...]
    machine: dict[str, str]
    settings: Settings

    def run(self, key: str) -> ServerRun | None:
        return next((run for run in self.runs if run.key == key), None)


# -- processes -------------------------------------------------------------------------------


class Child:
    """A process the benchmark started: its pid for ``/proc``, stopped however the run ends."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: IO[str]) -> None:
        self.process = process
        self._stderr = stderr

    @classmethod
    async def start(cls, module: str, *args: str) -> Child:
        """``python -m <module> <args>`` with pipes to talk to it; it dies with this process."""
        stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            limit=1 << 24,
            preexec_fn=_child_setup,
        )
        return cls(process, stderr)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return process_cpu(self.pid) or 0.0

    def rss_kib(self) -> int:
        """Resident memory now (``VmRSS``), in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) if found else 0

    async def read_line(self, within: float) -> bytes:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            return await self.process.stdout.readline()

    def why(self) -> str:
        return _tail(self._stderr)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go; reap it."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                async with asyncio.timeout(STARTUP_TIMEOUT):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._stderr.close()


def _child_setup() -> None:
    """In a child, before exec: all the open files it may have, and death with this process."""
    raise_open_files_limit()
    if sys.platform == "linux":
        _die_with_parent()


#: How a server is started: ``python -m <module> <args>``.
Command = tuple[str, list[str]]


async def start_server(command: Command) -> tuple[Child, str]:
    """Start a server; its URL once it announced it and ``/healthz`` answers."""
    module, args = command
    server = await Child.start(module, *args)
    try:
        line = (await server.read_line(STARTUP_TIMEOUT)).decode()
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            raise RuntimeError("no URL announced")
        url = found.group(1)
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await _until_healthy(url)
    except (RuntimeError, TimeoutError) as exc:
        why = server.why()
        await server.stop()
        raise RuntimeError(f"{module} {args[0]} did not start ({exc}): {why}") from None
    return server, url


async def _until_healthy(url: str) -> None:
    """Until ``/healthz`` answers 200 (the socket is bound before the server listens on it)."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


class LoadProcess:
    """The load generator (``bench.sse_load``), driven one JSON line at a time."""

    def __init__(self, child: Child) -> None:
        self.child = child

    async def command(self, op: str, within: float, **fields: Any) -> dict[str, Any]:
        """Send one command; its answer, within ``within`` seconds."""
        stdin = self.child.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await stdin.drain()
        line = await self.child.read_line(within)
        if not line:
            raise RuntimeError(f"the load generator exited: {self.child.why()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError(f"the load generator refused: {answer['error']}")
        return answer

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            await self.command("close", STARTUP_TIMEOUT)
        await self.child.stop()


# -- one server ------------------------------------------------------------------------------

#: Sends broadcast ``number`` of phase ``index`` to every stream.
Publish = Callable[[int, int], Awaitable[None]]


def stamped(phase: int, number: int) -> Event:
    """The event of one broadcast: its stamp first (what the load generator reads), then DATA."""
    data = {"p": phase, "n": number, "t": time.time_ns(), **DATA}
    return Event(channel=CHANNEL, type=EVENT_TYPE, data=data)


async def run_ours(settings: Settings, redis_url: str, prefix: str) -> ServerRun:
    """Our gateway, fed by the Bridge's Redis adapter as the relay would feed it."""
    secret = secrets.token_urlsafe(32)
    url = f"{redis_url}?prefix={prefix}&gateway_secret={secret}&history_ttl=600&dedupe_ttl=600"
    async with Bridge.from_url(url) as bridge:
        token = bridge.authorize(CHANNEL)["token"]

        async def publish(phase: int, number: int) -> None:
            await bridge.publish(stamped(phase, number))

        args = ["gateway", "--redis", url, "--secret", secret]
        command: Command = (
            ("realtime_bridge.cli", [*args, "--host", "127.0.0.1", "--port", "0"])
            if settings.as_shipped
            else ("bench.sse_servers", [*args, *settings.server_options()])
        )
        return await run_server(OURS, command, f"/sse?token={token}", publish, settings)


async def run_peer(settings: Settings, redis_url: str, prefix: str) -> ServerRun:
    """The peer, fed by broadcaster's ``publish`` (one PUBLISH of the envelope)."""
    topic = f"{prefix}:peer:{CHANNEL}"
    broadcast = Broadcast(redis_url)
    await broadcast.connect()
    try:

        async def publish(phase: int, number: int) -> None:
            await broadcast.publish(channel=topic, message=stamped(phase, number).encode().decode())

        args = ["peer", "--redis", redis_url, "--channel", topic, *settings.server_options()]
        return await run_server(PEER, ("bench.sse_servers", args), "/sse", publish, settings)
    finally:
        await broadcast.disconnect()


async def run_server(
    key: str, command: Command, path: str, publish: Publish, settings: Settings
) -> ServerRun:
    """Start the server, open every stream, run the phases, read memory; stop everything."""
    server, url = await start_server(command)
    try:
        rss_idle = server.rss_kib()
        load = LoadProcess(await Child.start("bench.sse_load"))
        try:
            opened = await open_streams(load, url, path, settings)
            await asyncio.sleep(settings.settle)
            rss_open = server.rss_kib()
            streams = opened["connected"]
            if streams == 0:
                raise RuntimeError(f"{key}: no stream opened: {opened['failures']}")
            phases = []
            for index, phase in enumerate(settings.phases):
                phases.append(
                    await run_phase(index, phase, publish, load, server, streams, settings)
                )
            rss_after = server.rss_kib()
        finally:
            await load.close()
    finally:
        await server.stop()
    return ServerRun(
        key=key,
        requested=settings.connections,
        streams=streams,
        failures=opened["failures"],
        connect_seconds=opened["seconds"],
        rss_idle_kib=rss_idle,
        rss_open_kib=rss_open,
        rss_after_kib=rss_after,
        phases=tuple(phases),
    )


async def open_streams(
    load: LoadProcess, url: str, path: str, settings: Settings
) -> dict[str, Any]:
    """One stream first (the server subscribes to Redis), then the rest, bounded at a time."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    fields = {"host": host, "port": int(port), "path": path, "patience": settings.connect_timeout}
    budget = settings.connect_timeout * (1 + settings.connections / settings.concurrency)
    first = await load.command("connect", budget, count=1, concurrency=1, **fields)
    rest = await load.command(
        "connect",
        budget,
        count=settings.connections - 1,
        concurrency=settings.concurrency,
        **fields,
    )
    rest["seconds"] += first["seconds"]
    return rest


async def run_phase(
    index: int,
    phase: Phase,
    publish: Publish,
    load: LoadProcess,
    server: Child,
    streams: int,
    settings: Settings,
) -> PhaseResult:
    """Broadcast at the phase's rate, wait for the deliveries, and tally them."""
    server_cpu, load_cpu = server.cpu(), load.child.cpu()
    start_ns, next_at = time.time_ns(), time.monotonic()
    for number in range(phase.broadcasts):
        await publish(index, number)
        next_at += 1 / phase.rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    tally = await load.command(
        "wait",
        settings.drain + settings.stall + STARTUP_TIMEOUT,
        phase=index,
        expected=streams * phase.broadcasts,
        stall=settings.stall,
        deadline=settings.drain,
    )
    wall = (time.time_ns() - start_ns) / 1e9
    got = [tally["per_broadcast"].get(str(number), 0) for number in range(phase.broadcasts)]
    return PhaseResult(
        phase=phase,
        streams=streams,
        delivered=tally["delivered"],
        missed=sum(max(0, streams - count) for count in got),
        duplicates=sum(max(0, count - streams) for count in got),
        seconds=max(0.0, (tally["last_ns"] - start_ns) / 1e9),
        p50_ms=tally["p50_ms"],
        p99_ms=tally["p99_ms"],
        max_ms=tally["max_ms"],
        server_cpu=server.cpu() - server_cpu,
        load_cpu=load.child.cpu() - load_cpu,
        wall=wall,
        lost=tally["lost"],
    )


RUNNERS = {OURS: run_ours, PEER: run_peer}


async def measure(
    settings: Settings = Settings(), redis_url: str = DEFAULT_URL, *, prefix: str | None = None
) -> Report:
    """Every server in ``settings.order``, one after the other; Redis keys deleted afterwards."""
    prefix = prefix or f"rbbench-{uuid.uuid4().hex[:12]}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        runs = [await RUNNERS[key](settings, redis_url, prefix) for key in settings.order]
        machine = await describe_machine(client, settings)
    finally:
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for batch in chunks(keys, 1000):
                await client.delete(*batch)
        finally:
            await client.aclose()
    return Report(runs=tuple(runs), machine=machine, settings=settings)


async def describe_machine(client: aioredis.Redis, settings: Settings) -> dict[str, str]:
    info = await client.info("server")
    http = settings.http
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if settings.loop == "uvloop" else "asyncio's own (as `asyncio.run`)"
    return {
        **compose.machine(),
        "redis server": str(info.get("redis_version", "unknown")),
        "servers": f"uvicorn {metadata.version('uvicorn')} with {http} "
        f"{metadata.version(http)}, {loop} event loop, starlette {metadata.version('starlette')}",
        "peer": f"sse-starlette {metadata.version('sse-starlette')}, "
        f"broadcaster {metadata.version('broadcaster')}, redis-py {metadata.version('redis')}",
    }


# -- BENCHMARKS.md ----------------------------------------------------------------------------

_METHOD = """\
The code is `bench/gateway_sse.py`; `bench/run gateway_sse` re-measures this
section alone (two to three minutes).

One server at a time runs in a process of its own: **our gateway** {ours_how},
then **the peer** a Python team would write, sse-starlette's
`EventSourceResponse` streaming what encode/broadcaster receives from Redis
pub/sub (`bench/sse_peer.py`), with both libraries' defaults and the same
uvicorn settings. broadcaster 0.3.1's Redis backend delivers nothing at all
with redis-py 8 (its listener starts before its first subscription is
recorded, then waits for good), so the peer subscribes through a three-line
subclass that wakes the listener after subscribing. A load generator in
another process (`bench/sse_load.py`: bare asyncio protocols that only pull
each event's stamp out of the bytes) opens the streams, at most
{concurrency} being opened at a time, all on one channel. This process then
broadcasts to all of them through Redis: through the Bridge's Redis adapter
for ours (one Lua script appends each event to the channel's stream and
publishes it, as the relay does), through `Broadcast.publish` for the peer
(one PUBLISH). Each event is an envelope of about 400 bytes that carries its
send time (`time.time_ns()`); each stream gets it as one `data:` line.

- **connect**: from the first connection until every stream has answered 200
  and sent `event: ready` (our gateway sends it once the stream is
  subscribed and caught up; the peer's app sends it once subscribed);
- **RSS**: the server's `VmRSS`, idle (serving, no stream), with every stream
  open, and after the broadcasts; per stream = (open - idle) / streams;
- **deliveries/s**: events received by all streams over the phase, from the
  first broadcast to the last delivery. At 1 msg/s both servers keep up, so
  it only shows that they do. At 10 msg/s, ten times as many deliveries per
  second are asked as there are streams: a server that cannot keep up shows
  its fan-out capacity, and the events wait (ours keeps at most `buffer` =
  256 per stream, the peer's queues are unbounded);
- **p50 / p99 / max**: send time to receipt, over every delivery of the phase;
- **missed**: deliveries that never arrived (a phase ends once nothing
  arrived for {stall:g} s, or {drain:g} s after its last broadcast);
- **CPU**: cores each process kept busy over the phase, and the server's CPU
  time per delivery (what a busy machine moves least); the machine has
  {cpus} cores, shared with Redis, this process, and whatever else runs.

In the "ours / peer" column, below 1 is better for times, memory and CPU.
"""

_READING = """### Reading the figures

At 1 msg/s a broadcast is {streams:,} writes, one per stream, so p50 and p99
are how long a server takes to get through them. Of our gateway's CPU per
delivery, about a third is the kernel's loopback `send()`; each stream
writes whatever it finds queued in one go, so at 10 msg/s it writes less
often than it delivers. A full collection of Python's garbage collector
walks every object of the process (about a million with 10,000 streams,
0.4 to 1 s on this machine): one that lands during a broadcast delays it by
that much. Our gateway wakes its streams a few dozen at a time, so a
broadcast leaves little garbage and seldom sets one off, but the first full
collection after the streams opened can still fall inside a phase; p99 and
max then show it.
"""


def render(report: Report) -> str:
    """This benchmark's section: method, verdicts, machine, settings, the table."""
    settings = report.settings
    ours_how = (
        "as `realtime-bridge gateway` serves it"
        if settings.as_shipped
        else "served as `realtime-bridge gateway` does, but with the settings below"
    )
    method = _METHOD.format(
        ours_how=ours_how,
        concurrency=settings.concurrency,
        stall=settings.stall,
        drain=settings.drain,
        cpus=report.machine.get("CPUs", "?"),
    )
    parts = [
        f"## SSE fan-out: our gateway vs sse-starlette + broadcaster, "
        f"{settings.connections:,} streams\n",
        method,
        verdicts(report),
        compose.bullets("Measured on", report.machine),
        compose.bullets("Settings", _settings(settings)),
        _table(report),
        _READING.format(streams=settings.connections),
    ]
    return "\n".join(parts)


def verdicts(report: Report) -> str:
    """Each target of issue 7, met or not, in one line each."""
    ours, peer = report.run(OURS), report.run(PEER)
    if ours is None:
        return "Targets: not judged (our gateway was not measured).\n"
    lines = ["Targets (issue 7):\n"]
    full = ours.streams >= 10_000
    rss_met = full and ours.rss_peak_mib < RSS_TARGET_MIB
    lines.append(
        f"- **{_met(rss_met)}: 10,000 streams under {RSS_TARGET_MIB:,} MiB RSS**: "
        f"{ours.streams:,} open, {ours.rss_peak_mib:,.0f} MiB at most"
        + ("" if full else " (fewer than 10,000 streams: not judged)")
    )
    slow = _phase(ours, 1.0)
    if slow is not None:
        p99_met = slow.p99_ms <= P99_TARGET_MS and slow.missed == 0
        lines.append(
            f"- **{_met(p99_met)}: p99 <= {P99_TARGET_MS:g} ms at 1 msg/s to all**: "
            f"p99 {slow.p99_ms:,.0f} ms, {slow.missed:,} missed"
        )
    if peer is not None:
        fast = max(ours.phases, key=lambda result: result.phase.rate)
        theirs = _phase(peer, fast.phase.rate)
        if theirs is not None and theirs.rate > 0:
            ratio = fast.rate / theirs.rate
            asked = fast.streams * fast.phase.rate
            kept_up = (
                "; ours delivered nearly all that was asked, so the ratio is a floor"
                if fast.rate >= 0.95 * asked
                else ""
            )
            lines.append(
                f"- **{_met(ratio >= RATIO_TARGET)}: >= {RATIO_TARGET:g}x the peer's "
                f"deliveries/s**: at {fast.phase.label} ({asked:,.0f} asked per second), "
                f"{fast.rate:,.0f} vs {theirs.rate:,.0f}, **{ratio:.2f}x**{kept_up}"
            )
    for run in report.runs:
        for result in run.phases:
            if result.missed:
                lines.append(
                    f"- **{NAMES[run.key]} missed {result.missed:,} deliveries at "
                    f"{result.phase.label}** ({result.lost:,} streams ended during the phase)"
                )
    return "\n".join(lines) + "\n"


def _met(met: bool) -> str:
    return "met" if met else "NOT met"


def _phase(run: ServerRun, rate: float) -> PhaseResult | None:
    return next((result for result in run.phases if result.phase.rate == rate), None)


def _settings(settings: Settings) -> dict[str, str]:
    phases = ", ".join(
        f"{phase.broadcasts} broadcasts at {phase.label}" for phase in settings.phases
    )
    return {
        "streams per server": f"{settings.connections:,}, one channel, one server at a time "
        f"(order: {', '.join(settings.order)})",
        "phases": phases,
        "our gateway": "default settings (`buffer` 256, heartbeat 15 s, send timeout 30 s)",
        "garbage collector": f"`gc.set_threshold({settings.gc_threshold})` in both servers"
        if settings.gc_threshold
        else "Python's defaults in both servers, as `realtime-bridge gateway` runs",
    }


#: One row of the table: its label, a value per server, their format, and whether a ratio helps.
Row = tuple[str, list[float], str, bool]


def _rows(report: Report) -> list[Row]:
    runs = report.runs
    rows: list[Row] = [
        ("streams open", [run.streams for run in runs], ",", False),
        ("connect all (s)", [run.connect_seconds for run in runs], ".1f", True),
        ("RSS idle (MiB)", [run.rss_idle_kib / 1024 for run in runs], ",.0f", False),
        ("RSS, streams open (MiB)", [run.rss_open_kib / 1024 for run in runs], ",.0f", True),
        ("RSS per stream (KiB)", [run.per_stream_kib for run in runs], ",.1f", True),
        ("RSS after broadcasts (MiB)", [run.rss_after_kib / 1024 for run in runs], ",.0f", True),
    ]
    for index, phase in enumerate(report.settings.phases):
        results = [run.phases[index] for run in runs]
        label = phase.label
        rows += [
            (f"{label}: deliveries/s", [r.rate for r in results], ",.0f", True),
            (f"{label}: p50 (ms)", [r.p50_ms for r in results], ",.0f", True),
            (f"{label}: p99 (ms)", [r.p99_ms for r in results], ",.0f", True),
            (f"{label}: max (ms)", [r.max_ms for r in results], ",.0f", True),
            (f"{label}: missed", [r.missed for r in results], ",", False),
            (f"{label}: server CPU (cores)", [r.server_cores for r in results], ".2f", False),
            (
                f"{label}: server CPU per delivery (µs)",
                [r.server_us for r in results],
                ",.1f",
                True,
            ),
            (f"{label}: load generator CPU (cores)", [r.load_cores for r in results], ".2f", False),
        ]
    return rows


def _table(report: Report) -> str:
    """A column per server, and ours over the peer's where a ratio means something."""
    keys = [run.key for run in report.runs]
    compare = OURS in keys and PEER in keys
    headings = ["", *(NAMES[key] for key in keys)] + (["ours / peer"] if compare else [])
    lines = []
    for label, values, shown, ratio in _rows(report):
        cells = [label, *(format(value, shown) for value in values)]
        if compare:
            mine, theirs = values[keys.index(OURS)], values[keys.index(PEER)]
            cells.append(f"{mine / theirs:.2f}x" if ratio and theirs else "")
        lines.append(cells)
    return compose.table(headings, "|---|" + "--:|" * (len(headings) - 1), lines)


def summary(report: Report) -> str:
    """A few lines for the terminal."""
    lines = []
    for run in report.runs:
        phases = "; ".join(
            f"{r.phase.label}: {r.rate:,.0f}/s p50 {r.p50_ms:,.0f} p99 {r.p99_ms:,.0f} ms"
            f" missed {r.missed:,} cpu {r.server_cores:.2f}+{r.load_cores:.2f}"
            f" ({r.server_us:.1f} µs/delivery)"
            for r in run.phases
        )
        failed = f" (failed: {run.failures})" if run.failures else ""
        lines.append(
            f"{run.key:>5}: {run.streams:,} streams{failed} in {run.connect_seconds:.1f} s, "
            f"RSS {run.rss_open_kib / 1024:,.0f} MiB ({run.per_stream_kib:.1f} KiB/stream); "
            f"{phases}"
        )
    return "\n".join(lines)


def parse_phases(text: str) -> tuple[Phase, ...]:
    """``"1:12,10:10"``: rate:seconds pairs, each a phase of rate x seconds broadcasts."""
    phases = []
    for item in text.split(","):
        rate, _, seconds = item.partition(":")
        try:
            phases.append(Phase(float(rate), max(1, round(float(rate) * float(seconds)))))
        except ValueError:
            raise ValueError(f"--phases item {item!r} is not RATE:SECONDS") from None
    return tuple(phases)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print a summary: what ``bench/run`` calls."""
    defaults = Settings()
    parser = compose.parser(NAME, __doc__)
    parser.add_argument("--url", default=DEFAULT_URL, help="the Redis both servers use")
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--phases", default="1:12,10:10", help="RATE:SECONDS,... (default %(default)s)"
    )
    parser.add_argument("--http", choices=("auto", "h11", "httptools"), default=defaults.http)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=defaults.loop)
    parser.add_argument("--order", default=",".join(defaults.order), help="ours,peer or peer,ours")
    parser.add_argument(
        "--gc-threshold", metavar="G0,G1,G2", default="", help="gc.set_threshold in both servers"
    )
    compose.add_output(parser)
    args = parser.parse_args(argv)
    try:
        phases = parse_phases(args.phases)
    except ValueError as exc:
        parser.error(str(exc))
    order = tuple(args.order.split(","))
    if not set(order) <= set(RUNNERS):
        parser.error(f"--order: each of {', '.join(RUNNERS)}, got {args.order!r}")
    settings = Settings(
        connections=args.connections,
        concurrency=args.concurrency,
        phases=phases,
        http=args.http,
        loop=args.loop,
        order=order,
        gc_threshold=args.gc_threshold,
    )
    return compose.run(NAME, measure(settings, args.url), render, summary, args.output)


if __name__ == "__main__":
    sys.exit(main())
