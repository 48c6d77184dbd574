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

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import httpx
from ably import AblyRest
from ably.types.message import Message

from bench import compose, emulated, harness
from bench.emulated import HOST, EmulatorUnavailable
from bench.harness import CHANNELS, Figure, LanesReport, Peer, Sample, build_events, envelope
from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.ably import MAX_BATCH, AblyAdapter

__all__ = [
    "PEERS",
    "EmulatorProcess",
    "EmulatorUnavailable",
    "Rig",
    "clock",
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
#: Concurrent lanes in the lanes peers (ours and the SDK's).
IN_FLIGHT = 8
#: Each run of an SDK one-per-call peer takes several seconds: few rounds, as for Pusher.
ROUNDS = 5
QUICK_EVENTS = 200
#: The emulator's default key (``realtime_bridge.testing.ably.DEFAULT_KEY``).
KEY = "emulator.key:secret"
#: The emulator's routes that publish (``GET /_emulator/requests`` counts by route).
SINGLE_ROUTE = "POST /channels/{channel}/messages"
BATCH_ROUTE = "POST /messages"


# -- the emulator, in a process of its own ----------------------------------------------


@dataclass(kw_only=True)
class EmulatorProcess(emulated.EmulatorProcess):
    """``realtime-bridge emulate ably`` on a free loopback port; ``close`` stops it."""

    key: str = KEY


def start_emulator() -> EmulatorProcess:
    """Start the emulator on a free port and wait until its control API answers."""
    return EmulatorProcess(key=KEY).start("ably", ["--key", KEY], probe="/_emulator")


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
        for channel, expected in harness.by_channel(events).items():
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


async def clock(
    rig: Rig, events: Sequence[Event], requests: int, who: str, send: Callable[[], Awaitable[None]]
) -> Sample:
    """Time one ``send()`` of ``events`` on an empty emulator, then check what it stored.

    ``requests``: how many publish requests the peer's shape implies; the
    emulator's count must match.
    """
    await rig.fresh()
    before = await rig.publish_requests()
    sample = await harness.timed(len(events), send, rig.emulator.cpu, requests)
    made = await rig.publish_requests() - before
    if made != requests:
        raise RuntimeError(f"{who} made {made} publish requests; its shape implies {requests}")
    await rig.check_stored(events, who)
    return sample


# -- the peers: each prepares untimed, then returns its timed, checked Sample ----------


async def _sdk_one_per_call(rig: Rig, sdk: AblyRest, count: int, who: str) -> Sample:
    events = build_events(count)
    channels = {name: sdk.channels.get(name) for name in harness.by_channel(events)}
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
        for channel, group in harness.by_channel(events).items()
        for batch in harness.chunks(group, BATCH)
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
    channels = {name: rig.sdk_json.channels.get(name) for name in harness.by_channel(events)}
    split = [
        [(channels[event.channel], event.type, envelope(event)) for event in lane]
        for lane in harness.lanes(events, rig.in_flight)
    ]

    async def lane(calls: list[tuple[Any, str, dict[str, Any]]]) -> None:
        for channel, name, data in calls:
            await channel.publish(name, data)

    async def send() -> None:
        await asyncio.gather(*(lane(calls) for calls in split))

    return await clock(rig, events, len(events), "SDK publish in lanes", send)


def _requests_for(events: Sequence[Event]) -> int:
    """Requests our adapter makes for ``events`` sent in 100s: one each, even a batch of one."""
    return len(harness.chunks(events, BATCH))


async def ours_batch(rig: Rig, count: int) -> Sample:
    """Our adapter, as the relay calls it: ``publish`` of 100 events, awaited in turn."""
    events = build_events(count)
    batches = harness.chunks(events, BATCH)
    tally = harness.Tally()
    sample = await clock(
        rig, events, len(batches), "our adapter", harness.send_batches(rig.adapter, batches, tally)
    )
    tally.expect("our adapter", count)
    return sample


async def ours_many(rig: Rig, count: int) -> Sample:
    """``Bridge.publish_many`` of every event: it cuts them into 100s, sent in turn."""
    events = build_events(count)
    tally = harness.Tally()
    sample = await clock(
        rig,
        events,
        _requests_for(events),
        "the Bridge",
        harness.send_many(rig.bridge, events, tally),
    )
    tally.expect("the Bridge", count)
    return sample


async def ours_lanes(rig: Rig, count: int) -> Sample:
    """``Bridge.publish_many`` in ``in_flight`` lanes at once, each holding whole channels."""
    events = build_events(count)
    split = harness.lanes(events, rig.in_flight)
    tally = harness.Tally()
    requests = sum(_requests_for(lane) for lane in split)
    sample = await clock(
        rig, events, requests, "the Bridge in lanes", harness.send_lanes(rig.bridge, split, tally)
    )
    tally.expect("the Bridge", count)
    return sample


BASELINE = "sdk-publish"
SDK_MSGPACK = "sdk-msgpack"
SDK_MESSAGES = "sdk-messages"
SDK_LANES = "sdk-lanes"
OURS_BATCH = "ours-batch"
TARGET = "ours-many"
OURS_LANES = "ours-lanes"
_LANES = "{in_flight} in flight (one per lane; each lane holds whole channels, in order)"
PEERS: tuple[Peer[Rig], ...] = (
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


async def measure(
    *,
    events: int = EVENTS,
    rounds: int = ROUNDS,
    in_flight: int = IN_FLIGHT,
    peers: Sequence[Peer[Rig]] = PEERS,
    emulator: EmulatorProcess | None = None,
) -> LanesReport[Rig]:
    """Measure every peer ``rounds`` times, interleaved, ``events`` events per run.

    Against ``emulator`` if given (it is reset before every run); otherwise one
    is started in a process of its own (``EmulatorUnavailable`` if it cannot
    be) and stopped afterwards.
    """
    with harness.serving(emulator, start_emulator) as server:
        rig = Rig.open(server, in_flight)
        try:
            # After an untimed warm-up round: imports, tokens, the first connections.
            figures = await harness.interleave(rig, peers, events, rounds)
            await rig.control.post("/reset")  # leave no bench messages in a shared emulator
        finally:
            await rig.close()
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
    machine = describe_machine()
    return LanesReport(
        figures=figures, machine=machine, settings=settings, baseline=BASELINE, in_flight=in_flight
    )


def describe_machine() -> dict[str, str]:
    """What the figures were measured on, so a reader can tell whether theirs should match."""
    return {
        **compose.machine(),
        "ably SDK": metadata.version("ably"),
        "httpx": metadata.version("httpx"),
        "httpcore": metadata.version("httpcore"),
        "msgpack": metadata.version("msgpack"),
        "emulator": emulated.server_stack(),
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


def _reading(report: LanesReport[Rig]) -> str:
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
        + emulated.lanes_limit("Lanes overlap", sdk_lanes_, lanes_)
        + f" Our `publish(batch of {BATCH})` and `publish_many` make the same requests; "
        f"they ran at {batch.median:,.0f} and {many.median:,.0f} events/s, the Bridge's own "
        f"work (validation, retry and breaker bookkeeping, stats) costing "
        f"{many.cpu_us - batch.cpu_us:.1f} µs of CPU per event.",
    ]
    return "\n".join(lines) + "\n"


def _emulator_cost(single: Figure[Rig], batched: Figure[Rig], cpus: int) -> str:
    """What the emulator spends per event, and how much of a one-per-call event's time."""
    costs = emulated.emulator_costs(single, batched, cpus)
    if isinstance(costs, str):
        return costs
    high, low = costs
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


def _batch_shapes(sdk: Figure[Rig], ours: Figure[Rig]) -> str:
    """Where the time of two one-request-at-a-time batch peers goes: client, then emulator."""
    if sdk.server_us is None or ours.server_us is None:
        return ""
    return (
        f" One request at a time, an event's time is roughly the client's CPU plus the "
        f"emulator's: {sdk.cpu_us:.0f} + {sdk.server_us:.0f} µs for the SDK's batches, "
        f"{ours.cpu_us:.0f} + {ours.server_us:.0f} µs for ours. The emulator handles a "
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


def render(report: LanesReport[Rig]) -> str:
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
            per_lane=harness.per_lane(channels, report.in_flight),
        ),
        f"**Target {verdict}: the Bridge's `publish_many`, one request at a time, ran at "
        f"{ratio:.1f}x the SDK's one-per-call `channel.publish`** (ratio of medians; round "
        f"by round it ranged {min(per_round):.1f}x to {max(per_round):.1f}x), at "
        f"{target.cpu_us:.0f} µs of CPU per event against the SDK's "
        f"{report.figure(BASELINE).cpu_us:.0f} µs; with {report.in_flight} lanes it ran at "
        f"{report.ratio(report.figure(OURS_LANES)):.1f}x.\n",
        compose.bullets("Measured on", report.machine),
        compose.bullets("Settings", report.settings),
        f"### {events:,} events, {channels} channels\n",
        report.table("SDK publish", "emulator", ["requests"]),
        _reading(report),
    ]
    return "\n".join(parts)


def summary(report: LanesReport[Rig]) -> str:
    """A few lines for the terminal: each peer's median, ratio and CPU per event."""
    return report.summary("SDK publish", server_width=4)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print a summary: what ``bench/run`` calls."""
    parser = compose.parser(NAME, __doc__)
    parser.add_argument("--events", type=int, default=EVENTS, help="events per run")
    harness.add_lanes_options(parser, ROUNDS, IN_FLIGHT)
    args = parser.parse_args(argv)
    events, rounds = (QUICK_EVENTS, 1) if args.quick else (args.events, args.rounds)
    measuring = measure(events=events, rounds=rounds, in_flight=args.in_flight)
    return compose.run(NAME, measuring, render, summary, args.output, EmulatorUnavailable)


if __name__ == "__main__":
    sys.exit(main())
