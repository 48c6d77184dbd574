"""The SSE benchmark's load generator: thousands of event streams in a process of its own.

Why a process of its own, and why this lean: the gateway benchmark measures
a server, so the clients must neither share its event loop nor run out of
CPU first. Each connection is a bare ``asyncio.Protocol`` (uvloop when it is
installed): it sends one ``GET``, waits for the status line and the stream's
``event: ready``, and from then on does no SSE parsing at all. It cuts what
arrives at the last blank line (the end of an event; what follows waits for
the next read) and pulls every event's stamp ``"p":<phase>,"n":<number>,
"t":<send time, ns>`` out of the bytes with one regular expression. Chunked
framing, ``id:`` lines and heartbeats are simply not matched.

It is driven over stdin and stdout, one JSON object per line each way, by
``bench.gateway_sse``, which runs one of these per server::

    {"op": "connect", "host", "port", "path", "count", "concurrency", "patience"}
    {"op": "wait", "phase", "expected", "stall", "deadline"}   -> that phase's tally
    {"op": "close"}                                             -> then it exits

Each answer is one line: ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

__all__ = ["LoadGenerator", "PhaseTally", "StreamClient", "main", "percentile"]

#: One event's stamp, as the benchmark writes it first in the event's ``data``.
STAMP = re.compile(rb'"p":(\d+),"n":(\d+),"t":(\d+)[,}]')
#: How much of a response head is read while waiting for ``event: ready``.
MAX_HEAD = 65_536


def percentile(ordered: Any, fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) samples fall; nearest rank."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return float(ordered[rank])


@dataclass
class PhaseTally:
    """What the streams received of one phase's broadcasts."""

    #: Deliveries per broadcast number: each should reach every connection once.
    per_broadcast: Counter[int] = field(default_factory=Counter)
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    first_ns: int = 0
    last_ns: int = 0

    @property
    def delivered(self) -> int:
        return len(self.latencies_ns)

    def report(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ns)
        return {
            "delivered": self.delivered,
            "broadcasts_seen": len(self.per_broadcast),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "p50_ms": percentile(ordered, 0.50) / 1e6,
            "p99_ms": percentile(ordered, 0.99) / 1e6,
            "max_ms": (ordered[-1] / 1e6) if ordered else 0.0,
            "per_broadcast": {str(n): count for n, count in self.per_broadcast.items()},
        }


class LoadGenerator:
    """Every stream's deliveries, tallied per phase; the connections, to close at the end."""

    def __init__(self) -> None:
        self.phases: dict[int, PhaseTally] = {}
        self.clients: list[StreamClient] = []
        self.lost = 0
        self.failures: Counter[str] = Counter()

    def received(self, data: bytes, end: int) -> None:
        """Tally every stamp in ``data[:end]`` (whole events only) as delivered now."""
        now = time.time_ns()
        phases = self.phases
        for phase, number, sent in STAMP.findall(data, 0, end):
            tally = phases.get(int(phase))
            if tally is None:
                tally = phases[int(phase)] = PhaseTally(first_ns=now)
            tally.per_broadcast[int(number)] += 1
            tally.latencies_ns.append(now - int(sent))
            tally.last_ns = now

    async def connect(
        self, host: str, port: int, path: str, count: int, concurrency: int, patience: float
    ) -> dict[str, Any]:
        """Open ``count`` streams, ``concurrency`` at a time, each ready within ``patience`` s."""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        start = time.perf_counter()

        async def one() -> None:
            async with gate:
                ready: asyncio.Future[None] = loop.create_future()
                try:
                    async with asyncio.timeout(patience):
                        _, client = await loop.create_connection(
                            lambda: StreamClient(self, request, ready), host, port
                        )
                        self.clients.append(client)
                        await ready
                except (OSError, TimeoutError, ConnectionError) as exc:
                    self.failures[type(exc).__name__ + (f": {exc}" if str(exc) else "")] += 1

        await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.perf_counter() - start
        connected = sum(1 for client in self.clients if client.streaming)
        return {"connected": connected, "seconds": seconds, "failures": dict(self.failures)}

    async def wait(
        self, phase: int, expected: int, stall: float, deadline: float
    ) -> dict[str, Any]:
        """Wait until ``expected`` deliveries of ``phase`` arrived, nothing new came for
        ``stall`` seconds, or ``deadline`` seconds passed; then that phase's tally."""
        begun = last_progress = time.monotonic()
        seen = -1
        while True:
            tally = self.phases.get(phase)
            delivered = 0 if tally is None else tally.delivered
            now = time.monotonic()
            if delivered != seen:
                seen, last_progress = delivered, now
            if delivered >= expected or now - last_progress > stall or now - begun > deadline:
                break
            await asyncio.sleep(0.05)
        result = (tally or PhaseTally()).report()
        result["open"] = sum(1 for client in self.clients if client.streaming)
        result["lost"] = self.lost
        return result

    def close(self) -> None:
        for client in self.clients:
            client.close()


class StreamClient(asyncio.Protocol):
    """One event stream: the request out, the head checked, then stamps counted."""

    __slots__ = ("_generator", "_head", "_ready", "_request", "_tail", "streaming", "transport")

    def __init__(
        self, generator: LoadGenerator, request: bytes, ready: asyncio.Future[None]
    ) -> None:
        self._generator = generator
        self._request = request
        self._ready = ready
        self._head = b""
        self._tail = b""
        self.streaming = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self.streaming:
            self._await_ready(data)
            return
        if self._tail:
            data = self._tail + data
        # An event ends with a blank line: "\n\n", or "\r\n\r\n" with CRLF line ends.
        end = max(data.rfind(b"\n\n"), data.rfind(b"\n\r\n"))
        if end < 0:
            self._tail = data
            return
        self._tail = data[end:]
        self._generator.received(data, end)

    def _await_ready(self, data: bytes) -> None:
        head = self._head + data
        if not head.startswith(b"HTTP/1.1 200 ") and len(head) >= 13:
            self._fail(f"status {head[9:12].decode(errors='replace')}")
            return
        found = head.find(b"event: ready")
        if found < 0:
            if head.endswith(b"\r\n0\r\n\r\n"):  # the last chunk: the server ended the stream
                self._fail("stream ended before ready")
                return
            self._head = head[-MAX_HEAD:]
            return
        self._head = b""
        self.streaming = True
        if not self._ready.done():
            self._ready.set_result(None)
        rest = head[found:]
        self.data_received(rest[rest.find(b"\n") :])

    def _fail(self, why: str) -> None:
        if not self._ready.done():
            self._ready.set_exception(ConnectionError(why))
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming:
            self._generator.lost += 1
            self.streaming = False
        elif not self._ready.done():
            self._ready.set_exception(ConnectionError("closed before ready"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- the command loop -------------------------------------------------------------------


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def serve_commands(read_line: Callable[[], Any], write: Callable[[str], None]) -> None:
    """Answer commands until ``close`` or the end of input."""
    generator = LoadGenerator()
    try:
        while line := await read_line():
            command = json.loads(line)
            op = command.pop("op")
            try:
                if op == "connect":
                    answer = await generator.connect(**command)
                elif op == "wait":
                    answer = await generator.wait(**command)
                elif op == "close":
                    write(json.dumps({"ok": True}))
                    return
                else:
                    raise ValueError(f"unknown op {op!r}")
            except (TypeError, ValueError) as exc:
                write(json.dumps({"ok": False, "error": f"{op}: {exc}"}))
                continue
            write(json.dumps({"ok": True, **answer}))
    finally:
        generator.close()
        await asyncio.sleep(0)  # let the transports close


async def _run() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def write(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    await serve_commands(reader.readline, write)


def main() -> int:
    """Run the command loop on uvloop when it is installed, else on asyncio's own loop."""
    raise_open_files_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.run(_run())
        return 0
    asyncio.run(_run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
