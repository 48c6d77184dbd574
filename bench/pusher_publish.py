"""Publish throughput of the Pusher adapter, beside the official ``pusher`` SDK, on soketi.

Why: a Python team on Pusher would otherwise call the SDK the way its README
shows, ``pusher_client.trigger(channel, event_name, data)``, one event per
synchronous HTTP request. Issue 4 sets the bar: 10,000 events over 100
channels at five times or more that peer's events/s (batching, an async pooled
client, requests in flight), with our CPU per event reported beside the SDK's.

How, so the figures compare like with like:

- every peer runs in this one process against the same soketi (a real
  Pusher-protocol server, started here on free loopback ports through
  ``tests/soketi_server.py`` and killed afterwards), over plain HTTP; the
  channels have no subscribers, so fan-out costs nobody anything;
- the same 10,000 events, round-robin over the same 100 channels, built before
  the clock starts; the SDK is given exactly the ``data`` string our adapter
  sends (``Event.encode()`` decoded) and the same event name, so both send the
  same bytes;
- four peers: the SDK's ``trigger`` (the README way, the reference), the SDK's
  ``trigger_batch`` of 10 (its best sequential use), our ``PusherAdapter.publish``
  of 10 in sequence (the same shape as ``trigger_batch``), and
  ``Bridge.publish_many`` in ``IN_FLIGHT`` lanes at once (how a relay with several
  partitions publishes; see ``ours_lanes``);
- every run checks that soketi took every request: our adapter raises on any
  error (soketi's errors come as HTTP 200 with an ``{"error"}`` body, which it
  reads), and every body the SDK returned is checked for ``"error"``;
- beside the wall clock, each run reads this process's CPU time
  (``time.process_time()``) and soketi's (``/proc/<pid>/stat``), per event;
- peers run interleaved in rounds, the order rotated each round, after one
  untimed warm-up; each peer's median is reported, so machine noise hits all of
  them alike.

Run ``bench/run pusher_publish`` (installs soketi, writes
``bench/sections/pusher_publish.md``, then BENCHMARKS.md), or
``python -m bench.pusher_publish --help``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pusher

from bench import compose, harness
from bench.harness import CHANNELS, Figure, LanesReport, Peer, Sample, build_events
from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.pusher import PusherAdapter

# tests/ is not a package: its soketi helper is imported from the directory itself.
TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))
import soketi_server  # noqa: E402
from soketi_server import SoketiServer, start_soketi  # noqa: E402

__all__ = ["PEERS", "Rig", "main", "measure", "render"]

NAME = "pusher_publish"
#: Pusher's batch limit (``/batch_events`` takes at most 10 events).
BATCH = 10
EVENTS = 10_000
#: ``Bridge.publish_many`` calls in flight at once in the concurrent peer.
IN_FLIGHT = 8
#: Each run takes several seconds (the SDK's one-per-call peer): fewer rounds than Redis's.
ROUNDS = 5
QUICK_EVENTS = 200


@dataclass(slots=True)
class Rig:
    """The server, the clients and the events every peer shares during one benchmark run."""

    server: SoketiServer
    sdk: pusher.Pusher
    adapter: PusherAdapter
    bridge: Bridge
    events: list[Event]
    #: ``Event.encode()`` of each event as ``str``: the SDK's ``data``, our adapter's bytes.
    datas: list[str]
    in_flight: int

    @classmethod
    def open(cls, server: SoketiServer, count: int, in_flight: int) -> Rig:
        """Clients for ``server`` (the SDK as its README shows) and ``count`` events."""
        sdk = pusher.Pusher(
            app_id=server.app_id,
            key=server.key,
            secret=server.secret,
            host=server.host,
            port=server.port,
            ssl=False,
        )
        url = (
            f"pusher://{server.key}:{server.secret}@{server.host}:{server.port}/"
            f"{server.app_id}?tls=false"
        )
        adapter = PusherAdapter.from_url(url)
        events = build_events(count)
        datas = [event.encode().decode("utf-8") for event in events]
        return cls(server, sdk, adapter, Bridge(adapter), events, datas, in_flight)

    def soketi_cpu(self) -> float | None:
        return None if self.server.pid is None else harness.process_cpu(self.server.pid)

    async def close(self) -> None:
        await self.bridge.aclose()  # closes the adapter's pooled client


async def clock(rig: Rig, count: int, send: Callable[[], Awaitable[None]]) -> Sample:
    """Time one ``send()`` of ``count`` events, with soketi's CPU beside ours."""
    return await harness.timed(count, send, rig.soketi_cpu)


def expect_no_error(bodies: Sequence[Any], calls: int, who: str) -> None:
    """Fail loudly unless soketi took every call: it answers errors as 200 + ``{"error"}``."""
    if len(bodies) != calls:
        raise RuntimeError(f"{who} made {len(bodies)} of {calls} calls")
    for body in bodies:
        if not isinstance(body, dict) or "error" in body:
            raise RuntimeError(f"soketi refused a {who} call: {body!r}")


# -- the peers: each prepares untimed, then returns its timed Sample ------------------


async def sdk_trigger(rig: Rig, count: int) -> Sample:
    """The reference, as the SDK's README shows: one synchronous ``trigger`` per event."""
    calls = [
        (event.channel, event.type, data)
        for event, data in zip(rig.events[:count], rig.datas[:count], strict=True)
    ]
    bodies: list[Any] = []

    async def send() -> None:
        for channel, name, data in calls:
            bodies.append(rig.sdk.trigger(channel, name, data))

    sample = await clock(rig, count, send)
    expect_no_error(bodies, len(calls), "SDK trigger")
    return sample


async def sdk_trigger_batch(rig: Rig, count: int) -> Sample:
    """The SDK's best sequential use: ``trigger_batch`` of 10 events, one request each."""
    batches = [
        [
            {"channel": event.channel, "name": event.type, "data": data}
            for event, data in zip(events, datas, strict=True)
        ]
        for events, datas in zip(
            harness.chunks(rig.events[:count], BATCH),
            harness.chunks(rig.datas[:count], BATCH),
            strict=True,
        )
    ]
    bodies: list[Any] = []

    async def send() -> None:
        for batch in batches:
            bodies.append(rig.sdk.trigger_batch(batch))

    sample = await clock(rig, count, send)
    expect_no_error(bodies, len(batches), "SDK trigger_batch")
    return sample


async def ours_batch(rig: Rig, count: int) -> Sample:
    """Our adapter in the same shape as ``trigger_batch``: ``publish`` of 10, one at a time."""
    batches = harness.chunks(rig.events[:count], BATCH)
    tally = harness.Tally()
    sample = await clock(rig, count, harness.send_batches(rig.adapter, batches, tally))
    tally.expect("our adapter", count)
    return sample


async def ours_lanes(rig: Rig, count: int) -> Sample:
    """``Bridge.publish_many`` of all events, in ``in_flight`` lanes sent at once.

    ``publish_many`` sends one batch of 10 at a time, in order; concurrency comes
    from several calls in flight, as a relay's partitions give it. Each lane holds
    whole channels (``lanes``), so every channel's events still go out in order.
    """
    split = harness.lanes(rig.events[:count], rig.in_flight)
    tally = harness.Tally()
    sample = await clock(rig, count, harness.send_lanes(rig.bridge, split, tally))
    tally.expect("the Bridge", count)
    return sample


BASELINE = "sdk-trigger"
SDK_BATCH = "sdk-batch"
OURS_BATCH = "ours-batch"
TARGET = "ours-lanes"
PEERS: tuple[Peer[Rig], ...] = (
    Peer(
        BASELINE,
        "pusher SDK `trigger(channel, name, data)` (its README way)",
        "one `POST /events` per event, synchronous (requests)",
        sdk_trigger,
    ),
    Peer(
        SDK_BATCH,
        f"pusher SDK `trigger_batch` of {BATCH}",
        f"one `POST /batch_events` per {BATCH} events, synchronous (requests)",
        sdk_trigger_batch,
    ),
    Peer(
        OURS_BATCH,
        f"**our adapter**, `publish(batch of {BATCH})`, one at a time",
        f"one `POST /batch_events` per {BATCH} events, awaited in turn (httpx, async)",
        ours_batch,
    ),
    Peer(
        TARGET,
        "**our Bridge**, `publish_many` in {in_flight} lanes at once",
        "as above, {in_flight} requests in flight (one per lane; each lane holds whole "
        "channels and sends in order)",
        ours_lanes,
    ),
)


async def measure(
    *,
    events: int = EVENTS,
    rounds: int = ROUNDS,
    in_flight: int = IN_FLIGHT,
    peers: Sequence[Peer[Rig]] = PEERS,
    server: SoketiServer | None = None,
) -> LanesReport[Rig]:
    """Measure every peer ``rounds`` times, interleaved, ``events`` events per run.

    Against ``server`` if given; otherwise a private soketi is started (raises
    ``SoketiUnavailable`` if it is not installed: ``scripts/install-soketi``) and
    killed afterwards.
    """
    with harness.serving(server, start_soketi) as soketi:
        rig = Rig.open(soketi, events, in_flight)
        try:
            # After an untimed warm-up round: imports, the first connections, soketi's JIT.
            figures = await harness.interleave(rig, peers, events, rounds)
        finally:
            await rig.close()
        machine = describe_machine()
    sample = rig.events[0]
    settings = {
        "rounds": str(rounds),
        "events per run": f"{events} over {min(events, CHANNELS)} channels, round-robin",
        "payload": f"`data` {len(sample.data_json)} bytes, Pusher `data` (the envelope) "
        f"{len(rig.datas[0])} bytes",
        "our concurrency": f"{in_flight} `publish_many` lanes in flight",
        "soketi": "one private process on loopback, plain HTTP, default app limits "
        "(`maxBackendEventsPerSecond` -1: no rate limit), no subscribers",
    }
    return LanesReport(
        figures=figures, machine=machine, settings=settings, baseline=BASELINE, in_flight=in_flight
    )


def describe_machine() -> dict[str, str]:
    """What the figures were measured on, so a reader can tell whether theirs should match."""
    package = soketi_server.SOKETI_BIN.parent.parent / "@soketi" / "soketi" / "package.json"
    try:
        soketi = str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        soketi = "unknown"
    return {
        **compose.machine(),
        "soketi": soketi,
        "node": _node_version(),
        "pusher SDK": metadata.version("pusher"),
        "requests": metadata.version("requests"),
        "httpx": metadata.version("httpx"),
        "httpcore": metadata.version("httpcore"),
        "sniffio": _version_or("sniffio", "not installed"),
    }


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "unknown"
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _version_or(package: str, missing: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return missing


# -- BENCHMARKS.md ----------------------------------------------------------------

_METHOD = """\
The code is `bench/pusher_publish.py`; `bench/run pusher_publish` re-measures this
section alone (about a minute).

Every peer sends the same {events:,} events, round-robin over {channels} channels,
to the same soketi (a Pusher-protocol server, run privately on loopback over
plain HTTP, no subscribers), from one process. The SDK gets exactly the `data`
string our adapter sends (`Event.encode()`) and the same event name, so both
send the same bytes. Events are built and batches cut before the clock starts.
Peers run interleaved, order rotated each round, after an untimed warm-up; the
table shows each peer's median events/s and the range over the rounds. "vs SDK
trigger" divides by the median of the SDK called as its README shows, one
`trigger` per event. CPU per event is this process's CPU time over the run
(`time.process_time()`: the client library, our code, the harness) and
soketi's (`/proc/<pid>/stat`), divided by the events. Every request is checked:
our adapter raises on any error, including soketi's (sent as HTTP 200 with an
`{{"error"}}` body), and every body the SDK returned is checked for `"error"`.
Target (issue 4): >= 5x the SDK's `trigger`, one event per call.

Concurrency: `Bridge.publish_many` sends one batch of 10 at a time, in order,
and neither the Bridge nor the adapter has an in-flight option. The bench runs
{in_flight} `publish_many` calls at once, as a relay with several partitions
does: each lane holds whole channels (dealt round-robin, {per_lane} channels a
lane here), so every channel's events still reach Pusher in order, whatever
the lanes' interleaving. All lanes share the one Bridge and its pooled client.
"""


def _reading(report: LanesReport[Rig]) -> str:
    """The notes under the table: what limits each figure, from this run's numbers."""
    sdk, sdk_batch = report.figure(BASELINE), report.figure(SDK_BATCH)
    ours, lanes_ = report.figure(OURS_BATCH), report.figure(TARGET)
    cpus = os.cpu_count() or 1
    busy = lanes_.median * lanes_.cpu_us / 1e6
    lines = [
        "### Reading the figures\n",
        f"- soketi (node) runs on the same {cpus} CPUs as this process, so the server's "
        "CPU and ours compete for the same cores" + _soketi_cost(sdk, sdk_batch),
        "- soketi 1.6.1 closes the connection after every HTTP API response "
        "(`res.end(body, true)` in its `http-handler.js`), so every request of every "
        "peer opens a new TCP connection: keep-alive pooling cannot show here. Against "
        "Pusher itself (HTTPS, keep-alive) a pooled client also skips a TLS handshake "
        "per request; this bench does not measure that.",
        f"- Same shape, one request at a time: our `publish` of {BATCH} ran at "
        f"{ours.median / sdk_batch.median:.2f}x the SDK's `trigger_batch`, using "
        f"{ours.cpu_us / sdk_batch.cpu_us:.2f}x its CPU per event "
        f"({ours.cpu_us:.0f} vs {sdk_batch.cpu_us:.0f} µs).",
        f"- With {report.in_flight} lanes in flight the Bridge ran at "
        f"{lanes_.median / ours.median:.2f}x our one-at-a-time batches and "
        f"{lanes_.median / sdk_batch.median:.2f}x the SDK's `trigger_batch`. Requests in "
        "flight overlap soketi's work with ours; what is left is this process's own CPU: "
        f"{lanes_.median:,.0f} events/s x {lanes_.cpu_us:.0f} µs is {busy:.2f} of a core"
        + (
            ", so it is CPU-bound and more lanes cannot help (on the reference machine 2 "
            "to 16 lanes ran within a few percent of each other); only less CPU per "
            "request would."
            if busy >= 0.8
            else "."
        ),
    ]
    if importlib.util.find_spec("sniffio") is None:
        lines.append(
            "- sniffio is not installed here (anyio >= 4.11 no longer depends on it). "
            "httpcore 1.0.9 then tries `import sniffio` for every lock, event and "
            "cancellation shield it sets up, about six times per request here, and a failing "
            "import searches `sys.path` every time (encode/httpcore discussion #1102, PR "
            "#1103): on the reference machine that was about a quarter "
            "of our CPU per event (a stub `sniffio` module cut it from about 130 to about "
            "95 µs). The SDK uses requests, which does not pay this."
        )
    return "\n".join(lines) + "\n"


def _soketi_cost(single: Figure[Rig], batched: Figure[Rig]) -> str:
    """How much more soketi spends per event on one request per event than on batches."""
    high, low = single.server_us, batched.server_us
    if high is None or low is None or low <= 0:
        return "."
    return (
        f"; soketi spent {high / low:.1f}x as much CPU per event on one request per event "
        f"as on batches of {BATCH} ({high:.0f} vs {low:.0f} µs)."
    )


def render(report: LanesReport[Rig]) -> str:
    """This benchmark's section of BENCHMARKS.md: method, verdict, machine, settings, table."""
    target = report.figure(TARGET)
    ratio, per_round = report.ratio(target), report.round_ratios(target)
    verdict = "met" if ratio >= 5 else "NOT met"
    events = target.samples[0].events
    parts = [
        "## Publish throughput: Pusher adapter vs the pusher SDK, on soketi\n",
        _METHOD.format(
            events=events,
            channels=min(events, CHANNELS),
            in_flight=report.in_flight,
            per_lane=harness.per_lane(min(events, CHANNELS), report.in_flight),
        ),
        f"**Target {verdict}: the Bridge with {report.in_flight} lanes in flight ran at "
        f"{ratio:.1f}x the SDK's one-per-call `trigger`** (ratio of medians; round by round "
        f"it ranged {min(per_round):.1f}x to {max(per_round):.1f}x), at "
        f"{target.cpu_us:.0f} µs of CPU per event against the SDK's "
        f"{report.figure(BASELINE).cpu_us:.0f} µs.\n",
        compose.bullets("Measured on", report.machine),
        compose.bullets("Settings", report.settings),
        f"### {events:,} events, 100 channels\n",
        report.table("SDK trigger", "soketi"),
        _reading(report),
    ]
    return "\n".join(parts)


def summary(report: LanesReport[Rig]) -> str:
    """A few lines for the terminal: each peer's median, ratio and CPU per event."""
    return report.summary("SDK trigger")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print a summary: what ``bench/run`` calls."""
    parser = compose.parser(NAME, __doc__)
    parser.add_argument("--events", type=int, default=EVENTS, help="events per run")
    harness.add_lanes_options(parser, ROUNDS, IN_FLIGHT, "publish_many lanes sent at once")
    args = parser.parse_args(argv)
    events, rounds = (QUICK_EVENTS, 1) if args.quick else (args.events, args.rounds)
    measuring = measure(events=events, rounds=rounds, in_flight=args.in_flight)
    unavailable = soketi_server.SoketiUnavailable
    return compose.run(NAME, measuring, render, summary, args.output, unavailable)


if __name__ == "__main__":
    sys.exit(main())
