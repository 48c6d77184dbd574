"""Operating a relay: Prometheus metrics, JSON logs, and the drain command's output."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
from pathlib import Path

import httpx
import pytest

from realtime_bridge import Bridge, Event
from realtime_bridge.cli import main
from realtime_bridge.logs import JsonFormatter
from realtime_bridge.outbox import Outbox
from realtime_bridge.testing import FakeAdapter, instant_retry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_metrics_expose_relay_backlog_and_adapter_counters(tmp_path: Path) -> None:
    from realtime_bridge.outbox.metrics import RelayCollector

    fake = FakeAdapter(label="fake://vendor")
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}", bridge=Bridge(fake, retry=instant_retry(1)))
    await outbox.migrate()
    with sqlite3.connect(tmp_path / "o.db") as db:
        events = [Event(channel=f"c{i % 2}", type="t", data={"i": i}) for i in range(5)]
        await outbox.enqueue(db, *events)
    db.close()
    relay = outbox.relay()
    try:
        fake.fail_next(1)
        await relay.drain()  # the first batch fails once and is put back
        await relay.refresh_status()
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in RelayCollector(relay).collect()
            for sample in family.samples
        }
    finally:
        await relay.aclose()
        await outbox.aclose()
    assert samples[("realtime_bridge_relay_retried_total", ())] == 5
    assert samples[("realtime_bridge_outbox_pending", ())] == 5
    assert (
        samples[
            (
                "realtime_bridge_adapter_failures_total",
                (("adapter", "fake://vendor"), ("role", "primary")),
            )
        ]
        == 1
    )


async def test_metrics_are_served_over_http(tmp_path: Path) -> None:
    from realtime_bridge.outbox.metrics import serve_metrics

    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}", bridge=Bridge(FakeAdapter()))
    await outbox.migrate()
    relay = outbox.relay()
    port = free_port()
    try:
        server = serve_metrics(relay, port)
        try:
            async with httpx.AsyncClient() as client:
                body = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
        finally:
            server.shutdown()
            server.server_close()
    finally:
        await relay.aclose()
        await outbox.aclose()
    assert "realtime_bridge_relay_published_total 0.0" in body


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "realtime_bridge.relay", "levelname": "WARNING", "msg": "retry %d", "args": (3,)}
    )
    record.events = 3
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "retry 3"
    assert entry["level"] == "warning"
    assert entry["events"] == 3


def test_relay_drain_command_with_json_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(["outbox", "migrate", "--database", url]) == 0
    with sqlite3.connect(tmp_path / "o.db") as db:
        db.execute(
            "INSERT INTO realtime_outbox (event_id, channel, type, data) "
            "VALUES ('e1', 'orders.1', 'order.updated', '{}')"
        )
    db.close()
    assert main(["relay", "--drain", "--log-json", "--database", url]) == 0
    out = capsys.readouterr().out
    assert "drained: 1 event(s) published" in out
    assert main(["outbox", "status", "--json", "--database", url]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["sent"] == 1 and status["pending"] == 0


class _BrokenOnce(FakeAdapter):
    """Raises a plain bug-like exception on its first publish, then works."""

    def __init__(self) -> None:
        super().__init__(label="fake://broken-once")
        self.raised = False

    async def publish(self, events):  # type: ignore[no-untyped-def]
        if not self.raised:
            self.raised = True
            raise RuntimeError("an adapter bug")
        return await super().publish(events)


async def _enqueue_sqlite(outbox: Outbox, path: Path, *events: Event) -> None:
    await outbox.migrate()
    db = sqlite3.connect(path)
    try:
        with db:
            await outbox.enqueue(db, *events)
    finally:
        db.close()


async def test_rejected_credentials_are_retried_not_dead_lettered(tmp_path: Path) -> None:
    from realtime_bridge import AuthenticationFailed

    fake = FakeAdapter()
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}", bridge=Bridge(fake, retry=instant_retry(1)))
    await _enqueue_sqlite(outbox, tmp_path / "o.db", Event(channel="a", type="t"))
    fake.fail_next(error=AuthenticationFailed("key revoked", adapter=fake.name))
    relay = outbox.relay()
    try:
        await relay.run_once()
        status = await outbox.status()
    finally:
        await relay.aclose()
        await outbox.aclose()
    assert (status.dead, status.pending, status.waiting_retry) == (0, 1, 1)


async def test_relay_loop_survives_an_unexpected_error(tmp_path: Path) -> None:
    broken = _BrokenOnce()
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}", bridge=Bridge(broken, retry=instant_retry(1)))
    await _enqueue_sqlite(outbox, tmp_path / "o.db", Event(channel="a", type="t"))
    relay = outbox.relay(poll_interval=0.05, base_delay=0.01)
    async with relay:
        for _ in range(400):  # bounded wait for the second, working attempt
            if broken.published:
                break
            await asyncio.sleep(0.01)
    await outbox.aclose()
    assert broken.raised and len(broken.published) == 1
    assert relay.stats.unexpected_errors == 1


async def test_relay_process_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    import shutil
    import signal
    import sys

    url = f"sqlite:///{tmp_path / 'o.db'}"
    outbox = Outbox(url, bridge=Bridge(FakeAdapter()))
    events = [Event(channel="orders.1", type="order.updated", data={"n": n}) for n in range(3)]
    await _enqueue_sqlite(outbox, tmp_path / "o.db", *events)
    script = shutil.which("realtime-bridge", path=str(Path(sys.executable).parent))
    assert script, "the realtime-bridge console script is not installed beside this Python"
    relay = await asyncio.create_subprocess_exec(
        *[script, "relay", "--database", url, "--url", "memory://", "--poll", "0.05"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(500):  # bounded: until the relay has published the backlog
            if (await outbox.status()).sent == 3:
                break
            await asyncio.sleep(0.02)
        relay.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(relay.communicate(), 30)
    finally:
        if relay.returncode is None:
            relay.kill()
            await relay.communicate()
        await outbox.aclose()
    assert relay.returncode == 0, err.decode()
    async with Outbox(url) as check:
        assert (await check.status()).sent == 3
