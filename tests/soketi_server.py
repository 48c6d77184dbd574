"""Private soketi processes: a real Pusher-protocol server for the tests, on loopback.

soketi (npm ``@soketi/soketi`` 1.6.1, installed into ``.cache/soketi`` by
``scripts/install-soketi``) speaks Pusher's HTTP API and WebSocket protocol on one
port, so the ``pusher`` SDK and a WebSocket client can both talk to it as they
would to Pusher. Each ``SoketiServer`` is its own process: on free ports below the
ephemeral range (so a restart can take the same port back), bound to 127.0.0.1,
configured only through ``SOKETI_*`` variables (inherited ones are dropped) and a
scratch working directory (soketi loads a ``.env`` from its working directory).
Waiting is a bounded poll, never a fixed sleep.

soketi 1.6.1 facts these settings rely on (read in its ``dist/cli/cli.js`` and
``dist/server.js``):

* The HTTP API, the WebSocket endpoint and ``/ready`` share ``SOKETI_PORT``; the
  ``/usage`` (metrics) server needs a port of its own, ``SOKETI_METRICS_SERVER_PORT``.
* It always starts UDP peer discovery (node-discover; default: broadcast to
  255.255.255.255 on 11002). Here it is told to unicast to 127.0.0.1 on a private
  port, and a ``--config`` file binds it to 127.0.0.1: no packet leaves loopback and
  two test servers never discover each other.
* Client events (``client-*``) and user sign-in are off by default; both are on
  here. With sign-in on, soketi closes (4009) any connection that has not signed in
  within ``SOKETI_USER_AUTHENTICATION_TIMEOUT`` ms (30 s by default); it is an hour
  here, so tests that do not sign in are not cut off.
* Webhooks: ``SOKETI_DEFAULT_APP_WEBHOOKS`` is a JSON list of ``{url, event_types}``.
  Batching (several events per POST) is off unless ``SOKETI_WEBHOOKS_BATCHING``; a
  failed delivery is never retried.
* SIGTERM is a graceful stop: every socket gets ``pusher:error`` 4200 and is closed,
  then the listeners close after ``SOKETI_SHUTDOWN_GRACE_PERIOD`` ms.

``WebhookReceiver`` is the other end of soketi's webhooks: a plain HTTP server on
loopback, in a thread (so it serves sync and async tests alike), that records
every POST as it arrived, raw body included, for signature checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "INSTALL_HINT",
    "PortTaken",
    "SOKETI_BIN",
    "STARTUP_TIMEOUT",
    "WEBHOOK_EVENTS",
    "SoketiServer",
    "SoketiUnavailable",
    "WebhookDelivery",
    "WebhookReceiver",
    "start_soketi",
    "unique_name",
]

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
SOKETI_BIN = REPO / ".cache" / "soketi" / "node_modules" / ".bin" / "soketi"
INSTALL_HINT = "run scripts/install-soketi"
#: Upper bound for soketi to start (a few seconds normally) or stop; reached only when broken.
STARTUP_TIMEOUT = 20.0
#: Every webhook soketi 1.6.1 can send (Pusher's ``subscription_count`` webhook is missing).
WEBHOOK_EVENTS = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
)
_POLL_INTERVAL = 0.05
_ONE_HOUR_MS = 3_600_000


class SoketiUnavailable(RuntimeError):
    """soketi is not installed, or did not start; the message says which and why."""


class PortTaken(SoketiUnavailable):
    """A port chosen for soketi was taken by another process before soketi started."""


def unique_name(prefix: str = "test-") -> str:
    """A channel (or user) name no other test uses, so tests can share one server."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _ephemeral_low() -> int:
    """Where the kernel starts picking source ports for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_free(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether ``port`` can be bound; a listener with SO_REUSEPORT (soketi) makes it not."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM, exclude: Sequence[int] = ()) -> int:
    """A port nothing uses now, below the ephemeral range.

    An outgoing connection's source port then cannot take it between a kill and a
    restart on the same port.
    """
    highest = _ephemeral_low() - 1
    if highest < 12000:  # an unusual range: any unprivileged port will have to do
        highest = 65535
    for _ in range(200):
        port = random.randint(10000, highest)
        if port not in exclude and _port_free(port, kind):
            return port
    raise SoketiUnavailable("no free port found for a private soketi")


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(kw_only=True)
class SoketiServer:
    """One private soketi process and how to reach it; ``start``, ``stop``, ``restart``."""

    host: str = HOST
    port: int = 0
    app_id: str = "1"  # numeric: the pusher SDK refuses ids like "app-id"
    key: str = "app-key"
    secret: str = "app-secret"
    pid: int | None = None
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = WEBHOOK_EVENTS
    webhook_batching_ms: int | None = None  # None: one POST per event (soketi's default)
    user_auth_timeout_ms: int = _ONE_HOUR_MS
    shutdown_grace_ms: int = 200
    debug: bool = False  # soketi logs every message, and webhook failures, only in debug mode
    metrics_port: int = 0
    discovery_port: int = 0
    # For the log and config; None: a temporary directory, which close() removes.
    directory: Path | None = None
    _own_directory: bool = field(default=False, init=False, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def ws_url(self) -> str:
        """The WebSocket URL a Pusher client connects to."""
        return f"ws://{self.host}:{self.port}/app/{self.key}?protocol=7&client=py-test&version=1"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def workdir(self) -> Path:
        """The working directory (soketi's log and config), made on first use."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="rb-soketi-"))
            self._own_directory = True
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    @property
    def logfile(self) -> Path:
        return self.workdir / "soketi.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def sdk_options(self) -> dict[str, object]:
        """Keyword arguments for ``pusher.Pusher(**server.sdk_options())`` aimed at this server."""
        return {
            "app_id": self.app_id,
            "key": self.key,
            "secret": self.secret,
            "host": self.host,
            "port": self.port,
            "ssl": False,
        }

    def environment(self) -> dict[str, str]:
        """The process environment: ours, minus any ``SOKETI_*`` the caller's shell had."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("SOKETI_")}
        webhooks = (
            [{"url": self.webhook_url, "event_types": list(self.webhook_events)}]
            if self.webhook_url
            else []
        )
        env.update(
            {
                "SOKETI_HOST": self.host,
                "SOKETI_PORT": str(self.port),
                "SOKETI_METRICS_HOST": self.host,
                "SOKETI_METRICS_SERVER_PORT": str(self.metrics_port),
                "SOKETI_CLUSTER_PORT": str(self.discovery_port),
                "SOKETI_CLUSTER_UNICAST_ADDRESSES": self.host,
                "SOKETI_DEFAULT_APP_ID": self.app_id,
                "SOKETI_DEFAULT_APP_KEY": self.key,
                "SOKETI_DEFAULT_APP_SECRET": self.secret,
                "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
                "SOKETI_DEFAULT_APP_USER_AUTHENTICATION": "true",
                "SOKETI_USER_AUTHENTICATION_TIMEOUT": str(self.user_auth_timeout_ms),
                "SOKETI_DEFAULT_APP_WEBHOOKS": json.dumps(webhooks),
                "SOKETI_WEBHOOKS_BATCHING": json.dumps(self.webhook_batching_ms is not None),
                "SOKETI_WEBHOOKS_BATCHING_DURATION": str(self.webhook_batching_ms or 50),
                "SOKETI_SHUTDOWN_GRACE_PERIOD": str(self.shutdown_grace_ms),
                "SOKETI_DEBUG": json.dumps(self.debug),
                "AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE": "1",
                "FORCE_COLOR": "0",
            }
        )
        return env

    def start(self) -> None:
        """Start on ``self.port`` (picking free ports first if unset) and wait until it accepts.

        Raises ``SoketiUnavailable`` with the end of soketi's log if it exits or does not
        accept connections within ``STARTUP_TIMEOUT``.
        """
        if self.running:
            raise RuntimeError(f"soketi on port {self.port} is already running")
        node = shutil.which("node")
        if node is None or not SOKETI_BIN.exists():
            missing = "node is not on PATH" if node is None else f"{SOKETI_BIN} is missing"
            raise SoketiUnavailable(f"soketi is not installed ({missing}): {INSTALL_HINT}")
        self.port = self.port or _free_port()
        self.metrics_port = self.metrics_port or _free_port(exclude=[self.port])
        self.discovery_port = self.discovery_port or _free_port(socket.SOCK_DGRAM)
        # soketi logs "up and running" even when it could not listen, and it listens with
        # SO_REUSEPORT (sharing a port with a stray soketi): the ports must be free first.
        for port in (self.port, self.metrics_port):
            if not _port_free(port):
                raise PortTaken(f"port {self.host}:{port} is taken by another process")
        # No SOKETI_* variable sets the discovery socket's bind address; a config file does.
        config = self.workdir / "soketi.json"
        config.write_text(json.dumps({"cluster.address": self.host}))
        with self.logfile.open("ab") as log:
            log.write(f"--- starting soketi on {self.host}:{self.port}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [node, str(SOKETI_BIN), "start", f"--config={config}"],
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() can kill it whole
            )
        self.pid = self._process.pid
        self._wait_until_accepting()

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _port_answers(self.port):
            exited = self._process is None or self._process.poll() is not None
            if exited or time.monotonic() > deadline:
                why = "exited" if exited else f"did not accept connections in {STARTUP_TIMEOUT}s"
                self.stop()
                raise SoketiUnavailable(
                    f"soketi on {self.host}:{self.port} {why}; its log ends:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self, *, graceful: bool = False) -> None:
        """Kill the process group (SIGKILL, like a crash; SIGTERM if ``graceful``) and reap it."""
        process, self._process, self.pid = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            sig = signal.SIGTERM if graceful else signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def restart(self, *, graceful: bool = False) -> None:
        """Stop, then start again on the same ports: clients see the server go and come back."""
        self.stop(graceful=graceful)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _port_free(self.port):  # a killed listener is gone once reaped; be sure
            if time.monotonic() > deadline:
                raise SoketiUnavailable(f"port {self.port} is still taken after soketi stopped")
            time.sleep(_POLL_INTERVAL)
        self.start()

    def close(self) -> None:
        """Stop, and remove the working directory if it is a temporary one made here."""
        self.stop()
        if self._own_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_soketi(
    *,
    webhook_url: str | None = None,
    webhook_events: Sequence[str] = WEBHOOK_EVENTS,
    webhook_batching_ms: int | None = None,
    user_auth_timeout_ms: int = _ONE_HOUR_MS,
    debug: bool = False,
    directory: Path | None = None,
    tries: int = 3,
) -> SoketiServer:
    """Start a private soketi on free ports and return it once it accepts connections.

    ``webhook_url`` gets a POST for each of ``webhook_events`` (several per POST when
    ``webhook_batching_ms`` is set). If another process takes a chosen port first, start
    over on new ports, up to ``tries`` times.
    """
    for attempt in range(tries):
        server = SoketiServer(
            webhook_url=webhook_url,
            webhook_events=tuple(webhook_events),
            webhook_batching_ms=webhook_batching_ms,
            user_auth_timeout_ms=user_auth_timeout_ms,
            debug=debug,
            directory=directory,
        )
        try:
            server.start()
            return server
        except PortTaken:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST the receiver got: its path, headers and body exactly as sent."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The ``events`` list of a Pusher webhook body (``{"time_ms", "events"}``)."""
        return list(self.payload["events"])

    def signed_with(self, secret: str) -> bool:
        """Whether ``X-Pusher-Signature`` is hex HMAC-SHA256(secret, raw body), as Pusher's."""
        expected = hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-pusher-signature", ""), expected)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POST; answers ``status`` (200).

    Set ``status`` to 500 to see how a sender treats a failing endpoint (soketi
    1.6.1 does not retry).
    """

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[WebhookDelivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = WebhookDelivery(
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
                with receiver._changed:
                    receiver.deliveries.append(delivery)
                    receiver._changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request on stderr is noise in test output

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/webhooks"

    def events(self) -> list[dict[str, Any]]:
        """Every event of every delivery so far, in the order they arrived."""
        with self._changed:
            return [event for delivery in self.deliveries for event in delivery.events]

    def wait(
        self, predicate: Callable[[list[WebhookDelivery]], bool], timeout: float = 10.0
    ) -> list[WebhookDelivery]:
        """Block until ``predicate(deliveries)`` holds and return them; else TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.deliveries), timeout):
                raise TimeoutError(
                    f"webhook condition not met within {timeout}s; got {self.deliveries!r}"
                )
            return list(self.deliveries)

    async def received(
        self,
        n: int,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[WebhookDelivery]:
        """Wait until at least ``n`` POSTs have arrived; all deliveries so far."""
        return await self._poll(lambda deliveries: len(deliveries) >= n, timeout)

    async def event(
        self,
        name: str,
        channel: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> tuple[WebhookDelivery, dict[str, Any]]:
        """Wait for a webhook event called ``name`` (on ``channel``); its delivery and event."""

        def find(
            deliveries: list[WebhookDelivery],
        ) -> tuple[WebhookDelivery, dict[str, Any]] | None:
            for delivery in deliveries:
                for event in delivery.events:
                    if event.get("name") == name and channel in (None, event.get("channel")):
                        return delivery, event
            return None

        found = find(await self._poll(lambda deliveries: find(deliveries) is not None, timeout))
        assert found is not None
        return found

    async def _poll(
        self,
        predicate: Callable[[list[WebhookDelivery]], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> list[WebhookDelivery]:
        """Check ``predicate`` until it holds, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                deliveries = list(self.deliveries)
            if predicate(deliveries):
                return deliveries
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"webhook condition not met within {timeout}s; got {deliveries!r}"
                )
            await asyncio.sleep(_POLL_INTERVAL)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STARTUP_TIMEOUT)
