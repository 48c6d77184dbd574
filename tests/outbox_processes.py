"""Helpers for the outbox failure tests: fresh databases, relay processes, recorders.

``fresh_database`` creates a PostgreSQL database named ``rbfail_<hex>`` for one
test and drops it afterwards. ``RelayProcess`` runs ``realtime-bridge relay``
as a real subprocess that a test may SIGKILL at any moment. ``Recorder`` is a
real redis-py asyncio pub/sub subscriber that keeps every message, raw, from a
background task, so it keeps up with a relay publishing thousands a second.
Every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis_servers import HOST, LiveMessage

from realtime_bridge.events import Event

__all__ = [
    "PG_CONNECTION_ERRORS",
    "Recorder",
    "RelayProcess",
    "connect",
    "eventually",
    "fresh_database",
    "missing",
    "relay_executable",
]

#: asyncpg's errors when the server is down, restarting or just went away.
PG_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # A connection the server dropped between two queries can be left mid-state:
    # "cannot switch to state 15; another operation (2) is in progress".
    asyncpg.InternalClientError,
)


def missing(what: str) -> None:
    """Fail in CI, skip elsewhere, naming what is missing (conftest's policy)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI has it, but: {what}", pytrace=False)
    pytest.skip(what)


def relay_executable() -> str:
    """The ``realtime-bridge`` script installed beside this interpreter."""
    script = Path(sys.executable).parent / "realtime-bridge"
    if script.exists():
        return str(script)
    found = shutil.which("realtime-bridge")
    if found is None:
        missing("the realtime-bridge script is not installed (pip install -e .)")
    return str(found)


def database_url(server_dsn: str, name: str) -> str:
    parts = urlsplit(server_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def connect(dsn: str, *, within: float = 60.0) -> asyncpg.Connection[Any]:
    """A connection, retrying while the server is (re)starting, for at most ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=5)
        except PG_CONNECTION_ERRORS:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def fresh_database(server_dsn: str) -> AsyncIterator[str]:
    """A new, empty database for one test; dropped (connections and all) afterwards."""
    name = f"rbfail_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield database_url(server_dsn, name)
    finally:
        admin = await connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def eventually(
    condition: Callable[[], Any], *, within: float, what: str, every: float = 0.05
) -> None:
    """Poll ``condition`` (sync or async) until it is truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        await asyncio.sleep(every)


class RelayProcess:
    """``realtime-bridge relay`` as a subprocess, its output in a log file."""

    def __init__(
        self, database: str, adapter_url: str, workdir: Path, *options: str, name: str = "relay"
    ) -> None:
        self.command = [
            relay_executable(),
            "relay",
            "--database",
            database,
            "--url",
            adapter_url,
            *options,
        ]
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        # Only this test's settings: no REALTIME_BRIDGE_* from the environment, and a
        # working directory without a realtime_bridge.toml.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_BRIDGE_")}
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                cwd=self.workdir,
                env=env,
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send_kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would, without waiting for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.send_kill()
        process, self._process = self._process, None
        if process is not None:
            process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Recorder:
    """A real pub/sub subscriber on ``topics``, recording every message from a task.

    Messages are kept raw (``(topic, data)``) while reading and parsed lazily,
    so the reader does as little as possible per message. If the server goes
    away, the reader stops and ``disconnected`` is set; subscribe anew with a
    fresh ``Recorder`` once it is back.
    """

    def __init__(self, topics: Sequence[str], *, port: int, host: str = HOST) -> None:
        self.topics = list(topics)
        self.port = port
        self.raw: list[tuple[bytes, bytes]] = []
        self.disconnected = False
        # No reconnection: redis-py would otherwise resubscribe by itself after a server
        # restart, and a gap in what this subscriber saw would go unnoticed.
        self._client = aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0))
        self._pubsub = self._client.pubsub()
        self._task: asyncio.Task[None] | None = None
        #: Called once, from the reader, right after the next message arrives.
        self.on_next_message: Callable[[], None] | None = None
        self._parsed: list[LiveMessage] = []
        self._ids: set[str] = set()

    async def start(self) -> Recorder:
        """Subscribe, return once the server confirmed every topic, then read in the background."""
        await self._pubsub.subscribe(*self.topics)
        confirmed = 0
        deadline = time.monotonic() + 15.0
        while confirmed < len(self.topics):
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscribing to {len(self.topics)} topics timed out")
            message = await self._pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1
        self._task = asyncio.create_task(self._read(), name="recorder")
        return self

    async def _read(self) -> None:
        try:
            while True:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
                if message is not None and message["type"] == "message":
                    self.raw.append((message["channel"], message["data"]))
                    hook, self.on_next_message = self.on_next_message, None
                    if hook is not None:
                        hook()
        except (redis.RedisError, OSError):
            self.disconnected = True

    def messages(self) -> list[LiveMessage]:
        """Everything received so far, in arrival order, parsed."""
        for topic, data in self.raw[len(self._parsed) :]:
            entry, _, payload = bytes(data).partition(b"\n")
            event = Event.decode(payload)
            self._parsed.append(LiveMessage(topic.decode(), entry.decode(), event))
            self._ids.add(event.id)
        return self._parsed

    def ids(self) -> set[str]:
        self.messages()
        return self._ids

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()
        with contextlib.suppress(redis.RedisError, OSError):
            await self._client.aclose()

    async def __aenter__(self) -> Recorder:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
