"""A lean swarm of gateway clients for storm tests: raw asyncio SSE sockets, minimal parsing.

Two thousand httpx streams in one test process would cost more CPU than the
gateway under test, on a machine of two cores. A ``SwarmClient`` is one
socket, one task, and a parser that knows only what the gateway sends:
chunked HTTP/1.1, events separated by a blank line (``\\n\\n``), and the
fields ``id``, ``event`` and ``data``. Like a browser's ``EventSource``, it
takes an ``id:`` only once its event is complete (a stream cut mid-event
does not move it), and sends the last one as ``Last-Event-ID`` when it
reconnects.

Each client keeps what it received per channel, in arrival order, so a test
can compare it with what was published. ``Swarm`` runs many clients (any
kind with ``run``, ``ready`` and ``connected``: the WebSocket storm test
brings its own) and waits for conditions: every client ready, every stream
ended. Each wait is bounded, and one that runs out fails naming the clients
that fell short and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

import pytest

__all__ = ["Received", "ResetSeen", "Swarm", "SwarmClient", "SwarmMember", "describe"]

#: How long a refused connection waits before trying again (the gateway is starting).
REFUSED_PAUSE = 0.05
#: How many clients a failure message names, at most.
NAMED = 15


@dataclass(frozen=True, slots=True)
class Received:
    """One event as a client got it: the envelope's id and ``seq``, and the cursor after it."""

    event_id: str
    seq: int | None
    cursor: str


@dataclass(frozen=True, slots=True)
class ResetSeen:
    """A ``reset``: its channel, reason and position, after ``after`` events of that channel."""

    channel: str
    reason: str
    position: str
    after: int


class SwarmMember(Protocol):
    """What ``Swarm`` needs of a client."""

    name: str
    channels: tuple[str, ...]
    #: What it received, by channel, in arrival order.
    events: dict[str, list[Received]]
    ready: bool
    connected: bool
    problem: str

    async def run(self, host: str, port: int, *, deadline: float) -> None: ...

    def count(self) -> int: ...


@dataclass
class SwarmClient:
    """One SSE client: its channels and token, its position, and what it received."""

    name: str
    channels: tuple[str, ...]
    token: str
    #: The ``id:`` of the last complete event: sent as ``Last-Event-ID`` on reconnecting.
    last_id: str = ""
    events: dict[str, list[Received]] = field(default_factory=dict)
    resets: list[ResetSeen] = field(default_factory=list)
    #: Streams opened (HTTP 200), and TCP connections refused on the way.
    streams: int = 0
    refused: int = 0
    #: Whether the current stream has sent ``ready``, and whether it is still open.
    ready: bool = False
    connected: bool = False
    #: How each stream ended: "ended" (the gateway closed it properly) or "broke" (cut off).
    endings: list[str] = field(default_factory=list)
    #: Why the last stream could not be opened, or broke, for failure messages.
    problem: str = ""

    def received(self, channel: str) -> list[Received]:
        return self.events.setdefault(channel, [])

    def count(self) -> int:
        return sum(len(events) for events in self.events.values())

    async def run(self, host: str, port: int, *, deadline: float) -> None:
        """Open the stream (from ``last_id``) and read it until it ends."""
        self.ready, self.problem = False, ""
        try:
            reader, writer = await _open(host, port, deadline, self)
        except OSError as exc:
            self.problem = f"cannot connect: {exc!r}"
            return
        self.connected = True
        try:
            await self._request(reader, writer, f"{host}:{port}")
            await self._read_events(reader)
            self.endings.append("ended")
            if not self.ready:
                self.problem = "the gateway ended the stream before ready"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.problem = f"stream broke: {exc!r}"  # what a killed gateway does
            self.endings.append("broke")
        finally:
            self.connected = False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, netloc: str
    ) -> None:
        query = urlencode([("token", self.token), *(("channel", c) for c in self.channels)])
        resume = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        writer.write(
            f"GET /sse?{query} HTTP/1.1\r\nHost: {netloc}\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n".encode()
        )
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line = head.split("\r\n", 1)[0]
        if status_line.split(" ")[1:2] != ["200"]:
            raise ValueError(f"refused: {status_line!r}")
        if "transfer-encoding: chunked" not in head.lower():
            raise ValueError("the event stream is not chunked")
        self.streams += 1

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        """Dechunk and dispatch until the last chunk; a connection cut before it raises."""
        pending = b""
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise ConnectionResetError("the connection closed before the stream's end")
            size = int(size_line.strip(), 16)
            if size == 0:
                return
            pending += (await reader.readexactly(size + 2))[:-2]
            *blocks, pending = pending.split(b"\n\n")
            for block in blocks:
                self._dispatch(block.decode())

    def _dispatch(self, block: str) -> None:
        name, data, cursor = "message", [], None
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            if key == "id":
                cursor = value
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if cursor is not None:
            self.last_id = cursor  # the event is complete: its id counts now
        if not data:
            return  # retry:, or an id alone
        body = json.loads("\n".join(data))
        if name == "message":
            received = Received(body["id"], body["seq"], self.last_id)
            self.received(body["channel"]).append(received)
        elif name == "ready":
            self.ready = True
        elif name == "reset":
            channel = body["channel"]
            after = len(self.received(channel))
            self.resets.append(ResetSeen(channel, body["reason"], body["id"], after))


async def _open(
    host: str, port: int, deadline: float, client: SwarmClient
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, trying again while refused (the gateway is still starting) until ``deadline``."""
    while True:
        try:
            return await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            client.refused += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(REFUSED_PAUSE)


M = TypeVar("M", bound=SwarmMember)


class Swarm(Generic[M]):
    """Many clients against one gateway address, each on a task of its own."""

    def __init__(self, clients: Sequence[M]) -> None:
        self.clients = list(clients)
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, base_url: str, *, within: float) -> None:
        """Every client (re)connects at once, from its position; returns when all are ready.

        Fails as soon as every client is either ready or done for (its connection
        ended before ready, or could not be made), naming those that are not ready.
        """
        assert not self._tasks, "connect again only after wait_ended"
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        deadline = time.monotonic() + within
        for client in self.clients:
            client.ready = False
            self._tasks.append(asyncio.create_task(client.run(host, port, deadline=deadline)))
        task_of = {id(client): task for client, task in zip(self.clients, self._tasks, strict=True)}
        what = "to be ready (caught up and live)"
        await self.wait_for(
            lambda client: client.ready or task_of[id(client)].done(), within=within, what=what
        )
        not_ready = [client for client in self.clients if not client.ready]
        if not_ready:
            pytest.fail(
                f"{len(not_ready)} of {len(self.clients)} clients will not be ready: their "
                f"connection ended first: {describe(not_ready)}",
                pytrace=False,
            )

    async def wait_ended(self, *, within: float) -> None:
        """Wait until every client's connection has ended (the gateway went away)."""
        await self.wait_for(lambda client: not client.connected, within=within, what="to end")
        await asyncio.gather(*self._tasks)
        self._tasks.clear()

    async def wait_for(self, done: Callable[[M], bool], *, within: float, what: str) -> None:
        """Poll until ``done`` holds for every client; else fail naming those short of it."""
        deadline = time.monotonic() + within
        while True:
            short = [client for client in self.clients if not done(client)]
            if not short:
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(short)} of {len(self.clients)} clients failed {what} within "
                    f"{within} s: {describe(short)}",
                    pytrace=False,
                )
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        """End every client's connection and task."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def describe(clients: Iterable[SwarmMember]) -> str:
    """How many clients had each problem, then the first few, each with its state."""
    listed = list(clients)
    problems = Counter(client.problem for client in listed if client.problem)
    summary = "".join(f"{count} x {problem!r}; " for problem, count in problems.most_common(5))
    shown = "; ".join(
        f"{c.name} {list(c.channels)}: {c.count()} events, ready={c.ready}, "
        f"connected={c.connected}" + (f", {c.problem}" if c.problem else "")
        for c in listed[:NAMED]
    )
    more = f" (and {len(listed) - NAMED} more)" if len(listed) > NAMED else ""
    return summary + shown + more
