"""The live demo: database-first writes reach SSE clients, on SQLite + memory or PostgreSQL + Redis.

The browser test (``test_demo_browser.py``) shows the page; these check the
demo's parts without one: the command runs and stops by itself, it needs
nothing beyond the package's core dependencies, and the same demo runs on
the real servers with ``--postgres`` and ``--redis``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import redis
from test_gateway_clients import open_sse

from realtime_bridge.demo.live import DemoOptions, LiveDemo
from realtime_bridge.demo.shop import CHANNEL, STATUSES

pytest_plugins = ["conftest_outbox"]

#: Imports the demo must not need: every optional extra's packages.
OPTIONAL = (
    "redis",
    "asyncpg",
    "psycopg",
    "sqlalchemy",
    "aiosqlite",
    "matplotlib",
    "nacl",
    "realtime",
)


async def check_events_reach_an_sse_client(demo: LiveDemo) -> None:
    async with demo.serving(port=0) as url, httpx.AsyncClient() as client:
        token = (await client.get(f"{url}/token")).json()["token"]
        async with open_sse(f"{url}/realtime", token, [CHANNEL]) as stream:
            written = await demo.write(6)
            received = await stream.envelopes(6)
        state = (await client.get(f"{url}/state")).json()
    assert [e.id for e in received] == [e.id for e in written]
    assert [e.seq for e in received] == list(range(1, 7))
    # Each event carries its order's whole new state, as the database has it.
    latest = {event.data.id: event.data.model_dump() for event in written}
    assert {order["id"]: order for order in state["orders"]} == latest
    assert all(order["status"] in STATUSES for order in state["orders"])


async def test_the_demo_runs_on_sqlite_and_memory_by_default() -> None:
    async with LiveDemo(DemoOptions(interval=0.01, seed=7)) as demo:
        assert demo.database_url.startswith("sqlite:///") and demo.feed is not None
        await check_events_reach_an_sse_client(demo)


async def test_the_same_demo_runs_on_postgresql_and_redis(pg_url: str, redis_server: str) -> None:
    options = DemoOptions(database_url=pg_url, redis_url=redis_server, interval=0.01, seed=7)
    async with LiveDemo(options) as demo:
        assert demo.feed is None  # the gateway reads the Redis streams
        prefix = demo.adapter_url.split("prefix=")[1].split("&")[0]
        await check_events_reach_an_sse_client(demo)
    assert redis.Redis.from_url(redis_server).keys(f"{prefix}:*") == []  # nothing left behind


def test_the_demo_command_needs_only_the_core_dependencies() -> None:
    """Run ``realtime-bridge demo`` with every optional extra's packages made unimportable."""
    script = (
        "import sys\n"
        f"for name in {OPTIONAL!r}: sys.modules[name] = None\n"
        "from realtime_bridge.cli import main\n"
        "sys.exit(main(['demo', '--events', '4', '--interval', '0.01', '--port', '0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 0, done.stderr
    assert "SQLite outbox -> relay -> memory:// -> gateway -> browser" in done.stdout
    assert done.stdout.count("committed order #") == 4
    assert "4 changes committed" in done.stdout
    # It ends with what the run's traffic would cost, measured from its outbox.
    assert "What breaks first:" in done.stdout and "Pusher Channels" in done.stdout
