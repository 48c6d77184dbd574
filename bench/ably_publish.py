"""Publish throughput of the Ably adapter, beside the official ``ably`` SDK, on the emulator.

Why: a Python team on Ably would otherwise call the SDK the way its README
shows, ``await channel.publish(name, data)``, one event per REST request.
Issue 5 sets the bar: 10,000 events over 100 channels at three times or more
that peer's events/s, with our CPU per event reported beside the SDK's.

How, so the figures compare like with like:

- the server is the project's Ably emulator (``realtime-bridge emulate ably``),
  started here in a process of its own on a free loopback port and stopped
  afterwards, so its CPU is not billed to the clients and no client shares its
  event loop; every peer talks to it from this one process, over plain HTTP
  with token auth (Ably refuses Basic auth without TLS);
- every run gets fresh events (the same ``data`` as ``bench/redis_publish.py``),
  round-robin over the same 100 channels, built before the clock starts; our
  adapter sends ``Event.encode()`` as the message's ``data`` with ``encoding:
  json``, and the SDK is given the same envelope as a dict, which it sends as
  JSON with ``encoding: json`` too, under the same message name;
- the SDK peers: ``channel.publish(name, data)`` one event per call (the README
  way: the reference), the same with msgpack (the SDK's default protocol), the
  same in ``IN_FLIGHT`` concurrent lanes, and ``channel.publish(messages=[...])``
  of 100 messages of one channel per call (its best sequential use); ours:
  ``AblyAdapter.publish`` of 100 events at a time, ``Bridge.publish_many`` of
  all of them, and ``publish_many`` in ``IN_FLIGHT`` lanes (see ``lanes``);
- before every run the emulator is reset (``POST /_emulator/reset``) and every
  client fetches a fresh token, untimed; after it, the emulator's control API
  must show, channel by channel, exactly the run's events in their order, each
  with the sent envelope and name, and the number of publish requests the
  peer's shape implies;
- beside the wall clock, each run reads this process's CPU time
  (``time.process_time()``) and the emulator's (``/proc/<pid>/stat``), per event;
- peers run interleaved in rounds, the order rotated each round, after one
  untimed warm-up; each peer's median is reported, so machine noise hits all of
  them alike.

Run ``bench/run ably_publish`` (writes ``bench/sections/ably_publish.md``, then
BENCHMARKS.md), or ``python -m bench.ably_publish --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import httpx
from ably import AblyRest
from ably.types.message import Message

from bench import compose
from bench.pusher_publish import lanes, process_cpu
from bench.redis_publish import DATA
from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.ably import MAX_BATCH, AblyAdapter

__all__ = [
    "PEERS",
    "EmulatorProcess",
    "EmulatorUnavailable",
    "Figure",
    "Peer",
    "Report",
    "Sample",
    "main",
    "measure",
    "render",
    "start_emulator",
]

NAME = "ably_publish"
#: Events per request of ours (Ably's batch publish; the adapter's batch limit) and of
#: the SDK's ``publish(messages=[...])`` peer.
BATCH = MAX_BATCH
EVENTS = 10_000
CHANNELS = 100
#: Concurrent lanes in the lanes peers (ours and the SDK's).
IN_FLIGHT = 8
#: Each run of an SDK one-per-call peer takes several seconds: few rounds, as for Pusher.
ROUNDS = 5
QUICK_EVENTS = 200
EVENT_TYPE = "bench.tick"
HOST = "127.0.0.1"
#: The emulator's default key (``realtime_bridge.testing.ably.DEFAULT_KEY``).
KEY = "emulator.key:secret"
#: Upper bound for the emulator to start or stop; reached only when something is broken.
STARTUP_TIMEOUT = 20.0
#: The emulator's routes that publish (``GET /_emulator/requests`` counts by route).
SINGLE_ROUTE = "POST /channels/{channel}/messages"
BATCH_ROUTE = "POST /messages"


class EmulatorUnavailable(RuntimeError):
    """The emulator did not start (the ``emulator`` extra missing, say); the message says why."""


def build_events(count: int) -> list[Event]:
    """``count`` new events (new ids) with the bench payload, round-robin over the channels."""
    return [
        Event(channel=f"bench.{index % CHANNELS}", type=EVENT_TYPE, data=DATA)
        for index in range(count)
    ]


def chunks(items: Sequence[Any], size: int = BATCH) -> list[Sequence[Any]]:
    """Split ``items`` into batches before the clock starts, so slicing is not timed."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def by_channel(events: Sequence[Event]) -> dict[str, list[Event]]:
    """``events`` grouped by channel, each group in the events' order."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event.channel, []).append(event)
    return groups


def envelope(event: Event) -> dict[str, Any]:
    """What the SDK is given as ``data``: the envelope our adapter sends, as a dict."""
    return dict(json.loads(event.encode()))


# -- the emulator, in a process of its own ----------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if this process dies (Linux), so none is left."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(kw_only=True)
class EmulatorProcess:
    """``realtime-bridge emulate ably`` on a free loopback port; ``close`` stops it."""

    url: str
    key: str = KEY
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _stderr: IO[str] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def port(self) -> int:
        return int(self.url.rpartition(":")[2])

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def cpu(self) -> float | None:
        """CPU seconds the emulator has used; None without /proc."""
        return None if self.pid is None else process_cpu(self.pid)

    def close(self) -> None:
        """Stop it (SIGTERM: uvicorn shuts down gracefully; SIGKILL if it does not) and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def start_emulator() -> EmulatorProcess:
    """Start the emulator on a free port and wait until its control API answers."""
    # Open for the process's life (its stderr, read if it fails to start); close() closes it.
    stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
    command = ["emulate", "ably", "--host", HOST, "--port", "0", "--key", KEY]
    process = subprocess.Popen(
        [sys.executable, "-m", "realtime_bridge.cli", *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    emulator = EmulatorProcess(url="", _process=process, _stderr=stderr)
    try:
        emulator.url = _announced_url(process)
        _wait_until_answering(emulator)
    except BaseException:
        why = _tail(stderr)
        emulator.close()
        raise EmulatorUnavailable(f"the Ably emulator did not start: {why}") from None
    return emulator


def _announced_url(process: subprocess.Popen[str]) -> str:
    """The URL in the emulator's first line, "... listening on http://127.0.0.1:PORT"."""
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                return found.group(1)
            if not line:  # end of output: it exited
                break
        elif process.poll() is not None:
            break
    raise EmulatorUnavailable("no URL announced")


def _wait_until_answering(emulator: EmulatorProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if httpx.get(f"{emulator.url}/_emulator", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not emulator.running or time.monotonic() > deadline:
            raise EmulatorUnavailable("its control API did not answer")
        time.sleep(0.05)


def _tail(stream: IO[str], lines: int = 20) -> str:
    with contextlib.suppress(OSError, ValueError):
        stream.seek(0)
        text = "\n".join(stream.read().splitlines()[-lines:]).strip()
        return text or "(nothing on stderr)"
    return "(no stderr)"


# -- the rig: clients, control calls, checks ----------------------------------------------


@dataclass(slots=True)
class Rig:
    """The emulator and the clients every peer shares during one benchmark run."""

    emulator: EmulatorProcess
    sdk_json: AblyRest
    sdk_msgpack: AblyRest
    adapter: AblyAdapter
    bridge: Bridge
    control: httpx.AsyncClient
    in_flight: int

    @classmethod
    def open(cls, emulator: EmulatorProcess, in_flight: int) -> Rig:
        """Clients for ``emulator``: the SDK as the emulator's instructions show, and ours."""

        def sdk(binary: bool) -> AblyRest:
            return AblyRest(
                key=emulator.key,
                endpoint=HOST,
                port=emulator.port,
                tls=False,
                use_binary_protocol=binary,
                use_token_auth=True,
            )

        adapter = AblyAdapter.from_url(f"ably://{emulator.key}@{HOST}:{emulator.port}?tls=false")
        control = httpx.AsyncClient(base_url=f"{emulator.url}/_emulator", timeout=30.0)
        return cls(emulator, sdk(False), sdk(True), adapter, Bridge(adapter), control, in_flight)

    async def fresh(self) -> None:
        """An empty emulator, and a valid token in every client (reset forgets tokens)."""
        (await self.control.post("/reset")).raise_for_status()
        await self.sdk_json.auth.authorize()
        await self.sdk_msgpack.auth.authorize()
        await self.adapter.ping()  # its stale token is refused (40143): it fetches a new one

    async def publish_requests(self) -> int:
        """Publish requests the emulator has answered since the last reset."""
        response = await self.control.get("/requests")
        response.raise_for_status()
        counts = response.json()
        return int(counts.get(SINGLE_ROUTE, 0)) + int(counts.get(BATCH_ROUTE, 0))

    async def check_stored(self, events: Sequence[Event], who: str) -> None:
        """Fail loudly unless each channel holds exactly ``events``' envelopes, in order."""
        for channel, expected in by_channel(events).items():
            response = await self.control.get("/messages", params={"channel": channel})
            response.raise_for_status()
            stored = response.json()
            if len(stored) != len(expected):
                raise RuntimeError(
                    f"{who}: {channel} holds {len(stored)} messages, {len(expected)} were sent"
                )
            for message, event in zip(stored, expected, strict=True):
                if message.get("name") != event.type or _decoded(message) != envelope(event):
                    raise RuntimeError(
                        f"{who}: {channel} does not hold the events as sent, in order: "
                        f"expected {event.id}, found {str(message.get('data'))[:120]!r}"
                    )

    def emulator_cpu(self) -> float | None:
        return self.emulator.cpu()

    async def close(self) -> None:
        try:
            await self.bridge.aclose()  # closes the adapter's pooled client
        finally:
            await self.sdk_json.close()
            await self.sdk_msgpack.close()
            await self.control.aclose()


def _decoded(message: dict[str, Any]) -> object:
    data = message.get("data")
    if message.get("encoding") == "json" and isinstance(data, str):
        return json.loads(data)
    return data


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run of one peer: wall seconds, our CPU seconds, the emulator's CPU seconds."""

    events: int
    seconds: float
    cpu: float
    emulator_cpu: float | None
    requests: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def clock(
    rig: Rig, events: Sequence[Event], requests: int, who: str, send: Callable[[], Awaitable[None]]
) -> Sample:
    """Time one ``send()`` of ``events`` on an empty emulator, then check what it stored.

    ``requests``: how many publish requests the peer's shape implies; the
    emulator's count must match. Collects garbage first so old garbage is not billed.
    """
    await rig.fresh()
    before = await rig.publish_requests()
    gc.collect()
    emulator_before = rig.emulator_cpu()
    cpu_before = time.process_time()
    start = time.perf_counter()
    await send()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    emulator_after = rig.emulator_cpu()
    made = await rig.publish_requests() - before
    if made != requests:
        raise RuntimeError(f"{who} made {made} publish requests; its shape implies {requests}")
    await rig.check_stored(events, who)
    emulator = None
    if emulator_before is not None and emulator_after is not None:
        emulator = emulator_after - emulator_before
    return Sample(len(events), seconds, cpu, emulator, made)


# -- the peers: each prepares untimed, then returns its timed, checked Sample ----------


async def _sdk_one_per_call(rig: Rig, sdk: AblyRest, count: int, who: str) -> Sample:
    events = build_events(count)
    channels = {name: sdk.channels.get(name) for name in by_channel(events)}
    calls = [(channels[event.channel], event.type, envelope(event)) for event in events]

    async def send() -> None:
        for channel, name, data in calls:
            await channel.publish(name, data)

    return await clock(rig, events, len(calls), who, send)


async def sdk_publish(rig: Rig, count: int) -> Sample:
    """The reference, as the SDK's README shows: ``await channel.publish(name, data)``, JSON."""
    return await _sdk_one_per_call(rig, rig.sdk_json, count, "SDK publish")


async def sdk_publish_msgpack(rig: Rig, count: int) -> Sample:
    """As ``sdk_publish`` with the SDK's default protocol, msgpack."""
    return await _sdk_one_per_call(rig, rig.sdk_msgpack, count, "SDK publish (msgpack)")


async def sdk_messages(rig: Rig, count: int) -> Sample:
    """The SDK's best sequential use: ``publish(messages=[...])`` of 100 of one channel.

    The SDK publishes to one channel per call, so events are grouped by channel
    (each channel's in order) and cut into 100s before the clock starts.
    """
    events = build_events(count)
    calls = [
        (rig.sdk_json.channels.get(channel), [Message(e.type, envelope(e)) for e in batch])
        for channel, group in by_channel(events).items()
        for batch in chunks(group)
    ]

    async def send() -> None:
        for channel, messages in calls:
            await channel.publish(messages=messages)

    return await clock(rig, events, len(calls), "SDK publish(messages=[...])", send)


async def sdk_lanes(rig: Rig, count: int) -> Sample:
    """``channel.publish(name, data)`` one per call, in ``in_flight`` lanes at once.

    Each lane holds whole channels (``lanes``) and awaits its calls in turn, so
    every channel's events still go out in order; the lanes share one client.
    """
    events = build_events(count)
    channels = {name: rig.sdk_json.channels.get(name) for name in by_channel(events)}
    split = [
        [(channels[event.channel], event.type, envelope(event)) for event in lane]
        for lane in lanes(events, rig.in_flight)
    ]

    async def lane(calls: list[tuple[Any, str, dict[str, Any]]]) -> None:
        for channel, name, data in calls:
            await channel.publish(name, data)

    async def send() -> None:
        await asyncio.gather(*(lane(calls) for calls in split))

    return await clock(rig, events, len(events), "SDK publish in lanes", send)


def _requests_for(events: Sequence[Event]) -> int:
    """Requests our adapter makes for ``events`` sent in 100s: one each, even a batch of one."""
    return len(chunks(events))


async def ours_batch(rig: Rig, count: int) -> Sample:
    """Our adapter, as the relay calls it: ``publish`` of 100 events, awaited in turn."""
    events = build_events(count)
    batches = chunks(events)
    published = 0

    async def send() -> None:
        nonlocal published
        for batch in batches:
            published += (await rig.adapter.publish(batch)).published

    sample = await clock(rig, events, len(batches), "our adapter", send)
    if published != count:
        raise RuntimeError(f"our adapter published {published} of {count} events")
    return sample


async def ours_many(rig: Rig, count: int) -> Sample:
    """``Bridge.publish_many`` of every event: it cuts them into 100s, sent in turn."""
    events = build_events(count)
    published = 0

    async def send() -> None:
        nonlocal published
        published = (await rig.bridge.publish_many(events)).published

    sample = await clock(rig, events, _requests_for(events), "the Bridge", send)
    if published != count:
        raise RuntimeError(f"the Bridge published {published} of {count} events")
    return sample


async def ours_lanes(rig: Rig, count: int) -> Sample:
    """``Bridge.publish_many`` in ``in_flight`` lanes at once, each holding whole channels."""
    events = build_events(count)
    split = lanes(events, rig.in_flight)
    published = 0

    async def send() -> None:
        nonlocal published
        receipts = await asyncio.gather(*(rig.bridge.publish_many(lane) for lane in split))
        published = sum(receipt.published for receipt in receipts)

    requests = sum(_requests_for(lane) for lane in split)
    sample = await clock(rig, events, requests, "the Bridge in lanes", send)
    if published != count:
        raise RuntimeError(f"the Bridge published {published} of {count} events")
    return sample


@dataclass(frozen=True, slots=True)
class Peer:
    """One way of publishing: what it is, and what each HTTP request it makes carries."""

    key: str
    name: str
    requests: str
    run: Callable[[Rig, int], Awaitable[Sample]]


BASELINE = "sdk-publish"
SDK_MSGPACK = "sdk-msgpack"
SDK_MESSAGES = "sdk-messages"
SDK_LANES = "sdk-lanes"
OURS_BATCH = "ours-batch"
TARGET = "ours-many"
OURS_LANES = "ours-lanes"
_LANES = "{in_flight} in flight (one per lane; each lane holds whole channels, in order)"
PEERS: tuple[Peer, ...] = (
    Peer(
        BASELINE,
        "ably SDK `channel.publish(name, data)` (its README way), JSON",
        "one `POST /channels/<channel>/messages` per event, awaited in turn",
        sdk_publish,
    ),
    Peer(
        SDK_MSGPACK,
        "ably SDK `channel.publish(name, data)`, msgpack (its default protocol)",
        "as above, msgpack bodies",
        sdk_publish_msgpack,
    ),
    Peer(
        SDK_MESSAGES,
        f"ably SDK `channel.publish(messages=[...])`, {BATCH} of one channel per call",
        f"one `POST /channels/<channel>/messages` per {BATCH} events of one channel",
        sdk_messages,
    ),
    Peer(
        SDK_LANES,
        "ably SDK `channel.publish(name, data)` in {in_flight} lanes at once",
        "one `POST /channels/<channel>/messages` per event, " + _LANES,
        sdk_lanes,
    ),
    Peer(
        OURS_BATCH,
        f"**our adapter**, `publish(batch of {BATCH})`, one at a time",
        f"one `POST /messages` (batch publish, any channels) per {BATCH} events, in turn",
        ours_batch,
    ),
    Peer(
        TARGET,
        "**our Bridge**, `publish_many` of all events",
        f"as above: it cuts the events into {BATCH}s, sent in turn",
        ours_many,
    ),
    Peer(
        OURS_LANES,
        "**our Bridge**, `publish_many` in {in_flight} lanes at once",
        f"one `POST /messages` per {BATCH} events, " + _LANES,
        ours_lanes,
    ),
)


@dataclass(frozen=True, slots=True)
class Figure:
    """One peer's samples, one per round."""

    peer: Peer
    samples: tuple[Sample, ...]

    @property
    def rates(self) -> list[float]:
        return [sample.rate for sample in self.samples]

    @property
    def median(self) -> float:
        """Median events/s."""
        return statistics.median(self.rates)

    @property
    def cpu_us(self) -> float:
        """Median CPU microseconds per event of this process (SDK or ours, and the harness)."""
        return statistics.median(sample.cpu / sample.events * 1e6 for sample in self.samples)

    @property
    def emulator_us(self) -> float | None:
        """Median CPU microseconds per event of the emulator; None where it could not be read."""
        values = [
            s.emulator_cpu / s.events * 1e6 for s in self.samples if s.emulator_cpu is not None
        ]
        return statistics.median(values) if values else None

    @property
    def requests(self) -> int:
        """Publish requests per run (the same every round)."""
        return self.samples[0].requests


@dataclass(frozen=True, slots=True)
class Report:
    """Everything BENCHMARKS.md shows: the figures and what they were measured on."""

    figures: tuple[Figure, ...]
    machine: dict[str, str]
    settings: dict[str, str]
    in_flight: int

    def figure(self, key: str) -> Figure:
        return next(figure for figure in self.figures if figure.peer.key == key)

    def ratio(self, figure: Figure, baseline: str = BASELINE) -> float:
        """``figure``'s median events/s over the SDK's one-per-call ``publish``."""
        return figure.median / self.figure(baseline).median

    def round_ratios(self, figure: Figure) -> list[float]:
        """``figure`` over the SDK's ``publish`` round by round: how far noise moves it."""
        baseline = self.figure(BASELINE).rates
        return [rate / base for rate, base in zip(figure.rates, baseline, strict=True)]

    def name(self, figure: Figure) -> str:
        return figure.peer.name.format(in_flight=self.in_flight)


async def run_round(rig: Rig, peers: Sequence[Peer], count: int, shift: int) -> list[Sample]:
    """Each peer once, starting at ``shift`` so no peer always goes first."""
    samples: list[Sample | None] = [None] * len(peers)
    for step in range(len(peers)):
        index = (shift + step) % len(peers)
        samples[index] = await peers[index].run(rig, count)
    return [sample for sample in samples if sample is not None]


async def measure(
    *,
    events: int = EVENTS,
    rounds: int = ROUNDS,
    in_flight: int = IN_FLIGHT,
    peers: Sequence[Peer] = PEERS,
    emulator: EmulatorProcess | None = None,
) -> Report:
    """Measure every peer ``rounds`` times, interleaved, ``events`` events per run.

    Against ``emulator`` if given (it is reset before every run); otherwise one
    is started in a process of its own (``EmulatorUnavailable`` if it cannot
    be) and stopped afterwards.
    """
    own = emulator is None
    if emulator is None:
        emulator = start_emulator()
    try:
        rig = Rig.open(emulator, in_flight)
        try:
            # Untimed warm-up: imports, tokens, the first connections.
            await run_round(rig, peers, min(events, CHANNELS * 2), shift=0)
            per_round = [await run_round(rig, peers, events, shift) for shift in range(rounds)]
            await rig.control.post("/reset")  # leave no bench messages in a shared emulator
        finally:
            await rig.close()
    finally:
        if own:
            emulator.close()
    figures = tuple(
        Figure(peer, tuple(samples[index] for samples in per_round))
        for index, peer in enumerate(peers)
    )
    sample = build_events(1)[0]
    ours, theirs = len(sample.encode()), len(json.dumps(envelope(sample)))
    settings = {
        "rounds": str(rounds),
        "events per run": f"{events} over {min(events, CHANNELS)} channels, round-robin",
        "payload": f"`data` {len(sample.data_json)} bytes; the message's `data` is the "
        f"envelope, {ours} bytes as our adapter sends it (`Event.encode()`, compact), "
        f"{theirs} as the SDK sends it (its `json.dumps` of the same dict puts a space "
        "after every `,` and `:`); both with `encoding: json` and the same name",
        "concurrency": f"{in_flight} lanes in the lanes peers",
        "emulator": "one private process (`realtime-bridge emulate ably`) on loopback, "
        "plain HTTP, token auth; reset before every run",
    }
    return Report(figures, describe_machine(), settings, in_flight)


def describe_machine() -> dict[str, str]:
    """What the figures were measured on, so a reader can tell whether theirs should match."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {
        **compose.machine(),
        "ably SDK": metadata.version("ably"),
        "httpx": metadata.version("httpx"),
        "httpcore": metadata.version("httpcore"),
        "msgpack": metadata.version("msgpack"),
        "emulator": f"uvicorn {metadata.version('uvicorn')} ({http} "
        f"{metadata.version(http)}, asyncio loop), starlette {metadata.version('starlette')}",
    }


# -- BENCHMARKS.md ----------------------------------------------------------------

_METHOD = """\
The code is `bench/ably_publish.py`; `bench/run ably_publish` re-measures this
section alone (about two minutes).

No Ably server runs locally, so the server is the project's Ably emulator
(`realtime-bridge emulate ably`, `realtime_bridge.testing.ably`), started in a
process of its own on loopback, so its CPU is not billed to the clients and no
client shares its event loop. Every peer sends {events:,} fresh events,
round-robin over {channels} channels, from one process, over plain HTTP with
token auth. Our adapter sends each event's envelope (`Event.encode()`) as the
message's `data`; the SDK is given the same envelope as a dict, which it sends
as JSON; both with `encoding: json` and the same name. Events are built, and
batches and lanes cut, before the clock starts. Before every run the emulator
is reset and every client fetches a fresh token, untimed; after it, the
emulator's control API must show each channel holding exactly the run's
events, as sent and in order, and the number of publish requests the peer's
shape implies. Peers run interleaved, order rotated each round, after an
untimed warm-up; the table shows each peer's median events/s and the range
over the rounds. "vs SDK publish" divides by the median of the SDK called as
its README shows, one `await channel.publish(name, data)` per event. CPU per
event is this process's CPU time over the run (`time.process_time()`: the
client library, our code, the harness) and the emulator's
(`/proc/<pid>/stat`), divided by the events.
Target (issue 5): >= 3x the SDK's `channel.publish`, one event per call.

Concurrency: neither the SDK nor the Bridge has an in-flight option;
`publish_many` sends one batch of {batch} at a time, in order. The lanes peers
run {in_flight} senders at once on one client, as a relay with several
partitions does: each lane holds whole channels (dealt round-robin,
{per_lane} channels a lane here) and sends them in order, so every channel's
events still reach Ably in order, whatever the lanes' interleaving (the
emulator's stored order confirms it every run). The same lanes are used for the
SDK and for ours.
"""


def _reading(report: Report) -> str:
    """The notes under the table: what limits each figure, from this run's numbers."""
    sdk, messages_ = report.figure(BASELINE), report.figure(SDK_MESSAGES)
    sdk_binary, sdk_lanes_ = report.figure(SDK_MSGPACK), report.figure(SDK_LANES)
    batch, many = report.figure(OURS_BATCH), report.figure(TARGET)
    lanes_ = report.figure(OURS_LANES)
    cpus = os.cpu_count() or 1
    per_sdk_request = sdk.cpu_us * sdk.requests / sdk.samples[0].events
    per_our_request = many.cpu_us * many.samples[0].events / many.requests
    lines = [
        "### Reading the figures\n",
        f"- Why ours is faster: requests. The SDK's `publish` makes one HTTP request per "
        f"event ({sdk.requests:,} here); our adapter makes one `POST /messages` per {BATCH} "
        f"events ({many.requests:,}), Ably's batch publish, which takes messages for any "
        "mix of channels. Each request has a large fixed client cost, whatever it carries "
        f"(both clients are httpx): the SDK spent {per_sdk_request:.0f} µs on a "
        f"request carrying one message, ours {per_our_request:,.0f} µs on one carrying "
        f"{BATCH}, so ours used {sdk.cpu_us / many.cpu_us:.0f}x less CPU per event "
        f"({many.cpu_us:.0f} vs {sdk.cpu_us:.0f} µs).",
        "- Not why: both keep one pooled `httpx.AsyncClient` per client object with "
        "keep-alive connections, and both make message ids locally (the SDK a random "
        "`base64(12 random bytes):<index>` per call, RSL1k1; ours `<event id>:0`). The ids "
        "matter for retries, not speed: ours are the same on every retry, so Ably drops a "
        "copy it already has; the SDK's are new on every call, so a caller's retry after a "
        "lost response publishes again (only its own retries of one request to fallback "
        "hosts keep them).",
        "- The emulator "
        + _emulator_cost(sdk, many, cpus)
        + " Against Ably itself each request also waits a network round trip (tens of "
        "milliseconds from most places), which one request per event pays per event and "
        f"ours once per {BATCH}; this bench, on loopback, does not measure that.",
        f"- The SDK's best sequential use, `publish(messages=[...])` of {BATCH}, ran at "
        f"{messages_.median / sdk.median:.1f}x its one-per-call `publish`, and our "
        f"`publish_many` at {many.median / messages_.median:.2f}x it, using "
        f"{many.cpu_us / messages_.cpu_us:.2f}x its CPU per event ({many.cpu_us:.0f} vs "
        f"{messages_.cpu_us:.0f} µs). It publishes to one channel per call, so it needs events "
        f"grouped by channel: {_grouping(many.samples[0].events)} A relay's events come "
        "interleaved over channels; ours batches them as they come, any mix of channels."
        + _batch_shapes(messages_, many),
        f"- msgpack (the SDK's default) ran at {sdk_binary.median / sdk.median:.2f}x JSON "
        f"one per call ({sdk_binary.cpu_us:.0f} vs {sdk.cpu_us:.0f} µs per event)"
        + (
            ": the body's encoding is a small part of a request's cost."
            if sdk_binary.cpu_us > 0.8 * sdk.cpu_us
            else "."
        ),
        f"- {report.in_flight} lanes: the SDK's `publish` ran at "
        f"{sdk_lanes_.median / sdk.median:.2f}x its sequential figure, our Bridge at "
        f"{lanes_.median / many.median:.2f}x its own. "
        + _lanes_limit(sdk_lanes_, lanes_)
        + f" Our `publish(batch of {BATCH})` and `publish_many` make the same requests; "
        f"they ran at {batch.median:,.0f} and {many.median:,.0f} events/s, the Bridge's own "
        f"work (validation, retry and breaker bookkeeping, stats) costing "
        f"{many.cpu_us - batch.cpu_us:.1f} µs of CPU per event.",
    ]
    return "\n".join(lines) + "\n"


def _emulator_cost(single: Figure, batched: Figure, cpus: int) -> str:
    """What the emulator spends per event, and how much of a one-per-call event's time."""
    high, low = single.emulator_us, batched.emulator_us
    if high is None or low is None:
        return f"runs on the same {cpus} CPUs as this process (its CPU could not be read)."
    if low <= 0:
        return f"runs on the same {cpus} CPUs as this process (runs too short to read its CPU)."
    wall = 1e6 / single.median
    return (
        f"(uvicorn and starlette, one Python process) runs on the same {cpus} CPUs as this "
        f"process. It spent {high:.0f} µs of CPU per event on one request per event and "
        f"{low:.0f} µs on batches of {BATCH} ({high / low:.0f}x less). One request at a time, "
        "client and server mostly take turns: the SDK's "
        f"{single.cpu_us:.0f} µs plus the emulator's {high:.0f} µs come to "
        f"{single.cpu_us + high:.0f} µs (a little of it overlaps, on {cpus} CPUs), against "
        f"the {wall:.0f} µs each event took. So the server's cost is in every "
        "one-request-at-a-time figure, the SDK's and ours alike."
    )


def _batch_shapes(sdk: Figure, ours: Figure) -> str:
    """Where the time of two one-request-at-a-time batch peers goes: client, then emulator."""
    if sdk.emulator_us is None or ours.emulator_us is None:
        return ""
    return (
        f" One request at a time, an event's time is roughly the client's CPU plus the "
        f"emulator's: {sdk.cpu_us:.0f} + {sdk.emulator_us:.0f} µs for the SDK's batches, "
        f"{ours.cpu_us:.0f} + {ours.emulator_us:.0f} µs for ours. The emulator handles a "
        "batch publish spec by spec (one per event here, each naming its channel) and an "
        "array of one channel's messages in one go; what Ably's own servers charge for "
        "either is not measured here."
    )


def _grouping(events: int) -> str:
    """How many events of one channel each ``publish(messages=[...])`` call got in this run."""
    per_channel = events // min(events, CHANNELS)
    if per_channel == BATCH:
        return f"here every channel gets exactly {BATCH} events, one full call each, its best case."
    return f"here every channel gets {per_channel:,} events, so calls of up to {BATCH}."


def _lanes_limit(sdk_lanes: Figure, ours: Figure) -> str:
    """Which process each lanes figure is bound by: the cores each one kept busy."""
    parts = []
    for who, figure in (("the SDK's", sdk_lanes), ("ours", ours)):
        client = figure.median * figure.cpu_us / 1e6
        server = None if figure.emulator_us is None else figure.median * figure.emulator_us / 1e6
        shown = "" if server is None else f" and the emulator {server:.2f}"
        bound = ""
        if server is not None and max(client, server) >= 0.75:
            bound = ": bound by " + ("this process" if client >= server else "the emulator")
        parts.append(f"with {who}, this process kept {client:.2f} of a core busy{shown}{bound}")
    return (
        "Lanes overlap the client's work with the emulator's, until one of the two "
        "processes runs out of core: " + "; ".join(parts) + "."
    )


def _per_lane(channels: int, count: int) -> str:
    """How many channels each lane holds: "12 or 13", or "5" when they divide evenly."""
    low, extra = divmod(channels, count)
    if low == 0:
        return "1"
    return f"{low}" if extra == 0 else f"{low} or {low + 1}"


def render(report: Report) -> str:
    """This benchmark's section of BENCHMARKS.md: method, verdict, machine, settings, table."""
    target = report.figure(TARGET)
    ratio, per_round = report.ratio(target), report.round_ratios(target)
    verdict = "met" if ratio >= 3 else "NOT met"
    events = target.samples[0].events
    channels = min(events, CHANNELS)
    parts = [
        "## Publish throughput: Ably adapter vs the ably SDK, on the emulator\n",
        _METHOD.format(
            events=events,
            channels=channels,
            batch=BATCH,
            in_flight=report.in_flight,
            per_lane=_per_lane(channels, report.in_flight),
        ),
        f"**Target {verdict}: the Bridge's `publish_many`, one request at a time, ran at "
        f"{ratio:.1f}x the SDK's one-per-call `channel.publish`** (ratio of medians; round "
        f"by round it ranged {min(per_round):.1f}x to {max(per_round):.1f}x), at "
        f"{target.cpu_us:.0f} µs of CPU per event against the SDK's "
        f"{report.figure(BASELINE).cpu_us:.0f} µs; with {report.in_flight} lanes it ran at "
        f"{report.ratio(report.figure(OURS_LANES)):.1f}x.\n",
        _bullets("Measured on", report.machine),
        _bullets("Settings", report.settings),
        f"### {events:,} events, {channels} channels\n",
        _table(report),
        _reading(report),
    ]
    return "\n".join(parts)


def _bullets(title: str, items: dict[str, str]) -> str:
    lines = [f"{title}:\n"] + [f"- {key}: {value}" for key, value in items.items()]
    return "\n".join(lines) + "\n"


def _table(report: Report) -> str:
    lines = [
        "| peer | events/s (median) | range over rounds | vs SDK publish "
        "| our process CPU µs/event | emulator CPU µs/event | requests | its requests |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for figure in report.figures:
        low, high = min(figure.rates), max(figure.rates)
        emulator = "n/a" if figure.emulator_us is None else f"{figure.emulator_us:.0f}"
        lines.append(
            f"| {report.name(figure)} | {figure.median:,.0f} | {low:,.0f} to {high:,.0f} "
            f"| {report.ratio(figure):.2f}x | {figure.cpu_us:.0f} | {emulator} "
            f"| {figure.requests:,} | {figure.peer.requests.format(in_flight=report.in_flight)} |"
        )
    return "\n".join(lines) + "\n"


def summary(report: Report) -> str:
    """A few lines for the terminal: each peer's median, ratio and CPU per event."""
    lines = []
    for figure in report.figures:
        emulator = "n/a" if figure.emulator_us is None else f"{figure.emulator_us:.0f}"
        lines.append(
            f"{figure.median:>10,.0f} events/s  {report.ratio(figure):6.2f}x vs SDK publish  "
            f"{figure.cpu_us:6.0f} µs CPU/event (emulator {emulator:>4})  {figure.peer.key}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print a summary: what ``bench/run`` calls."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ably_publish",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=EVENTS, help="events per run")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--in-flight", type=int, default=IN_FLIGHT, help="lanes sent at once in the lanes peers"
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the harness")
    parser.add_argument(
        "--output", type=Path, help="write the section here (default: bench/sections/)"
    )
    args = parser.parse_args(argv)
    events, rounds = (QUICK_EVENTS, 1) if args.quick else (args.events, args.rounds)
    try:
        report = asyncio.run(measure(events=events, rounds=rounds, in_flight=args.in_flight))
    except EmulatorUnavailable as error:
        print(f"bench.ably_publish: {error}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(render(report), encoding="utf-8")
        path = args.output
    else:
        path = compose.write_section(NAME, render(report))
    print(summary(report))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
