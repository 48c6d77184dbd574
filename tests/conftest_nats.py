"""Fixtures for the NATS JetStream adapter: the machine's NATS server, or a private one.

* ``nats_server``: the URL of the machine's NATS (127.0.0.1:4222, JetStream on). Fails
  in CI and skips elsewhere if it does not answer, as ``service_missing`` does.
* ``nats_names``: a subject prefix and stream no other test uses; the stream and the
  presence bucket's stream are deleted after the test.
* ``nats_adapter``: the contract suite's adapter (``tests/conftest.py`` names it), on
  ``nats_names``, with ``history=100`` like the other contract adapters.
* ``NatsClients``: what a NATS service does on a channel, for ``test_contract.py``: a
  live subscriber is a JetStream consumer filtered to the channel's subject (the thing
  ``occupancy`` counts); members enter through the adapter, as the gateway does on Redis.
* ``NatsProcess`` / ``running_nats``: a private ``nats-server`` with JetStream on a free
  port and a temporary store, for tests that stop, kill or restart it. Stopped by pid.

A test module loads these with ``pytest_plugins = ["conftest_nats"]`` (conftest.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js.api import DeliverPolicy
from redis_servers import free_port

from realtime_bridge import Event, Member
from realtime_bridge.adapters.nats import NatsAdapter, NatsNames

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
NATS_BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"
#: Bound on every wait here (a bound on a hang, not a timing claim).
PATIENCE = 5.0
#: Generous upper bound for a private server to start or stop; only reached when broken.
STARTUP_TIMEOUT = 15.0

NextEvent = Callable[[], Awaitable[Event]]


def nats_info(host: str, port: int) -> dict[str, object] | None:
    """The server's INFO (its greeting), or None if nothing NATS-like answers."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            line = sock.makefile("rb").readline(64 * 1024)
    except OSError:
        return None
    if not line.startswith(b"INFO "):
        return None
    info: dict[str, object] = json.loads(line[5:])
    return info


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI has NATS, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def nats_server() -> str:
    """The URL of the machine's NATS with JetStream; fails in CI and skips elsewhere if down."""
    info = nats_info(NATS_HOST, NATS_PORT)
    if info is None or not info.get("jetstream"):
        state = "is not answering" if info is None else "answers without JetStream"
        _missing(
            f"NATS at {NATS_HOST}:{NATS_PORT} {state} (start it: {NATS_BINARY} -a {NATS_HOST} "
            f"-p {NATS_PORT} -js -sd /var/lib/nats-server)"
        )
    return f"nats://{NATS_HOST}:{NATS_PORT}"


def unique_names() -> NatsNames:
    """A prefix and stream no other test uses (streams are shared by the whole server)."""
    tag = uuid.uuid4().hex[:12]
    return NatsNames(prefix=f"rbtest.{tag}", stream=f"RBTEST_{tag}")


async def delete_streams(url: str, names: NatsNames) -> None:
    """Delete the events stream and the presence bucket's stream, if they exist."""
    nc = await nats.connect(url, connect_timeout=int(PATIENCE), allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=PATIENCE)
        for stream in (names.stream, names.presence_stream):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture
async def nats_names(nats_server: str) -> AsyncIterator[NatsNames]:
    """A prefix and stream of this test's own; its streams are deleted afterwards."""
    names = unique_names()
    yield names
    await delete_streams(nats_server, names)


def adapter_url(server: str, names: NatsNames, **options: object) -> str:
    """The ``nats://`` URL of an adapter on ``names``, with these options."""
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"{server}?prefix={names.prefix}&stream={names.stream}" + (f"&{query}" if query else "")


@pytest.fixture
async def nats_adapter(nats_server: str, nats_names: NatsNames) -> AsyncIterator[NatsAdapter]:
    adapter = NatsAdapter.from_url(adapter_url(nats_server, nats_names, history=100))
    yield adapter
    await adapter.aclose()


# -- what NATS services do on a channel (the contract suite's clients) ---------------------


class NatsClients:
    """A live subscriber is a JetStream push consumer (nats-py's ordered consumer) filtered
    to the channel's subject, delivering only what is published from now on; it is deleted
    when the subscriber leaves. Members enter and leave through the adapter, with a ttl."""

    shows_member_info = True

    def __init__(self, adapter: NatsAdapter, url: str) -> None:
        self.adapter = adapter
        self.url = url

    @contextlib.asynccontextmanager
    async def subscriber(self, channel: str) -> AsyncIterator[NextEvent]:
        await self.adapter.ping()  # the stream exists before a consumer is made on it
        nc = await nats.connect(self.url, connect_timeout=int(PATIENCE), allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=PATIENCE)
            subscription = await js.subscribe(
                self.adapter.names.subject(channel),
                stream=self.adapter.names.stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
            consumer = (await subscription.consumer_info()).name

            async def next_event() -> Event:
                msg = await subscription.next_msg(timeout=PATIENCE)
                event = Event.decode(msg.data)
                assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == event.id
                return event

            try:
                yield next_event
            finally:
                await subscription.unsubscribe()
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_consumer(self.adapter.names.stream, consumer)
        finally:
            await nc.close()

    async def enter(self, channel: str, member: Member, ttl: float = 60.0) -> None:
        await self.adapter.enter_presence(channel, member, ttl=ttl)

    async def leave(self, channel: str, member_id: str) -> None:
        await self.adapter.leave_presence(channel, member_id)

    async def aclose(self) -> None:
        """Subscribers close themselves; members lapse with the test's stream."""

    def listed(self, members: list[Member]) -> list[Member]:
        return members


# -- private servers -------------------------------------------------------------------------


class NatsProcess:
    """One private ``nats-server -js`` on a free port with a temporary store directory.

    ``stop`` ends it gracefully (SIGTERM: JetStream flushes its store), ``kill`` with
    SIGKILL; ``start`` (again) reuses the port and the store, so streams survive.
    """

    def __init__(
        self, directory: Path, *, jetstream: bool = True, args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.store = directory / "store"
        self.log = directory / "nats.log"
        self.jetstream = jetstream
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{NATS_HOST}:{self.port}"

    def start(self) -> None:
        command = [NATS_BINARY, "-a", NATS_HOST, "-p", str(self.port), *self.args]
        if self.jetstream:
            command += ["-js", "-sd", str(self.store)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (info := nats_info(NATS_HOST, self.port)) or (
            self.jetstream and not info.get("jetstream")
        ):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                raise RuntimeError(f"nats-server did not start; see {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, how: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STARTUP_TIMEOUT)


@contextlib.contextmanager
def running_nats(*, jetstream: bool = True, args: Sequence[str] = ()) -> Iterator[NatsProcess]:
    """A private NATS server for one test (``args`` added to its command line); killed, and
    its store removed, afterwards."""
    if not Path(NATS_BINARY).exists():
        _missing(f"{NATS_BINARY} is not installed (apt-get install nats-server provides it)")
    with tempfile.TemporaryDirectory(prefix="rb-nats-") as directory:
        server = NatsProcess(Path(directory), jetstream=jetstream, args=args)
        server.start()
        try:
            yield server
        finally:
            server.kill()


async def eventually_true(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``probe`` until it is true; fail after ``STARTUP_TIMEOUT`` seconds."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)
