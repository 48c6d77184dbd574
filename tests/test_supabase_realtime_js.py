"""The Supabase Realtime emulator, held to Supabase's JavaScript client (``@supabase/realtime-js``).

``test_supabase_emulator.py`` holds the emulator to Supabase's Python client; browsers use
the JavaScript one, so it checks the emulator too: ``tests/realtime_js/client.mjs`` joins a
topic with presence, tracks a member, and prints (one JSON line each) its status, the
broadcasts it receives and its presence state. The emulator runs in this test's loop
(``serve``); the Node script is a subprocess, killed at the end.

The client is ``@supabase/realtime-js`` 2.109.0, the last release that supports Node.js
20, with ``ws`` as its WebSocket (Node 20 has none) and ``vsn: '1.0.0'`` (the JSON
serializer the emulator speaks; the client defaults to 2.0.0). ``scripts/install-realtime-js``
installs both into ``.cache/realtime-js`` (``scripts/test`` runs it). If Node or the
package is missing, the tests fail in CI (``CI=true``), where they must run, and are
skipped elsewhere, as ``tests/conftest_pusher.py`` does for soketi.

No test sleeps to assert: every wait is for a line from the client, bounded by ``PATIENCE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from realtime_bridge import Event, Member
from realtime_bridge.adapters.supabase import SupabaseAdapter
from realtime_bridge.testing.supabase import SupabaseEmulator, serve

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "tests" / "realtime_js" / "client.mjs"
MODULES = ROOT / ".cache" / "realtime-js" / "node_modules"
INSTALL_HINT = "run scripts/install-realtime-js (needs Node.js 20 and npm)"
#: Bound on every wait here (a bound on a hang, not a timing claim).
PATIENCE = 15.0


def realtime_js_missing(reason: str) -> NoReturn:
    """Fail in CI, skip elsewhere, saying why the JavaScript client cannot run."""
    reason = f"{reason} ({INSTALL_HINT})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI has @supabase/realtime-js, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` executable, with ``@supabase/realtime-js`` and ``ws`` installed."""
    executable = shutil.which("node")
    if executable is None:
        realtime_js_missing("'node' is not on PATH")
    for package in ("@supabase/realtime-js", "ws"):
        if not (MODULES / package / "package.json").is_file():
            realtime_js_missing(f"{package} is not installed in {MODULES}")
    return executable


class JsClient:
    """The running Node script: its JSON lines, read one at a time with a bound."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def next_line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), PATIENCE)
        if not raw:
            assert self.process.stderr is not None
            error = (await self.process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"the JS client ended early; printed {self.lines}; {error}")
        line: dict[str, Any] = json.loads(raw)
        assert "error" not in line or line["error"] is None, f"the JS client said {line}"
        self.lines.append(line)
        return line

    async def until(self, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first line, already read or read now, that meets ``condition``."""
        for line in self.lines:
            if condition(line):
                return line
        while True:
            line = await self.next_line()
            if condition(line):
                return line

    async def broadcasts(self, count: int) -> list[Any]:
        await self.until(lambda _: sum("broadcast" in line for line in self.lines) >= count)
        return [line["broadcast"] for line in self.lines if "broadcast" in line]

    async def exited(self) -> int:
        return await asyncio.wait_for(self.process.wait(), PATIENCE)


@contextlib.asynccontextmanager
async def js_client(
    node: str, base_url: str, key: str, topic: str, presence_key: str, name: str, count: int
) -> AsyncIterator[JsClient]:
    """Start ``client.mjs``; it is killed (if still running) when the block ends."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT),
        base_url,
        key,
        topic,
        presence_key,
        name,
        str(count),
        str(int(PATIENCE * 1000)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "REALTIME_JS_MODULES": str(MODULES)},
    )
    try:
        yield JsClient(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_js_client_joins_tracks_presence_and_receives_rest_broadcasts(node: str) -> None:
    emulator = SupabaseEmulator()
    topic, key = unique("room"), unique("user")
    async with (
        serve(emulator) as base_url,
        js_client(node, base_url, emulator.anon_key, topic, key, "Ada", count=2) as client,
    ):
        subscribed = await client.until(lambda line: line.get("status") == "SUBSCRIBED")
        assert subscribed["track"] == "ok"
        # The track was answered before the line was printed: the emulator holds it.
        assert emulator.presence(topic) == {key: [{"name": "Ada"}]}
        assert emulator.subscribers(topic) == 1
        # The client sees itself in its own presence state (sent as presence_state/diff).
        synced = await client.until(lambda line: key in line.get("presence", {}))
        assert [meta["name"] for meta in synced["presence"][key]] == ["Ada"]

        headers = {
            "apikey": emulator.service_key,
            "Authorization": f"Bearer {emulator.service_key}",
        }
        body = {
            "messages": [
                {"topic": topic, "event": "order.created", "payload": {"id": 1, "total": 9.5}},
                {"topic": topic, "event": "order.updated", "payload": {"id": 1, "tags": ["é"]}},
            ]
        }
        async with httpx.AsyncClient(timeout=PATIENCE) as http:
            response = await http.post(
                f"{base_url}/realtime/v1/api/broadcast", json=body, headers=headers
            )
        assert response.status_code == 202, response.text

        assert await client.broadcasts(2) == [{"id": 1, "total": 9.5}, {"id": 1, "tags": ["é"]}]
        events = [line["event"] for line in client.lines if "broadcast" in line]
        assert events == ["order.created", "order.updated"]
        assert await client.exited() == 0
    assert [b.event for b in emulator.broadcasts(topic)] == ["order.created", "order.updated"]


async def test_js_client_receives_what_the_adapter_publishes_and_is_its_presence(
    node: str,
) -> None:
    emulator = SupabaseEmulator()
    topic, key = unique("orders"), unique("user")
    async with (
        serve(emulator) as base_url,
        js_client(node, base_url, emulator.anon_key, topic, key, "Grace", count=1) as client,
    ):
        await client.until(lambda line: line.get("status") == "SUBSCRIBED")
        port = base_url.rsplit(":", 1)[1]
        adapter = SupabaseAdapter.from_url(
            f"supabase://{emulator.service_key}@127.0.0.1:{port}?tls=false"
        )
        try:
            assert await adapter.presence(topic) == [Member(id=key, info={"name": "Grace"})]
            event = Event(type="order.shipped", channel=topic, data={"order": 7, "by": "ship"})
            await adapter.publish([event])
        finally:
            await adapter.aclose()

        [payload] = await client.broadcasts(1)
        assert payload == json.loads(event.encode())
        assert payload["id"] == event.id and payload["data"] == {"order": 7, "by": "ship"}
        assert await client.exited() == 0
