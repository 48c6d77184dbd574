"""Private Redis servers for tests that must kill, restart or cluster them.

The machine's Redis at 127.0.0.1:6379 is shared; a test that kills a server,
sets a password or needs a cluster starts its own ``redis-server`` processes
here instead: bound to 127.0.0.1, on a free port, with no persistence
(``--save "" --appendonly no``), in a temporary directory, and stopped by pid
afterwards. Waiting for a process is a bounded poll, never a fixed sleep.

If ``redis-server`` or ``redis-cli`` is not installed, the test fails in CI
(``CI=true``, where it is always installed) and is skipped elsewhere, naming
the binary: the same policy as ``service_missing`` in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import redis
import redis.asyncio as aioredis

from realtime_bridge.events import Event

__all__ = [
    "HOST",
    "STARTUP_TIMEOUT",
    "LiveMessage",
    "LiveTap",
    "RedisCluster",
    "RedisProcess",
    "binary_missing",
    "free_port",
    "require_binaries",
    "running_cluster",
    "running_redis",
]

HOST = "127.0.0.1"
#: Generous upper bound for a local process to start or stop; only reached when broken.
STARTUP_TIMEOUT = 15.0
_POLL_INTERVAL = 0.02
#: Redis Cluster nodes also listen on ``port + 10000`` (the cluster bus).
_BUS_OFFSET = 10000


def binary_missing(name: str) -> NoReturn:
    """Fail in CI, skip elsewhere, naming the binary that is not installed."""
    reason = f"{name} is not installed (apt-get install redis-server provides it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI has {name}, but: {reason}", pytrace=False)
    pytest.skip(reason)


def require_binaries(*names: str) -> None:
    """Check that every binary is on PATH, else fail (CI) or skip, naming it."""
    for name in names:
        if shutil.which(name) is None:
            binary_missing(name)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """Where the kernel starts picking source ports for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(*, cluster_bus: bool = False) -> int:
    """A port nothing listens on now (and, for a cluster node, its bus port too).

    Ports come from below the ephemeral range, so an outgoing connection cannot
    take one between a server's kill and its restart on the same port.
    """
    highest = _ephemeral_low() - 1 - (_BUS_OFFSET if cluster_bus else 0)
    if highest < 12000:  # an unusual range: any unprivileged port will have to do
        highest = 65535 - (_BUS_OFFSET if cluster_bus else 0)
    for _ in range(200):
        port = random.randint(10000, highest)
        if _port_free(port) and (not cluster_bus or _port_free(port + _BUS_OFFSET)):
            return port
    raise RuntimeError("no free port found for a private redis-server")


def _server_pid(port: int, password: str | None) -> int | None:
    """The pid of the redis-server answering on ``port``, or None if none answers."""
    try:
        with redis.Redis(
            host=HOST, port=port, password=password, socket_timeout=1.0, socket_connect_timeout=1.0
        ) as client:
            return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None


class RedisProcess:
    """One private ``redis-server``; ``start``, ``kill`` (SIGKILL), ``stop``, ``restart``."""

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        directory: Path | None = None,
        cluster: bool = False,
    ) -> None:
        self.port = port or free_port(cluster_bus=cluster)
        self.password = password
        self.extra_args = tuple(extra_args)
        self.cluster = cluster
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="rb-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def logfile(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    def url(self, *, password: str | None = None, db: int = 0, query: str = "") -> str:
        """``redis://`` URL of this server; ``password`` defaults to the server's own."""
        secret = password if password is not None else self.password
        auth = f":{secret}@" if secret else ""
        return f"redis://{auth}{HOST}:{self.port}/{db}" + (f"?{query}" if query else "")

    def _command(self) -> list[str]:
        command = [
            "redis-server",
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            "",
            "--daemonize",
            "no",
        ]
        if self.password is not None:
            command += ["--requirepass", self.password]
        if self.cluster:
            command += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                "5000",
            ]
        return command + list(self.extra_args)

    def start(self) -> None:
        """Start on ``self.port`` and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        require_binaries("redis-server")
        # Startup errors (a bad option) go to stderr before the log file exists.
        with self.logfile.open("ab") as output:
            process = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        self._process = process
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # Ours, not some other process that holds the port: compare pids.
        while _server_pid(self.port, self.password) != process.pid:
            if process.poll() is not None or time.monotonic() > deadline:
                log = self._log_tail()
                self._reap(signal.SIGKILL)
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(_POLL_INTERVAL)

    def start_on_free_port(self, tries: int = 5) -> None:
        """``start``, moving to another free port if this one was taken meanwhile."""
        for attempt in range(tries):
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == tries - 1:
                    raise
                self.port = free_port(cluster_bus=self.cluster)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def _reap(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it; nothing is saved."""
        self._reap(signal.SIGKILL)

    def stop(self) -> None:
        """Shut the server down (SIGTERM), reap it, and remove its directory."""
        self._reap(signal.SIGTERM)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        """Start again on the same port, after ``kill`` or a crash."""
        self._reap(signal.SIGKILL)
        self.start()


@contextlib.contextmanager
def running_redis(
    *, password: str | None = None, extra_args: Sequence[str] = ()
) -> Iterator[RedisProcess]:
    """A private redis-server for the duration of the block, stopped afterwards."""
    server = RedisProcess(password=password, extra_args=extra_args)
    try:
        server.start_on_free_port()
        yield server
    finally:
        server.stop()


def _cluster_info(port: int) -> dict[str, str]:
    result = subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(port), "cluster", "info"],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    pairs = (line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


class RedisCluster:
    """A Redis Cluster of ``size`` primaries (no replicas), each a private redis-server."""

    def __init__(self, size: int = 3) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rb-redis-cluster-"))
        self.nodes: list[RedisProcess] = []
        self.size = size

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def url(self, *, query: str = "") -> str:
        """``redis://`` URL of the first node, with ``cluster=true`` and ``query`` added."""
        options = "cluster=true" + (f"&{query}" if query else "")
        return f"redis://{HOST}:{self.ports[0]}/0?{options}"

    def start(self) -> None:
        require_binaries("redis-server", "redis-cli")
        for _ in range(self.size):
            node = RedisProcess(cluster=True, directory=self.directory)
            self.nodes.append(node)
            node.start_on_free_port()
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
            )
        self._wait_until_ok()

    def _wait_until_ok(self) -> None:
        """Poll every node until each says the cluster is ok and knows every node and slot."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            infos = [_cluster_info(port) for port in self.ports]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_ok") == "16384"
                and info.get("cluster_known_nodes") == str(self.size)
                for info in infos
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok: {infos}")
            time.sleep(_POLL_INTERVAL * 5)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(size: int = 3) -> Iterator[RedisCluster]:
    """A private Redis Cluster for the duration of the block, every node stopped afterwards."""
    cluster = RedisCluster(size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class LiveMessage:
    """One message a pub/sub subscriber received: topic, stream entry id, the event."""

    topic: str
    entry: str
    event: Event


class LiveTap:
    """A real pub/sub subscriber on one Redis node, collecting what is published live.

    Messages are ``b"<stream entry id>\\n<encoded event>"``, as the adapter's
    publish script sends them. ``collect`` reads until a condition holds, for a
    bounded time; it never sleeps a fixed amount.
    """

    def __init__(self, port: int, topics: Sequence[str], *, password: str | None = None) -> None:
        self.port = port
        self.topics = list(topics)
        self.messages: list[LiveMessage] = []
        self._client = aioredis.Redis(host=HOST, port=port, password=password)
        self._pubsub = self._client.pubsub()

    async def __aenter__(self) -> LiveTap:
        return await self.start()

    async def start(self) -> LiveTap:
        """Subscribe, and return once the server has confirmed every subscription."""
        await self._pubsub.subscribe(*self.topics)
        confirmed = 0
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while confirmed < len(self.topics):  # subscribed on the server before anyone publishes
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscribing to {self.topics} on port {self.port} timed out")
            message = await self._pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()
        with contextlib.suppress(redis.RedisError, OSError):
            await self._client.aclose()

    def ids(self) -> list[str]:
        return [message.event.id for message in self.messages]

    async def collect(
        self, done: Callable[[list[LiveMessage]], bool], *, within: float = STARTUP_TIMEOUT
    ) -> list[LiveMessage]:
        """Read messages until ``done(messages)`` holds; fail after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not done(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"subscriber on port {self.port} has {len(self.messages)} messages; "
                    f"the expected ones did not arrive: {self.ids()}"
                )
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is None or message["type"] != "message":
                continue
            entry, _, payload = bytes(message["data"]).partition(b"\n")
            self.messages.append(
                LiveMessage(message["channel"].decode(), entry.decode(), Event.decode(payload))
            )
        return self.messages

    async def collect_ids(self, ids: Iterable[str]) -> list[LiveMessage]:
        """Read until every id in ``ids`` has arrived."""
        wanted = set(ids)
        return await self.collect(lambda messages: wanted <= {m.event.id for m in messages})
