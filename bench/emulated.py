"""A vendor's emulator in a process of its own, for the benchmarks that measure against one.

Why a process of its own: the emulator's CPU must not be billed to the
clients being measured, and no client may share its event loop. So each
benchmark starts ``realtime-bridge emulate <vendor>`` here on a free loopback
port, reads the URL it announces, waits until its control API answers, reads
its CPU from ``/proc`` around every run, and stops it afterwards; on Linux the
child is also told to die with this process, so a killed benchmark leaves no
emulator behind.

The section helpers at the end say what the emulator's CPU figures mean, in
the words both emulator benchmarks use.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import IO, Any, Self

import httpx

from bench.harness import Figure, process_cpu

__all__ = [
    "HOST",
    "EmulatorProcess",
    "EmulatorUnavailable",
    "emulator_costs",
    "lanes_limit",
    "server_stack",
]

HOST = "127.0.0.1"
#: Upper bound for the emulator to start or stop; reached only when something is broken.
STARTUP_TIMEOUT = 20.0


class EmulatorUnavailable(RuntimeError):
    """The emulator did not start (the ``emulator`` extra missing, say); the message says why."""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if this process dies (Linux), so none is left."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(kw_only=True)
class EmulatorProcess:
    """``realtime-bridge emulate <vendor>`` on a free loopback port; ``close`` stops it.

    Benchmarks subclass it with the credentials their clients need.
    """

    url: str = ""
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

    def start(self, vendor: str, options: Sequence[str], *, probe: str) -> Self:
        """Run ``realtime-bridge emulate <vendor>`` with ``options`` on a free port; wait for it.

        Returns once ``GET <url><probe>`` (a control API route) answers 200;
        raises ``EmulatorUnavailable``, with the tail of its stderr, if it does not.
        """
        # Open for the process's life (its stderr, read if it fails to start); close() closes it.
        stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        command = ["emulate", vendor, "--host", HOST, "--port", "0", *options]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "realtime_bridge.cli", *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._stderr = stderr
        try:
            self.url = _announced_url(self._process)
            self._wait_until_answering(probe)
        except BaseException:
            why = _tail(stderr)
            self.close()
            raise EmulatorUnavailable(
                f"the {vendor.title()} emulator did not start: {why}"
            ) from None
        return self

    def _wait_until_answering(self, probe: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                if httpx.get(f"{self.url}{probe}", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.running or time.monotonic() > deadline:
                raise EmulatorUnavailable("its control API did not answer")
            time.sleep(0.05)

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


def _tail(stream: IO[str], lines: int = 20) -> str:
    with contextlib.suppress(OSError, ValueError):
        stream.seek(0)
        text = "\n".join(stream.read().splitlines()[-lines:]).strip()
        return text or "(nothing on stderr)"
    return "(no stderr)"


def server_stack() -> str:
    """What serves the emulator, for "Measured on": uvicorn, its HTTP parser, starlette."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return (
        f"uvicorn {metadata.version('uvicorn')} ({http} "
        f"{metadata.version(http)}, asyncio loop), starlette {metadata.version('starlette')}"
    )


# -- what the sections say about the emulator's CPU ------------------------------------------


def emulator_costs(
    single: Figure[Any], batched: Figure[Any], cpus: int
) -> tuple[float, float] | str:
    """The emulator's CPU µs per event for ``single`` and ``batched``, or why it cannot be told.

    The "why" is the end of a sentence that begins "The emulator".
    """
    high, low = single.server_us, batched.server_us
    if high is None or low is None:
        return f"runs on the same {cpus} CPUs as this process (its CPU could not be read)."
    if low <= 0:
        return f"runs on the same {cpus} CPUs as this process (runs too short to read its CPU)."
    return high, low


def lanes_limit(lead: str, sdk_lanes: Figure[Any], ours: Figure[Any]) -> str:
    """Which process each lanes figure is bound by: the cores each one kept busy.

    ``lead`` names what overlaps the two processes' work ("Lanes overlap").
    """
    parts = []
    for who, figure in (("the SDK's", sdk_lanes), ("ours", ours)):
        client = figure.median * figure.cpu_us / 1e6
        server = None if figure.server_us is None else figure.median * figure.server_us / 1e6
        shown = "" if server is None else f" and the emulator {server:.2f}"
        bound = ""
        if server is not None and max(client, server) >= 0.75:
            bound = ": bound by " + ("this process" if client >= server else "the emulator")
        parts.append(f"with {who}, this process kept {client:.2f} of a core busy{shown}{bound}")
    return (
        f"{lead} the client's work with the emulator's, until one of the two "
        "processes runs out of core: " + "; ".join(parts) + "."
    )
