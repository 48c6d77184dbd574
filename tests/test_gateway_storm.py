"""Reconnection storms after a gateway restart, done for real (a DESIGN.md failure mode).

A real ``realtime-bridge gateway`` process serves 2,000 clients on 20 channels
(95 clients on each, and 100 more on three channels each) while a Bridge on
the same Redis publishes. The gateway is killed (SIGKILL) or stopped
(SIGTERM) and started again on the same port *while publishing goes on*, and
every client reconnects at once from its last position: SSE with
``Last-Event-ID``, WebSocket with ``last_id``. Then each client must hold
exactly every event of its channels, in publish order (``seq`` too), without
a duplicate, and ``/healthz`` must count exactly what happened. Another storm
meets cursors older than the kept history: those clients get ``reset`` for
those channels only, and lose nothing else.

Every client must be served on its first try after the restart. A stream
that ends before ``ready`` fails the test: a browser would come back after
``retry`` ms, and a gateway that sheds clients that way makes the storm
repeat. Connections refused while the new process starts are retried
(the port is not open yet), as a browser does.

The SSE clients are raw sockets (``sse_swarm``): 2,000 httpx streams would
cost more than the gateway itself. Every wait is bounded and, when it runs
out, names the clients that fell short. Nothing asserts how long anything
took; the figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from sse_swarm import NAMED, Received, Swarm, SwarmClient, SwarmMember, describe
from test_gateway_clients import SECRET

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.redis import RedisAdapter

CHANNELS = tuple(f"storm.{n}" for n in range(20))
#: Clients on each single channel, and clients on three channels each.
PER_CHANNEL, SPANNING = 95, 100
CLIENTS = PER_CHANNEL * len(CHANNELS) + SPANNING
#: Bound on any wait that involves every client at once (only a broken gateway reaches it).
STORM_PATIENCE = 60.0
#: Bound on a gateway process starting or stopping.
PROCESS_PATIENCE = 20.0
#: Seconds without a new event anywhere after which a wait for events gives up.
QUIET = 10.0
#: Events the background publisher sends at each stage (before the stop, while down, after).
STAGE = 40


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """2,000 sockets here and as many in the gateway (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * CLIENTS + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the gateway process ------------------------------------------------------------------


class GatewayProcess:
    """``realtime-bridge gateway`` in a subprocess: started, signalled, started again."""

    def __init__(self, redis_url: str, logs: Path) -> None:
        self.redis_url = redis_url
        self.logs = logs
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""
        self._starts = itertools.count(1)

    async def start(self, port: int = 0) -> str:
        """Start on ``port`` (0: a free one); the URL it prints once its socket is bound."""
        assert self.process is None, "stop the running gateway first"
        n = next(self._starts)
        out, err = self.logs / f"gateway-{n}.out", self.logs / f"gateway-{n}.err"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_BRIDGE")}
        command = [sys.executable, "-m", "realtime_bridge.cli", "gateway"]
        command += ["--redis", self.redis_url, "--port", str(port)]
        with out.open("w") as stdout, err.open("w") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdout=stdout, stderr=stderr, env=environment
            )
        deadline = time.monotonic() + PROCESS_PATIENCE
        while "listening on" not in (printed := out.read_text()):
            if self.process.returncode is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start: {printed!r} {self.log_digest()}")
            await asyncio.sleep(0.02)
        self.url = printed.split("listening on ", 1)[1].split()[0]
        return self.url

    async def stop(self, how: signal.Signals) -> int:
        """Send ``how`` and wait for the process to end; its exit code."""
        process, self.process = self.process, None
        assert process is not None
        process.send_signal(how)
        async with asyncio.timeout(PROCESS_PATIENCE):
            return await process.wait()

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=PROCESS_PATIENCE) as client:
            response = await client.get(f"{self.url}/healthz")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def rss_mib(self) -> float:
        """The running gateway's resident memory (Linux ``/proc``), for the printed figures."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        return int(line.split()[1]) / 1024

    def log_digest(self) -> str:
        """What the gateway processes wrote to stderr, each distinct line once, with a count."""
        lines = Counter(
            line
            for path in sorted(self.logs.glob("gateway-*.err"))
            for line in path.read_text().splitlines()
        )
        return "\n".join(f"{count} x {line}" for line, count in lines.most_common(20))

    async def aclose(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.stop(signal.SIGKILL)


# -- publishing ---------------------------------------------------------------------------


class Publisher:
    """Numbered events round-robin over channels, one publish at a time.

    One call at a time, so each channel's order in Redis is the order of the
    calls, and ``seq`` counts each channel's events from 0.
    """

    def __init__(self, bridge: Bridge, channels: Sequence[str]) -> None:
        self.bridge = bridge
        self.channels = tuple(channels)
        self.sent: dict[str, list[Event]] = {channel: [] for channel in channels}
        self.total = 0
        self._progress = asyncio.Event()

    def _next(self, channel: str) -> Event:
        sent = self.sent[channel]
        event = Event(channel=channel, type="storm.tick", data={"n": self.total}, seq=len(sent))
        sent.append(event)
        self.total += 1
        self._progress.set()
        return event

    async def rounds(self, count: int, channels: Sequence[str] = ()) -> None:
        """``count`` events on each of ``channels`` (all by default), one batch per round."""
        for _ in range(count):
            await self.bridge.publish_many([self._next(c) for c in channels or self.channels])

    async def until(self, more: int) -> None:
        """Wait (bounded) until the background publisher has sent ``more`` events."""
        target = self.total + more
        try:
            async with asyncio.timeout(STORM_PATIENCE):
                while self.total < target:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            pytest.fail(f"the publisher sent {more - target + self.total} of {more} events")

    @contextlib.asynccontextmanager
    async def running(
        self, channels: Sequence[str] = (), *, pause: float = 0.005, limit: int | None = None
    ) -> AsyncIterator[None]:
        """Publish on ``channels`` one event after another for the block (``limit`` at most)."""
        stop = asyncio.Event()
        cycle = itertools.islice(itertools.cycle(channels or self.channels), limit)

        async def publish_on() -> None:
            for channel in cycle:
                if stop.is_set():
                    return
                await self.bridge.publish(self._next(channel))
                await asyncio.sleep(pause)

        task = asyncio.create_task(publish_on())
        try:
            yield
        finally:
            stop.set()
            await task  # the last publish completes: nothing is half-sent


@dataclass
class Storm:
    """One test's Redis URL (with its prefix), Bridge, publisher and gateway process."""

    redis_url: str
    adapter: RedisAdapter
    bridge: Bridge
    publisher: Publisher
    gateway: GatewayProcess
    notes: list[str] = field(default_factory=list)

    def token(self, channels: Sequence[str]) -> str:
        """What the backend hands a client: ``bridge.authorize``, or one token for several."""
        if len(channels) == 1:
            return str(self.bridge.authorize(channels[0])["token"])
        return str(self.adapter.authorize_channels(channels)["token"])

    async def newest_entry(self, channel: str) -> str:
        """The id of the newest entry in ``channel``'s stream, read from Redis directly."""
        client = aioredis.Redis.from_url(self.redis_url.split("?")[0], decode_responses=True)
        try:
            entries: Any = await client.xrevrange(self.adapter.keys(channel).stream, count=1)
        finally:
            await client.aclose()
        return str(entries[0][0])


@pytest.fixture
async def storm(redis_server: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Storm]:
    async with storm_env(redis_server, redis_prefix, tmp_path) as env:
        yield env


@contextlib.asynccontextmanager
async def storm_env(
    redis_server: str, prefix: str, logs: Path, **options: str
) -> AsyncIterator[Storm]:
    """A Storm on ``prefix`` (the ``redis_prefix`` fixture deletes its keys afterwards)."""
    query = urlencode({"prefix": prefix, "gateway_secret": SECRET, **options})
    url = f"{redis_server}?{query}"
    adapter = RedisAdapter.from_url(url)
    gateway = GatewayProcess(url, logs)
    async with Bridge(adapter) as bridge:
        env = Storm(url, adapter, bridge, Publisher(bridge, CHANNELS), gateway)
        try:
            yield env
        finally:
            await gateway.aclose()
            print("\n".join(env.notes), "\ngateway stderr:\n" + gateway.log_digest())


def spanning(n: int) -> tuple[str, ...]:
    """The three channels of the ``n``th client that spans several."""
    return tuple(CHANNELS[(n + step * 7) % len(CHANNELS)] for step in range(3))


def clients_of(storm: Storm, kind: Callable[[str, tuple[str, ...], str], Any]) -> list[Any]:
    """``PER_CHANNEL`` clients on each channel, then ``SPANNING`` on three channels each."""
    clients = [
        kind(f"{channel}#{n}", (channel,), storm.token([channel]))
        for channel in CHANNELS
        for n in range(PER_CHANNEL)
    ]
    clients += [
        kind(f"spanning#{n}", spanning(n), storm.token(spanning(n))) for n in range(SPANNING)
    ]
    return clients


# -- the WebSocket clients -----------------------------------------------------------------


@dataclass
class WsSwarmClient:
    """One WebSocket client: subscribes to its channels from its last ids, and records.

    Without compression: the machine's two cores go to the gateway, not to zlib.
    """

    name: str
    channels: tuple[str, ...]
    token: str
    #: The stream entry id up to which each channel was received: sent as ``last_id``.
    positions: dict[str, str] = field(default_factory=dict)
    events: dict[str, list[Received]] = field(default_factory=dict)
    resets: list[dict[str, Any]] = field(default_factory=list)
    ready: bool = False
    connected: bool = False
    #: The close code of each connection (1006: cut off without a close frame).
    closes: list[int | None] = field(default_factory=list)
    refused: int = 0
    problem: str = ""
    _subscribed: set[str] = field(default_factory=set)

    def count(self) -> int:
        return sum(len(events) for events in self.events.values())

    async def run(self, host: str, port: int, *, deadline: float) -> None:
        """Connect, subscribe from the last ids, and record until the connection closes."""
        self.ready, self.problem = False, ""
        self._subscribed.clear()
        url = f"ws://{host}:{port}/ws?" + urlencode({"token": self.token})
        try:
            connection = await self._connect(url, deadline)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            self.problem = f"cannot connect: {exc!r}"
            return
        self.connected = True
        try:
            async with connection:
                await self._subscribe(connection)
                async for raw in connection:
                    self._handle(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.connected = False
            self.closes.append(connection.close_code)
            if not self.ready and not self.problem:
                self.problem = f"closed ({connection.close_code}) before every subscribed"

    async def _connect(self, url: str, deadline: float) -> websockets.ClientConnection:
        while True:
            try:
                return await websockets.connect(
                    url, compression=None, proxy=None, open_timeout=STORM_PATIENCE
                )
            except ConnectionRefusedError:
                self.refused += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _subscribe(self, connection: websockets.ClientConnection) -> None:
        hello = json.loads(await connection.recv())
        if hello["type"] != "connected":
            self.problem = f"refused: {hello}"
            return
        for channel in self.channels:
            message = {"type": "subscribe", "channel": channel}
            if channel in self.positions:
                message["last_id"] = self.positions[channel]
            await connection.send(json.dumps(message))

    def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message.get("channel", "")
        if kind == "event":
            envelope = message["event"]
            received = Received(envelope["id"], envelope["seq"], message["id"])
            self.events.setdefault(channel, []).append(received)
            self.positions[channel] = message["id"]
        elif kind == "subscribed":
            self.positions[channel] = message["id"]
            self._subscribed.add(channel)
            self.ready = self._subscribed == set(self.channels)
        elif kind == "reset":
            self.resets.append(message)
            self.positions[channel] = message["id"]
        elif kind == "error":
            self.problem = f"error: {message}"


# -- checking what the clients got ---------------------------------------------------------


def what_is_wrong(got: Sequence[Received], want: Sequence[Event]) -> str:
    """Empty if ``got`` is exactly ``want`` (ids and seqs, in order); else what differs."""
    ids, expected = [r.event_id for r in got], [event.id for event in want]
    if ids == expected:
        seqs = [r.seq for r in got]
        return "" if seqs == [event.seq for event in want] else f"seqs differ: {seqs[:8]}..."
    index = {event_id: n for n, event_id in enumerate(expected)}
    foreign = [i for i in ids if i not in index]
    order = [index[i] for i in ids if i in index]
    return (
        f"{len(ids)} of {len(expected)} events: {len(set(expected) - set(ids))} missing, "
        f"{len(ids) - len(set(ids))} duplicated, {len(foreign)} not published here, "
        f"{'in order' if order == sorted(order) else 'out of order'}"
    )


def assert_received(clients: Sequence[SwarmMember], want: Callable[[str], Sequence[Event]]) -> None:
    """Every client holds exactly ``want(channel)`` of each of its channels, and nothing else."""
    wrong = []
    for client in clients:
        got = client.events
        wrong += [
            f"{client.name} {channel}: {problem}"
            for channel in client.channels
            if (problem := what_is_wrong(got.get(channel, ()), want(channel)))
        ]
        if set(got) - set(client.channels):
            wrong.append(f"{client.name}: events of {sorted(set(got) - set(client.channels))}")
    assert not wrong, f"{len(wrong)} client channels are wrong: " + "; ".join(wrong[:NAMED])


async def settle(swarm: Swarm[Any], want: Callable[[str], Sequence[Event]]) -> None:
    """Wait for every client to hold ``want`` of its channels, then check it exactly.

    The wait ends when every client has as many events as wanted, when no client
    has received anything for ``QUIET`` seconds, or at ``STORM_PATIENCE``: then
    ``assert_received`` names what is missing, duplicated or out of order.
    """
    deadline = time.monotonic() + STORM_PATIENCE
    last_total, last_change = -1, time.monotonic()
    while True:
        enough = all(
            len(client.events.get(channel, ())) >= len(want(channel))
            for client in swarm.clients
            for channel in client.channels
        )
        total = sum(client.count() for client in swarm.clients)
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        if enough or now - last_change > QUIET or now > deadline:
            break
        await asyncio.sleep(0.05)
    assert_received(swarm.clients, want)


def trouble(totals: Mapping[str, int], *names: str) -> dict[str, int]:
    """Counters that are not zero, of those named."""
    return {name: totals[name] for name in names if totals.get(name, 0)}


# -- the storm ------------------------------------------------------------------------------


async def storm_through_restart(
    storm: Storm, swarm: Swarm[Any], how: signal.Signals
) -> tuple[int, dict[str, Any]]:
    """Connect the swarm, publish, restart the gateway under it while publishing, check.

    Returns the stopped process's exit code and the new one's ``/healthz``.
    """
    gateway, publisher = storm.gateway, storm.publisher
    everything = publisher.sent.__getitem__
    url = await gateway.start()
    began = time.monotonic()
    await swarm.connect(url, within=STORM_PATIENCE)
    storm.notes.append(f"first connect of {CLIENTS}: {time.monotonic() - began:.1f} s")
    first = await gateway.health()
    assert sum(first["connections"].values()) == CLIENTS, first
    assert first["channels"] == len(CHANNELS), first
    await publisher.rounds(3)
    await settle(swarm, everything)
    async with publisher.running():
        await publisher.until(STAGE)  # publishing is under way when the gateway goes
        code = await gateway.stop(how)
        await swarm.wait_ended(within=STORM_PATIENCE)
        down_at = publisher.total
        await publisher.until(STAGE)  # events no gateway saw live
        began = time.monotonic()
        await gateway.start(port=urlsplit(url).port or 0)
        await swarm.connect(url, within=STORM_PATIENCE)
        storm.notes.append(
            f"storm of {CLIENTS} after {how.name}: all ready in {time.monotonic() - began:.1f} s, "
            f"{publisher.total - down_at} events published since the gateway went down, "
            f"{sum(client.refused for client in swarm.clients)} connects refused while starting"
        )
        await publisher.until(STAGE)  # live again, and still publishing
    await publisher.rounds(3)
    await settle(swarm, everything)
    storm.notes.append(
        f"{publisher.total} events published, each to its channel's clients; "
        f"gateway RSS with {CLIENTS} clients: {gateway.rss_mib():.0f} MiB"
    )
    return code, await gateway.health()


def assert_healthy(health: dict[str, Any], transport: str) -> None:
    """The restarted gateway holds every client, each served once, with nothing dropped."""
    assert health["connections"] == {"sse": 0, "ws": 0} | {transport: CLIENTS}, health
    assert health["channels"] == len(CHANNELS), health
    assert health["totals"].get(f"{transport}_connections") == CLIENTS, health
    assert not trouble(health["totals"], "slow_consumers", "resets_gap", "stalled"), health
    assert health["redis_lost"] == 0, health


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_reconnection_storm_after_gateway_restart_loses_nothing(
    storm: Storm, how: signal.Signals
) -> None:
    """2,000 SSE clients resume with ``Last-Event-ID``; each is served once, and gets all."""
    swarm = Swarm(clients_of(storm, SwarmClient))
    try:
        code, health = await storm_through_restart(storm, swarm, how)
    finally:
        await swarm.aclose()
    assert not [client.name for client in swarm.clients if client.resets]
    if how == signal.SIGTERM:
        assert code == 0, storm.gateway.log_digest()
        cut = [client for client in swarm.clients if client.endings[0] != "ended"]
        assert not cut, f"streams the stopping gateway did not end: {describe(cut)}"
    else:
        assert code == -signal.SIGKILL
        whole = [client for client in swarm.clients if client.endings[0] != "broke"]
        assert not whole, f"streams that ended properly from a killed gateway: {describe(whole)}"
    assert_healthy(health, "sse")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_websocket_reconnection_storm_after_gateway_restart_loses_nothing(
    storm: Storm, how: signal.Signals
) -> None:
    """2,000 WebSocket clients resume with ``last_id`` per channel; each gets all."""
    swarm = Swarm(clients_of(storm, WsSwarmClient))
    try:
        code, health = await storm_through_restart(storm, swarm, how)
    finally:
        await swarm.aclose()
    assert not [client.name for client in swarm.clients if client.resets]
    first_closes = Counter(client.closes[0] for client in swarm.clients)
    if how == signal.SIGTERM:
        assert code == 0, storm.gateway.log_digest()
        assert first_closes == {1012: CLIENTS}, "service restart, for every client"
    else:
        assert code == -signal.SIGKILL
        assert first_closes == {1006: CLIENTS}, "cut off without a close frame"
    assert_healthy(health, "ws")


#: Events each channel keeps in the variant where the storm meets trimmed history.
KEPT = 20
#: The channels flooded while the gateway is down, past what is kept.
FLOODED = CHANNELS[:5]


async def test_reconnection_storm_past_the_kept_history_resets_only_those_channels(
    redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Cursors older than the kept history get ``reset``; every other channel loses nothing.

    Each channel keeps ``KEPT`` events (exact trimming). While the gateway is down,
    the ``FLOODED`` channels get more than that, so their clients' cursors are
    gone; the others get a few. During the storm, publishing goes on (on the other
    channels, and fewer than ``KEPT`` per channel, so no other cursor is trimmed).
    """
    options = {"history": str(KEPT), "exact": "true"}
    async with storm_env(redis_server, redis_prefix, tmp_path, **options) as env:
        gateway, publisher = env.gateway, env.publisher
        swarm = Swarm(clients_of(env, SwarmClient))
        try:
            url = await gateway.start()
            await swarm.connect(url, within=STORM_PATIENCE)
            await publisher.rounds(3)
            before = {channel: len(publisher.sent[channel]) for channel in CHANNELS}
            await settle(swarm, publisher.sent.__getitem__)
            await gateway.stop(signal.SIGKILL)
            await swarm.wait_ended(within=STORM_PATIENCE)
            gone, newest = await flood(env)
            await storm_while_others_publish(env, swarm, urlsplit(url).port or 0)
            await publisher.rounds(3)

            def kept(channel: str) -> list[Event]:
                sent = publisher.sent[channel]
                if channel in FLOODED:  # what came before, then what came after the reset
                    return sent[: before[channel]] + sent[gone[channel] :]
                return sent

            await settle(swarm, kept)
            health = await gateway.health()
        finally:
            await swarm.aclose()
    assert_reset_once_per_flooded_channel(swarm.clients, newest, before)
    gaps = sum(channel in FLOODED for client in swarm.clients for channel in client.channels)
    assert health["totals"].get("resets_gap") == gaps, health
    assert health["totals"].get("sse_connections") == CLIENTS, health
    assert not trouble(health["totals"], "slow_consumers", "stalled"), health


async def flood(env: Storm) -> tuple[dict[str, int], dict[str, str]]:
    """Publish past the kept history on ``FLOODED``, and a little everywhere.

    Returns, per flooded channel, how many events it has had (none of them will
    reach its clients) and the id of its newest stream entry (where ``reset`` goes on).
    """
    await env.publisher.rounds(KEPT + 5, FLOODED)
    await env.publisher.rounds(2)
    gone = {channel: len(env.publisher.sent[channel]) for channel in FLOODED}
    return gone, {channel: await env.newest_entry(channel) for channel in FLOODED}


async def storm_while_others_publish(env: Storm, swarm: Swarm[SwarmClient], port: int) -> None:
    """Restart the gateway and reconnect everyone while the other channels get events.

    At most ``KEPT - 8`` more per channel: with the 3 + 2 before, nothing is trimmed yet.
    """
    others = [channel for channel in CHANNELS if channel not in FLOODED]
    limit = (KEPT - 8) * len(others)
    async with env.publisher.running(others, pause=0.02, limit=limit):
        began = time.monotonic()
        url = await env.gateway.start(port=port)
        await swarm.connect(url, within=STORM_PATIENCE)
        env.notes.append(
            f"storm of {CLIENTS} past the kept history: all ready in "
            f"{time.monotonic() - began:.1f} s, "
            f"{sum(len(client.resets) for client in swarm.clients)} resets"
        )


def assert_reset_once_per_flooded_channel(
    clients: Sequence[SwarmClient], newest: Mapping[str, str], before: Mapping[str, int]
) -> None:
    """One ``gap`` reset per flooded channel, to its newest entry, after the events before."""
    wrong = []
    for client in clients:
        expected = [
            (channel, "gap", newest[channel], before[channel])
            for channel in client.channels
            if channel in FLOODED
        ]
        seen = [(r.channel, r.reason, r.position, r.after) for r in client.resets]
        if sorted(seen) != sorted(expected):
            wrong.append(f"{client.name}: resets {seen}, not {expected}")
    assert not wrong, f"{len(wrong)} clients got the wrong resets: " + "; ".join(wrong[:NAMED])
