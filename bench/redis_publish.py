"""Publish throughput of the Redis adapter, beside encode/broadcaster and plain redis-py.

Why: the Redis adapter is the self-hosted fallback, so it must keep up with the
simplest thing a team could use instead. Issue 2 sets the bar: batches of 100
at five times or more the events/s of broadcaster's Redis backend, while also
keeping history and dropping duplicates, which broadcaster does not.

How, so the figures compare like with like:

- every peer runs in this one process against the same Redis and sends the same
  encoded envelopes (``Event.encode()``) to the same pub/sub topic, which has no
  subscribers, so fan-out costs nobody anything;
- events are built before the clock starts (building an ``Event`` is its own
  cost; the "incl. building" rows show it), and our adapter gets fresh ids for
  every run, so deduplication never drops one;
- peers run interleaved in rounds, the order rotated each round, after one
  untimed warm-up; each peer's median events/s is reported, so machine noise
  hits all of them alike.

Run ``bench/run redis_publish`` (writes ``bench/sections/redis_publish.md``, then
BENCHMARKS.md), or ``python -m bench.redis_publish --help``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import redis.asyncio as aioredis
from broadcaster import Broadcast

from bench import compose, harness
from bench.harness import DATA, EVENT_TYPE, chunks, expect_published
from realtime_bridge import Event
from realtime_bridge.adapters.redis import RedisAdapter

__all__ = ["PEERS", "Figure", "Peer", "main", "measure", "render"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
NAME = "redis_publish"
BATCH = 100
#: Many short rounds, so a burst of load elsewhere spoils a few rounds, not one peer.
ROUNDS = 10
SINGLE_EVENTS = 2000
BATCHED_EVENTS = 10000
HISTORY = 1000
CHANNEL = "bench.1"


def build_events(count: int) -> list[Event]:
    """``count`` events with the bench payload, each with a new id (so none is a duplicate)."""
    return [Event(channel=CHANNEL, type=EVENT_TYPE, data=DATA) for _ in range(count)]


@dataclass(slots=True)
class Rig:
    """The connections and payloads every peer shares during one benchmark run."""

    adapter: RedisAdapter
    broadcast: Broadcast
    client: aioredis.Redis
    prefix: str
    #: The pub/sub topic our adapter publishes on; the peers publish there too.
    topic: str
    payloads: list[bytes]
    messages: list[str]

    @classmethod
    async def open(cls, url: str, pool: int, prefix: str) -> Rig:
        """Connect everything and encode ``pool`` envelopes for the peers to send."""
        # Short TTLs: if a run dies before cleanup, its keys still go away by themselves.
        query = f"prefix={prefix}&history={HISTORY}&dedupe_ttl=600&history_ttl=600"
        adapter = RedisAdapter.from_url(f"{url}{'&' if '?' in url else '?'}{query}")
        broadcast = Broadcast(url)
        await broadcast.connect()
        payloads = [event.encode() for event in build_events(pool)]
        messages = [payload.decode() for payload in payloads]
        client = aioredis.Redis.from_url(url)
        topic = adapter.keys(CHANNEL).topic
        return cls(adapter, broadcast, client, prefix, topic, payloads, messages)

    async def close(self) -> None:
        """Delete every key the run made, then close the connections."""
        try:
            keys = [
                key async for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)
            ]
            for batch in chunks(keys, 1000):
                await self.client.delete(*batch)
        finally:
            await self.broadcast.disconnect()
            await self.adapter.aclose()
            await self.client.aclose()


async def clock(send: Callable[[], Awaitable[None]]) -> float:
    """Seconds one ``send()`` takes; collects first so earlier garbage is not billed to it."""
    gc.collect()
    start = time.perf_counter()
    await send()
    return time.perf_counter() - start


# -- the peers: each prepares untimed, then returns the seconds its sending took --


async def broadcaster_single(rig: Rig, count: int) -> float:
    """The baseline: broadcaster has no batch API, so one ``publish`` per event."""
    messages = rig.messages[:count]

    async def send() -> None:
        for message in messages:
            await rig.broadcast.publish(channel=rig.topic, message=message)

    return await clock(send)


async def redis_single(rig: Rig, count: int) -> float:
    """The floor of one round trip per event: a bare PUBLISH, no library around it."""
    payloads = rig.payloads[:count]

    async def send() -> None:
        for payload in payloads:
            await rig.client.publish(rig.topic, payload)

    return await clock(send)


async def ours_single(rig: Rig, count: int) -> float:
    """Our adapter used naively, one event per call: the full Lua work per round trip."""
    events = build_events(count)
    published = 0

    async def send() -> None:
        nonlocal published
        for event in events:
            published += (await rig.adapter.publish([event])).published

    seconds = await clock(send)
    expect_published("our adapter", published, count)
    return seconds


async def ours_single_building(rig: Rig, count: int) -> float:
    """As ``ours_single``, plus what building and validating each ``Event`` costs."""
    published = 0

    async def send() -> None:
        nonlocal published
        for _ in range(count):
            event = Event(channel=CHANNEL, type=EVENT_TYPE, data=DATA)
            published += (await rig.adapter.publish([event])).published

    seconds = await clock(send)
    expect_published("our adapter", published, count)
    return seconds


async def redis_pipeline(rig: Rig, count: int) -> float:
    """The best plain redis-py does with batching: 100 PUBLISHes per round trip."""
    batches = chunks(rig.payloads[:count], BATCH)

    async def send() -> None:
        for batch in batches:
            async with rig.client.pipeline(transaction=False) as pipe:
                for payload in batch:
                    pipe.publish(rig.topic, payload)
                await pipe.execute()

    return await clock(send)


async def ours_batch(rig: Rig, count: int) -> float:
    """The figure the target is about: 100 events per call, each deduped, kept and published."""
    batches = chunks(build_events(count), BATCH)
    published = 0

    async def send() -> None:
        nonlocal published
        for batch in batches:
            published += (await rig.adapter.publish(batch)).published

    seconds = await clock(send)
    expect_published("our adapter", published, count)
    return seconds


async def ours_batch_building(rig: Rig, count: int) -> float:
    """As ``ours_batch``, plus what building and validating each ``Event`` costs."""
    sizes = [len(batch) for batch in chunks(range(count), BATCH)]
    published = 0

    async def send() -> None:
        nonlocal published
        for size in sizes:
            batch = [Event(channel=CHANNEL, type=EVENT_TYPE, data=DATA) for _ in range(size)]
            published += (await rig.adapter.publish(batch)).published

    seconds = await clock(send)
    expect_published("our adapter", published, count)
    return seconds


@dataclass(frozen=True, slots=True)
class Peer:
    """One way of publishing: what it is, which table it belongs to, what it does per event."""

    key: str
    name: str
    batched: bool
    work: str
    run: Callable[[Rig, int], Awaitable[float]]


_OURS_WORK = (
    "EVALSHA of one Lua script: per event EXISTS id, XADD to a stream capped at "
    f"MAXLEN ~ {HISTORY}, SET id EX ttl, PUBLISH; EXPIRE once per stream; atomic"
)
_PUBLISH_ONLY = "one PUBLISH round trip; no history, no dedupe"
BASELINE = "broadcaster"
TARGET = "ours-batch"
PEERS: tuple[Peer, ...] = (
    Peer(BASELINE, "broadcaster `Broadcast.publish()`", False, _PUBLISH_ONLY, broadcaster_single),
    Peer("redis", "redis-py `PUBLISH`", False, _PUBLISH_ONLY, redis_single),
    Peer(
        "ours",
        "**our adapter**, `publish([event])`",
        False,
        f"one round trip: {_OURS_WORK}",
        ours_single,
    ),
    Peer(
        "ours+build",
        "our adapter, incl. building the `Event`",
        False,
        "as above, plus building and validating the `Event` inside the timed loop",
        ours_single_building,
    ),
    Peer(
        "redis-pipeline",
        f"redis-py pipeline of {BATCH} `PUBLISH`",
        True,
        f"{BATCH} PUBLISHes per round trip (transaction=False); no history, no dedupe",
        redis_pipeline,
    ),
    Peer(
        TARGET,
        f"**our adapter**, `publish(batch of {BATCH})`",
        True,
        f"{BATCH} events per round trip: {_OURS_WORK}",
        ours_batch,
    ),
    Peer(
        "ours-batch+build",
        "our adapter, incl. building the `Event`s",
        True,
        "as above, plus building and validating each `Event` inside the timed loop",
        ours_batch_building,
    ),
)


@dataclass(frozen=True, slots=True)
class Figure:
    """Events/s of one peer, one value per round."""

    peer: Peer
    rates: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


async def run_round(
    rig: Rig, peers: Sequence[Peer], *, single: int, batched: int, shift: int
) -> list[float]:
    """Each peer once, starting at ``shift`` so no peer always goes first; events/s per peer."""
    rates = [0.0] * len(peers)
    for step in range(len(peers)):
        index = (shift + step) % len(peers)
        count = batched if peers[index].batched else single
        rates[index] = count / await peers[index].run(rig, count)
    return rates


async def measure(
    url: str = DEFAULT_URL,
    *,
    single: int = SINGLE_EVENTS,
    batched: int = BATCHED_EVENTS,
    rounds: int = ROUNDS,
    peers: Sequence[Peer] = PEERS,
    prefix: str | None = None,
) -> harness.Report[Figure]:
    """Measure every peer ``rounds`` times, interleaved; ``single``/``batched`` events per run.

    Keys go under ``prefix`` (default: a new random one) and are deleted afterwards.
    """
    if batched % BATCH:
        raise ValueError(f"batched must be a multiple of {BATCH}, got {batched}")
    prefix = prefix or f"rbbench-{uuid.uuid4().hex[:12]}"
    rig = await Rig.open(url, max(single, batched), prefix)
    try:
        # Untimed warm-up: loads the Lua script, opens the pooled connections.
        await run_round(rig, peers, single=min(single, BATCH), batched=BATCH, shift=0)
        per_round = [
            await run_round(rig, peers, single=single, batched=batched, shift=shift)
            for shift in range(rounds)
        ]
        machine = await describe_machine(rig.client)
    finally:
        await rig.close()
    figures = tuple(
        Figure(peer, tuple(rates[index] for rates in per_round)) for index, peer in enumerate(peers)
    )
    sample = build_events(1)[0]
    settings = {
        "rounds": str(rounds),
        "events per run": f"{single} (single-event peers), {batched} (batch peers)",
        "payload": f"`data` {len(sample.data_json)} bytes, envelope {len(sample.encode())} bytes",
        "our adapter": f"`history={HISTORY}` (approximate trim), one channel",
    }
    return harness.Report(figures=figures, machine=machine, settings=settings, baseline=BASELINE)


async def describe_machine(client: aioredis.Redis) -> dict[str, str]:
    """What the figures were measured on, so a reader can tell whether theirs should match."""
    info = await client.info("server")
    return {
        **compose.machine(),
        "redis server": str(info.get("redis_version", "unknown")),
        "redis-py": metadata.version("redis"),
        "broadcaster": metadata.version("broadcaster"),
    }


# -- BENCHMARKS.md ----------------------------------------------------------------

_METHOD = f"""\
The code is `bench/redis_publish.py`; `bench/run redis_publish` re-measures this
section alone (about a minute).

Every peer publishes the same encoded envelopes (`Event.encode()`; broadcaster
gets the same JSON as `str`, its message type) to the same pub/sub topic on the
same Redis, from one asyncio process, over loopback; the topic has no
subscribers. Events are built before the clock starts, except in
the "incl. building" rows. Peers run interleaved, order rotated each round,
after an untimed warm-up; the table shows each peer's median events/s and the
range over the rounds. "vs broadcaster" divides by broadcaster's median
(it has no batch API, so it appears once, in the first table).

Our adapter does more per event than any peer: it drops duplicate ids
(kept for a TTL), appends to a capped per-channel stream for history, and
PUBLISHes, all atomically in one Lua script. The peers only PUBLISH.
Target (issue 2): batches of {BATCH} at >= 5x broadcaster's events/s.

One event per call is slower than a bare PUBLISH because Redis itself charges
more for running a script than for a PUBLISH (on the reference machine an empty
EVALSHA round trip took about 1.4x a PUBLISH round trip, and our single-event
call is within a few percent of that empty script). That is the price of doing
dedupe, history and fan-out atomically; the relay and `publish_many` send
batches, where the script's cost is shared by every event in it.
"""


def render(report: harness.Report[Figure]) -> str:
    """This benchmark's section of BENCHMARKS.md: method, verdict, machine, settings, tables."""
    target = report.figure(TARGET)
    ratio, per_round = report.ratio(target), report.round_ratios(target)
    verdict = "met" if ratio >= 5 else "NOT met"
    parts = [
        "## Publish throughput: Redis adapter vs broadcaster vs redis-py\n",
        _METHOD,
        f"**Target {verdict}: our batches of {BATCH} ran at {ratio:.1f}x broadcaster** "
        f"(ratio of medians; round by round it ranged {min(per_round):.1f}x to "
        f"{max(per_round):.1f}x).\n",
        compose.bullets("Measured on", report.machine),
        compose.bullets("Settings", report.settings),
        "### Single events (one call per event)\n",
        _table(report, [figure for figure in report.figures if not figure.peer.batched]),
        f"### Batches of {BATCH} (one call per {BATCH} events)\n",
        _table(report, [figure for figure in report.figures if figure.peer.batched]),
    ]
    return "\n".join(parts)


def _table(report: harness.Report[Figure], figures: Sequence[Figure]) -> str:
    lines = [
        "| peer | events/s (median) | range over rounds | vs broadcaster | per event, it does |",
        "|---|--:|--:|--:|---|",
    ]
    for figure in figures:
        low, high = min(figure.rates), max(figure.rates)
        lines.append(
            f"| {figure.peer.name} | {figure.median:,.0f} | {low:,.0f} to {high:,.0f} "
            f"| {report.ratio(figure):.2f}x | {figure.peer.work} |"
        )
    return "\n".join(lines) + "\n"


def summary(report: harness.Report[Figure]) -> str:
    """A few lines for the terminal: each peer's median and ratio."""
    return "\n".join(
        f"{figure.median:>12,.0f} events/s  {report.ratio(figure):6.2f}x vs broadcaster  "
        f"{figure.peer.key}"
        for figure in report.figures
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write this section, print a summary: what ``bench/run`` calls."""
    parser = compose.parser(NAME, __doc__)
    parser.add_argument("--url", default=DEFAULT_URL, help="Redis to measure against")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--single", type=int, default=SINGLE_EVENTS, help="events per single-event run"
    )
    parser.add_argument("--batched", type=int, default=BATCHED_EVENTS, help="events per batch run")
    compose.add_output(parser)
    args = parser.parse_args(argv)
    measuring = measure(args.url, single=args.single, batched=args.batched, rounds=args.rounds)
    return compose.run(NAME, measuring, render, summary, args.output)


if __name__ == "__main__":
    sys.exit(main())
