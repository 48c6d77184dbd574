"""What the publish benchmarks share: their events, their timing, and how peers are compared.

Why one module: every publish benchmark holds its peers to the same rules
(the same payload, events built and cut before the clock starts, interleaved
rounds after an untimed warm-up, medians, ratios to the way a team would
otherwise publish), and the rules only stay the same if they are written once.
Each benchmark keeps its own peers, checks, verdict and prose.

- events: ``DATA`` (the payload of every event), ``build_events`` (round-robin
  over ``CHANNELS`` channels), ``chunks``, ``by_channel``, ``lanes`` (whole
  channels per lane, so order survives concurrency; ``per_lane`` says how
  many), ``envelope``, ``expect_published``;
- timing: ``timed`` (wall clock, this process's CPU and the server's, from
  ``process_cpu``), ``Sample``, ``run_round`` and ``interleave``;
- comparing: ``Peer``, ``Figure`` (one peer's samples), ``Report`` (ratios to
  a baseline peer) and ``LanesReport`` (the same, with lanes in flight, and
  the table and terminal summary the lanes benchmarks show);
- running: ``serving`` (a server the caller gave, or one started and stopped
  here) and ``add_lanes_options`` (the lanes benchmarks' common options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from bench import compose
from realtime_bridge import Adapter, Bridge, Event

#: A timed send: what a peer does while the clock runs.
Send = Callable[[], Awaitable[None]]

__all__ = [
    "CHANNELS",
    "DATA",
    "EVENT_TYPE",
    "Figure",
    "LanesReport",
    "Peer",
    "Report",
    "Sample",
    "Send",
    "Tally",
    "add_lanes_options",
    "build_events",
    "by_channel",
    "chunks",
    "send_batches",
    "send_lanes",
    "send_many",
    "envelope",
    "expect_published",
    "interleave",
    "lanes",
    "per_lane",
    "process_cpu",
    "run_round",
    "serving",
    "timed",
]

#: Channels the events go round-robin over (``bench.0`` to ``bench.99``).
CHANNELS = 100
EVENT_TYPE = "bench.tick"
#: The ``data`` of every event: about 200 bytes of JSON, shaped like a real state update.
DATA: dict[str, Any] = {
    "order_id": 421337,
    "status": "shipped",
    "customer": {"id": "cus_8f3a2b", "name": "Ada Lovelace"},
    "items": [{"sku": "SKU-1001", "qty": 2}, {"sku": "SKU-2002", "qty": 1}],
    "total_cents": 129900,
    "currency": "EUR",
    "carrier": "DHL",
}

R = TypeVar("R")  # a benchmark's rig: the server and clients its peers share
T = TypeVar("T")
#: Counts per run a table may show, by ``Figure`` property.
Count = Literal["events", "requests"]


# -- events --------------------------------------------------------------------------------


def build_events(count: int) -> list[Event]:
    """``count`` new events (new ids) with the bench payload, round-robin over the channels."""
    return [
        Event(channel=f"bench.{index % CHANNELS}", type=EVENT_TYPE, data=DATA)
        for index in range(count)
    ]


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Split ``items`` into batches before the clock starts, so slicing is not timed."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def by_channel(events: Sequence[Event]) -> dict[str, list[Event]]:
    """``events`` grouped by channel, each group in the events' order."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event.channel, []).append(event)
    return groups


def lanes(events: Sequence[Event], count: int) -> list[list[Event]]:
    """``events`` split into ``count`` lanes by channel, each lane in the events' order.

    Every channel's events go to one lane, so a lane sending in order keeps each
    channel's order, however the lanes interleave. Channels are dealt round-robin
    (``bench.0`` to lane 0, ``bench.1`` to lane 1, ...) so the lanes are the same size.
    """
    lane_of: dict[str, int] = {}
    split: list[list[Event]] = [[] for _ in range(count)]
    for event in events:
        lane = lane_of.setdefault(event.channel, len(lane_of) % count)
        split[lane].append(event)
    return [lane for lane in split if lane]


def per_lane(channels: int, count: int) -> str:
    """How many channels each lane holds: "12 or 13", or "5" when they divide evenly."""
    low, extra = divmod(channels, count)
    if low == 0:
        return "1"
    return f"{low}" if extra == 0 else f"{low} or {low + 1}"


def envelope(event: Event) -> dict[str, Any]:
    """The envelope our adapters send, as a dict: what a vendor's SDK is given to send."""
    return dict(json.loads(event.encode()))


def expect_published(who: str, published: int, count: int) -> None:
    """Fail loudly unless every event was published: the figure would be for less work."""
    if published != count:
        raise RuntimeError(f"{who} published {published} of {count} events")


@dataclass
class Tally:
    """What our adapter or Bridge acknowledged during a timed send, checked after the clock.

    The ``send_*`` functions build the timed part of our peers; each adds what
    was acknowledged here, so the count is checked outside the measured time.
    """

    published: int = 0

    def expect(self, who: str, count: int) -> None:
        expect_published(who, self.published, count)


def send_batches(adapter: Adapter, batches: Sequence[Sequence[Event]], tally: Tally) -> Send:
    """Our adapter as the relay calls it: ``publish`` of each batch, awaited in turn."""

    async def send() -> None:
        for batch in batches:
            tally.published += (await adapter.publish(batch)).published

    return send


def send_many(bridge: Bridge, events: Sequence[Event], tally: Tally) -> Send:
    """``Bridge.publish_many`` of every event: it cuts them into batches, sent in turn."""

    async def send() -> None:
        tally.published += (await bridge.publish_many(events)).published

    return send


def send_lanes(bridge: Bridge, split: Sequence[Sequence[Event]], tally: Tally) -> Send:
    """``Bridge.publish_many`` of each lane, all lanes at once (each holds whole channels)."""

    async def send() -> None:
        receipts = await asyncio.gather(*(bridge.publish_many(lane) for lane in split))
        tally.published += sum(receipt.published for receipt in receipts)

    return send


# -- timing --------------------------------------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) process ``pid`` has used; None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": fields 3, 4, ...
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run of one peer: wall seconds, our CPU seconds, the server's CPU seconds."""

    events: int
    seconds: float
    cpu: float
    #: None where the server's CPU could not be read (no /proc).
    server_cpu: float | None
    #: Requests the run made, where the benchmark counts them (0 where it does not).
    requests: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def timed(
    events: int,
    send: Callable[[], Awaitable[None]],
    server_cpu: Callable[[], float | None],
    requests: int = 0,
) -> Sample:
    """Time one ``send()`` of ``events`` events: the wall clock, our CPU and the server's.

    Collects garbage first, so earlier runs' garbage is not billed to this one.
    """
    gc.collect()
    server_before = server_cpu()
    cpu_before = time.process_time()
    start = time.perf_counter()
    await send()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    server_after = server_cpu()
    server = None
    if server_before is not None and server_after is not None:
        server = server_after - server_before
    return Sample(events, seconds, cpu, server, requests)


# -- comparing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer(Generic[R]):
    """One way of publishing: what it is, and what each request it makes carries.

    ``name`` and ``requests`` may hold ``{in_flight}``, filled in by ``LanesReport``.
    """

    key: str
    name: str
    requests: str
    run: Callable[[R, int], Awaitable[Sample]]


@dataclass(frozen=True, slots=True)
class Figure(Generic[R]):
    """One peer's samples, one per round."""

    peer: Peer[R]
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
    def server_us(self) -> float | None:
        """Median CPU microseconds per event of the server; None where it could not be read."""
        values = [s.server_cpu / s.events * 1e6 for s in self.samples if s.server_cpu is not None]
        return statistics.median(values) if values else None

    @property
    def events(self) -> int:
        """Events per run (the same every round)."""
        return self.samples[0].events

    @property
    def requests(self) -> int:
        """Requests per run (the same every round)."""
        return self.samples[0].requests


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


class _Rated(Protocol):
    """A figure ``Report`` can compare: its peer's key and its events/s, round by round."""

    @property
    def peer(self) -> _Keyed: ...

    @property
    def rates(self) -> Sequence[float]: ...

    @property
    def median(self) -> float: ...


F = TypeVar("F", bound=_Rated)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report(Generic[F]):
    """Everything a section shows: the figures, what they were measured on, and the yardstick."""

    figures: tuple[F, ...]
    machine: dict[str, str]
    settings: dict[str, str]
    #: The key of the peer every ratio divides by: the way a team would otherwise publish.
    baseline: str

    def figure(self, key: str) -> F:
        return next(figure for figure in self.figures if figure.peer.key == key)

    def ratio(self, figure: F, baseline: str | None = None) -> float:
        """``figure``'s median events/s over the baseline's: the issue's yardstick."""
        return figure.median / self.figure(baseline or self.baseline).median

    def round_ratios(self, figure: F) -> list[float]:
        """``figure`` over the baseline round by round: how far noise moves the ratio."""
        baseline = self.figure(self.baseline).rates
        return [rate / base for rate, base in zip(figure.rates, baseline, strict=True)]


@dataclass(frozen=True, slots=True, kw_only=True)
class LanesReport(Report[Figure[R]]):
    """A ``Report`` of ``Peer`` figures, some of them sent in ``in_flight`` lanes at once."""

    in_flight: int

    def name(self, figure: Figure[R]) -> str:
        return figure.peer.name.format(in_flight=self.in_flight)

    def table(
        self, versus: str, server: str, counts: Sequence[Count] = (), grouping: str = ""
    ) -> str:
        """The section's table: a row per peer, in the order the peers were given.

        The columns: peer, median events/s, the range over rounds, the ratio to
        the baseline (headed "vs ``versus``"), this process's CPU and the
        ``server``'s per event, then ``counts`` (per run), then what each of the
        peer's requests carries. ``grouping`` is "," where the ratio and CPU
        columns show thousands separators too.
        """
        headings = [
            "peer",
            "events/s (median)",
            "range over rounds",
            f"vs {versus}",
            "our process CPU µs/event",
            f"{server} CPU µs/event",
            *counts,
            "its requests",
        ]
        rule = "|---|" + "--:|" * (5 + len(counts)) + "---|"
        rows = [
            [
                *self._measured(figure, grouping),
                *(f"{getattr(figure, count):,}" for count in counts),
                figure.peer.requests.format(in_flight=self.in_flight),
            ]
            for figure in self.figures
        ]
        return compose.table(headings, rule, rows)

    def summary(
        self, versus: str, *, width: int = 6, server_width: int | None = None, grouping: str = ""
    ) -> str:
        """A few lines for the terminal: each peer's median, ratio and CPU per event.

        ``width`` is the ratio's and our CPU's; with ``server_width``, the
        emulator's CPU follows, that wide; ``grouping`` "," puts thousands
        separators in the CPU figures.
        """
        lines = []
        for figure in self.figures:
            line = (
                f"{figure.median:>10,.0f} events/s  {self.ratio(figure):{width}.2f}x vs {versus}  "
                f"{figure.cpu_us:{width}{grouping}.0f} µs CPU/event"
            )
            if server_width is not None:
                server = "n/a" if figure.server_us is None else f"{figure.server_us:{grouping}.0f}"
                line += f" (emulator {server:>{server_width}})"
            lines.append(f"{line}  {figure.peer.key}")
        return "\n".join(lines)

    def _measured(self, figure: Figure[R], grouping: str) -> list[str]:
        """The columns every lanes table starts with, for ``figure``."""
        low, high = min(figure.rates), max(figure.rates)
        server = "n/a" if figure.server_us is None else f"{figure.server_us:{grouping}.0f}"
        return [
            self.name(figure),
            f"{figure.median:,.0f}",
            f"{low:,.0f} to {high:,.0f}",
            f"{self.ratio(figure):{grouping}.2f}x",
            f"{figure.cpu_us:{grouping}.0f}",
            server,
        ]


async def run_round(rig: R, peers: Sequence[Peer[R]], count: int, shift: int) -> list[Sample]:
    """Each peer once, starting at ``shift`` so no peer always goes first."""
    samples: list[Sample | None] = [None] * len(peers)
    for step in range(len(peers)):
        index = (shift + step) % len(peers)
        samples[index] = await peers[index].run(rig, count)
    return [sample for sample in samples if sample is not None]


async def interleave(
    rig: R, peers: Sequence[Peer[R]], events: int, rounds: int
) -> tuple[Figure[R], ...]:
    """Every peer ``rounds`` times, interleaved, ``events`` events per run: their figures.

    One untimed warm-up round goes first (imports, the first connections, a
    server's JIT), so no peer pays for them.
    """
    await run_round(rig, peers, min(events, CHANNELS * 2), shift=0)
    per_round = [await run_round(rig, peers, events, shift) for shift in range(rounds)]
    return tuple(
        Figure(peer, tuple(samples[index] for samples in per_round))
        for index, peer in enumerate(peers)
    )


def add_lanes_options(
    parser: argparse.ArgumentParser,
    rounds: int,
    in_flight: int,
    in_flight_help: str = "lanes sent at once in the lanes peers",
) -> None:
    """The options every lanes benchmark takes after its event counts, ``--output`` last."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--in-flight", type=int, default=in_flight, help=in_flight_help)
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the harness")
    compose.add_output(parser)


class _Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


@contextlib.contextmanager
def serving(given: S | None, start: Callable[[], S]) -> Iterator[S]:
    """The server ``given``, left running; or, without one, ``start()``'s, closed on exit."""
    if given is not None:
        yield given
        return
    server = start()
    try:
        yield server
    finally:
        server.close()
