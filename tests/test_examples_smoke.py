"""Each example of examples/ runs for real, as its docstring or README says to run it.

- ``examples/chat/``: on a scratch PostgreSQL database, with ``memory://`` and
  with real Redis, two users' messages reach both users' WebSocket clients
  through the mounted gateway, in the order they were sent, and presence
  shows both; then the page itself, served by ``uvicorn`` as the README says,
  in Chromium, for two users;
- ``examples/job_progress.py``: a job streamed over SSE to ``job.done``, the
  client disconnecting halfway and resuming with ``Last-Event-ID``;
- ``examples/staging_costs.py``: the script writes the HTML report with its
  chart and every vendor, and the shadow stats of every shadow, soketi's
  Pusher-protocol server included.

Every wait is bounded by ``PATIENCE``, which only a broken example reaches;
nothing is timed. Databases, Redis keys, processes and browsers are cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
import websockets
from asgi_serving import served
from browser import chromium, console_of  # noqa: F401 (chromium is a fixture)
from playwright.async_api import Browser, Page

from realtime_bridge import Event
from realtime_bridge.gateway import serve_gateway

pytest_plugins = ["conftest_outbox"]

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any one condition may take before the test gives up (never asserted on).
PATIENCE = 20.0
SECRET = "examples-smoke-test-secret-of-32-bytes-or-more"
#: Variables that would change which adapters the examples build.
BRIDGE_VARIABLES = (
    "REALTIME_BRIDGE_URL",
    "REALTIME_BRIDGE_FALLBACK_URLS",
    "REALTIME_BRIDGE_SHADOW_URLS",
    "REALTIME_BRIDGE_DATABASE_URL",
)

T = TypeVar("T")


def import_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``examples.chat.app`` and the like, imported as ``uvicorn`` imports them from the root."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module(name)


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The first truthy answer of ``check``, asked until ``PATIENCE`` runs out."""
    give_up = time.monotonic() + PATIENCE
    while True:
        answer = await check()
        if answer:
            return answer
        assert time.monotonic() < give_up, f"gave up waiting for {what}; last: {answer!r}"
        await asyncio.sleep(0.05)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No REALTIME_BRIDGE_* from outside and no realtime_bridge.toml: each test sets its own."""
    for name in BRIDGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# -- the chat app ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def chat_vendor_url(request: pytest.FixtureRequest) -> str:
    """``REALTIME_BRIDGE_URL`` for the chat: the two adapters the gateway serves."""
    if request.param == "memory":
        return f"memory://?gateway_secret={SECRET}"
    prefix = request.getfixturevalue("redis_prefix")  # its keys are deleted afterwards
    return f"{request.getfixturevalue('redis_server')}?prefix={prefix}&gateway_secret={SECRET}"


@contextlib.asynccontextmanager
async def chat_served(
    monkeypatch: pytest.MonkeyPatch, vendor_url: str, database_url: str
) -> AsyncIterator[tuple[str, Any]]:
    """The chat app from the environment alone, served (lifespan on) on a free port."""
    monkeypatch.setenv("REALTIME_BRIDGE_URL", vendor_url)
    monkeypatch.setenv("REALTIME_BRIDGE_DATABASE_URL", database_url)
    app = import_example("examples.chat.app", monkeypatch).create_app()
    async with serve_gateway(app=app, host="127.0.0.1", port=0) as url:
        yield url, app


@contextlib.asynccontextmanager
async def chat_socket(url: str, token: str) -> AsyncIterator[Any]:
    """A WebSocket client of the mounted gateway, past its ``connected`` greeting."""
    ws_url = url.replace("http://", "ws://") + f"/realtime/ws?token={quote(token)}"
    async with websockets.connect(ws_url, open_timeout=PATIENCE) as socket_:
        async with asyncio.timeout(PATIENCE):
            greeting = json.loads(await socket_.recv())
        assert greeting["type"] == "connected", greeting
        yield socket_


async def subscribe(socket_: Any, channel: str, *, presence: bool) -> None:
    await socket_.send(json.dumps({"type": "subscribe", "channel": channel, "presence": presence}))
    async with asyncio.timeout(PATIENCE):
        while (frame := json.loads(await socket_.recv()))["type"] != "subscribed":
            assert frame["type"] in {"heartbeat", "event"}, frame
    assert frame["channel"] == channel and frame["presence"] is presence, frame


async def room_events(socket_: Any, count: int) -> list[Event]:
    """The next ``count`` events the socket receives, in arrival order."""
    events: list[Event] = []
    async with asyncio.timeout(PATIENCE):
        while len(events) < count:
            frame = json.loads(await socket_.recv())
            if frame["type"] == "event":
                events.append(Event.model_validate(frame["event"]))
    return events


async def chat_token(http: httpx.AsyncClient, user: str, room: int) -> str:
    channels = [f"room.{room}", f"presence-room.{room}"]
    answer = await http.post("/realtime/auth", params={"user": user}, json={"channels": channels})
    assert answer.status_code == 200, answer.text
    assert answer.json()["channels"] == channels
    return str(answer.json()["token"])


async def member_ids(http: httpx.AsyncClient, room: int, user: str) -> set[str]:
    answer = await http.get(f"/rooms/{room}/members", params={"user": user})
    assert answer.status_code == 200, answer.text
    return {member["id"] for member in answer.json()}


async def test_chat_two_users_messages_arrive_in_order_and_presence_shows_both(
    chat_vendor_url: str, pg_url: str, clean_environment: pytest.MonkeyPatch
) -> None:
    room = 7
    async with (
        chat_served(clean_environment, chat_vendor_url, pg_url) as (url, app),
        httpx.AsyncClient(base_url=url, timeout=PATIENCE) as http,
    ):
        assert app.state.bridge.primary.scheme == chat_vendor_url.split("://")[0]
        for user in ("ada", "bob"):
            assert (await http.post(f"/rooms/{room}/join", params={"user": user})).is_success
        # Not a member: the channel callbacks refuse, and so do the room's routes.
        refused = await http.post(
            "/realtime/auth", params={"user": "eve"}, json={"channel": f"room.{room}"}
        )
        assert (refused.status_code, refused.json()["error"]) == (403, "channel_refused")
        outsider = await http.get(f"/rooms/{room}/messages", params={"user": "eve"})
        assert outsider.status_code == 403

        tokens = {user: await chat_token(http, user, room) for user in ("ada", "bob")}
        async with chat_socket(url, tokens["ada"]) as ada, chat_socket(url, tokens["bob"]) as bob:
            for socket_ in (ada, bob):
                await subscribe(socket_, f"room.{room}", presence=False)
                await subscribe(socket_, f"presence-room.{room}", presence=True)
            assert await member_ids(http, room, "ada") == {"ada", "bob"}

            sent = []
            lines = [("ada", "hi bob"), ("bob", "hi ada"), ("ada", "tea?"), ("bob", "yes")]
            for user, body in lines:
                answer = await http.post(
                    f"/rooms/{room}/messages", params={"user": user}, json={"body": body}
                )
                assert answer.status_code == 201, answer.text
                sent.append(answer.json())
            seen_by_ada, seen_by_bob = await room_events(ada, 4), await room_events(bob, 4)

        # Gone with their sockets: presence empties without anyone asking.
        await eventually(
            lambda: _no_members(http, room), "both users to leave presence when their sockets close"
        )
        stored = (await http.get(f"/rooms/{room}/messages", params={"user": "bob"})).json()

    for seen in (seen_by_ada, seen_by_bob):
        assert [event.id for event in seen] == [answer["event_id"] for answer in sent]
        assert [event.seq for event in seen] == [1, 2, 3, 4]
        assert {event.type for event in seen} == {"message.created"}
        assert [event.data for event in seen] == [answer["message"] for answer in sent]
    # The database holds what the events said, in the same order.
    assert stored == [answer["message"] for answer in sent]
    assert [message["user"] for message in stored] == ["ada", "bob", "ada", "bob"]


async def _no_members(http: httpx.AsyncClient, room: int) -> bool:
    return not await member_ids(http, room, "ada")


async def test_chat_on_a_vendor_publishes_there_and_answers_auth_in_its_format(
    pg_url: str, clean_environment: pytest.MonkeyPatch
) -> None:
    from realtime_bridge.testing import ably

    emulator = ably.AblyEmulator()
    async with ably.serve(emulator) as base:
        vendor_url = f"ably://{emulator.key}@{base.removeprefix('http://')}?tls=false"
        clean_environment.setenv("REALTIME_BRIDGE_URL", vendor_url)
        clean_environment.setenv("REALTIME_BRIDGE_DATABASE_URL", pg_url)
        app = import_example("examples.chat.app", clean_environment).create_app()
        async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=PATIENCE) as http:
            # No gateway to mount: the page is told to use the vendor's SDK instead.
            assert (await http.get("/config")).json() == {"vendor": "ably", "gateway": None}
            assert (await http.get("/realtime/sse")).status_code == 404
            await http.post("/rooms/1/join", params={"user": "ada"})
            grant = await http.post(
                "/realtime/auth", params={"user": "ada"}, json={"channel": "presence-room.1"}
            )
            assert grant.status_code == 200, grant.text
            assert grant.json()["keyName"] == emulator.key_name  # an Ably TokenRequest
            assert grant.json()["clientId"] == "ada"  # presence as the user the callback named
            sent = await http.post("/rooms/1/messages", params={"user": "ada"}, json={"body": "hi"})
            assert sent.status_code == 201, sent.text

            async def published() -> list[Any]:
                return emulator.messages("room.1")

            [stored] = await eventually(published, "the relay to publish to Ably")
    assert stored.name == "message.created"
    assert sent.json()["event_id"] in str(stored.id) + str(stored.data)


async def test_chat_refuses_a_database_that_is_not_postgresql(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("REALTIME_BRIDGE_URL", f"memory://?gateway_secret={SECRET}")
    clean_environment.setenv("REALTIME_BRIDGE_DATABASE_URL", "sqlite:///chat.db")
    module = import_example("examples.chat.app", clean_environment)
    with pytest.raises(ValueError, match=r"REALTIME_BRIDGE_DATABASE_URL.*postgresql://"):
        module.create_app()


# -- the chat page, in Chromium, served by uvicorn as the README says ----------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_process(factory: str, port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """``uvicorn --factory FACTORY`` from the repository's root; stopped with SIGTERM after."""
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory,
        "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "2",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=PATIENCE)


async def until_serving(url: str, log: Path) -> None:
    async def answers() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"{url}/config")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await eventually(answers, f"uvicorn to serve {url}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- uvicorn's output:\n{output_of(log)}") from None


def output_of(log: Path) -> str:
    return log.read_text(errors="replace")


async def page_members(page: Page) -> list[str]:
    names: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#members li')].map(li => li.textContent)"
    )
    return sorted(names)


async def page_messages(page: Page) -> list[str]:
    texts: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#messages li')].map(li => li.textContent)"
    )
    return texts


async def wait_in_page(page: Page, script: str, what: str, console: list[str]) -> None:
    try:
        await page.wait_for_function(script, timeout=PATIENCE * 1000)
    except Exception as exc:
        raise AssertionError(f"the page never showed {what}; console: {console}") from exc


async def test_chat_page_in_chromium_shows_both_users_and_their_messages(
    chromium: Browser,  # noqa: F811 (the fixture)
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    port, log = free_port(), tmp_path / "uvicorn.log"
    env = {name: value for name, value in os.environ.items() if name not in BRIDGE_VARIABLES}
    env["REALTIME_BRIDGE_URL"] = f"{redis_server}?prefix={redis_prefix}&gateway_secret={SECRET}"
    env["REALTIME_BRIDGE_DATABASE_URL"] = pg_url
    with uvicorn_process("examples.chat.app:create_app", port, env, log) as url:
        await until_serving(url, log)
        pages: dict[str, Page] = {}
        consoles: dict[str, list[str]] = {}
        for user in ("ada", "bob"):
            context = await chromium.new_context()
            pages[user] = await context.new_page()
            consoles[user] = console_of(pages[user])
            await pages[user].goto(f"{url}/?user={user}&room=3")
        for user, page in pages.items():
            console = consoles[user]
            await wait_in_page(page, "window.chat.status === 'open'", "a live stream", console)
            await wait_in_page(
                page,
                "document.querySelectorAll('#members li').length === 2",
                "both users in the room",
                console,
            )
            assert await page_members(page) == ["ada", "bob"]

        for user, text in [("ada", "hello from ada"), ("bob", "hello from bob")]:
            await pages[user].fill("#body", text)
            await pages[user].press("#body", "Enter")
            await wait_in_page(
                pages[user], f"window.chat.events.some(e => e.data.body === '{text}')",
                f"its own message {text!r} come back as an event", consoles[user],
            )  # fmt: skip
        for user, page in pages.items():
            await wait_in_page(
                page, "window.chat.events.length === 2", "both messages", consoles[user]
            )
            events = await page.evaluate("window.chat.events")
            assert [(event["seq"], event["data"]["user"]) for event in events] == [
                (1, "ada"),
                (2, "bob"),
            ]
            assert await page_messages(page) == ["adahello from ada", "bobhello from bob"]
        for page in pages.values():
            await page.context.close()


# -- the job progress example ---------------------------------------------------------------


async def read_sse(
    http: httpx.AsyncClient, path: str, *, until: Callable[[list[Event]], bool], **headers: str
) -> tuple[list[Event], str]:
    """Events of one SSE connection until ``until(events)``; the last ``id:`` seen with them."""
    events: list[Event] = []
    last_id = ""
    async with asyncio.timeout(PATIENCE), http.stream("GET", path, headers=headers) as stream:
        assert stream.status_code == 200, await stream.aread()
        entry_id, event_name = "", None
        async for line in stream.aiter_lines():
            if line.startswith("id: "):
                entry_id = line.removeprefix("id: ")
            elif line.startswith("event: "):
                event_name = line.removeprefix("event: ")
            elif line.startswith("data: ") and event_name is None:
                events.append(Event.decode(line.removeprefix("data: ")))
                last_id = entry_id
                if until(events):
                    break
            elif not line:
                event_name = None
    return events, last_id


async def test_job_progress_streams_to_done_and_resumes_after_a_reconnect(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    module = import_example("examples.job_progress", clean_environment)
    app = module.create_app(f"sqlite:///{tmp_path / 'jobs.db'}")
    steps = 8
    async with (
        serve_gateway(app=app, host="127.0.0.1", port=0) as url,
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(PATIENCE, read=None)) as http,
    ):
        started = await http.post("/jobs", json={"steps": steps, "step_seconds": 0.02})
        assert started.status_code == 202, started.text
        job = started.json()
        # Three events, then the connection drops ...
        first, last_id = await read_sse(http, job["sse"], until=lambda seen: len(seen) == 3)

        async def finished() -> bool:
            state = (await http.get(f"/jobs/{job['job_id']}")).json()
            return bool(state["job"]["status"] == "done")

        # ... while the job runs to its end ...
        await eventually(finished, "the job to finish")
        # ... and the client comes back with the last id it saw, as EventSource does.
        rest, _ = await read_sse(
            http,
            job["sse"],
            until=lambda seen: seen[-1].type == "job.done",
            **{"Last-Event-ID": last_id},
        )
        state = (await http.get(f"/jobs/{job['job_id']}")).json()

    events = first + rest
    assert [event.type for event in events] == ["job.progress"] * steps + ["job.done"]
    assert [event.seq for event in events] == list(range(1, steps + 2))
    assert len({event.id for event in events}) == steps + 1
    assert [event.data["step"] for event in events[:-1]] == list(range(1, steps + 1))
    # The database holds what the events said: one progress row per step.
    assert [row["percent"] for row in state["progress"]] == [
        event.data["percent"] for event in events[:-1]
    ]
    assert events[-1].data["result"] == state["job"]["result"] == f"{steps} steps done"


async def test_job_progress_refuses_a_database_that_is_not_sqlite(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    module = import_example("examples.job_progress", clean_environment)
    with pytest.raises(ValueError, match=r"REALTIME_BRIDGE_DATABASE_URL.*sqlite:///"):
        module.create_app("postgresql://127.0.0.1/test")


# -- the staging cost comparison ------------------------------------------------------------

VENDOR_NAMES = ("Pusher Channels", "Ably", "Supabase Realtime", "Self-hosted Redis", "Liveblocks")


def test_staging_costs_writes_the_html_report_with_the_chart_and_every_vendor(
    tmp_path: Path, soketi: Any
) -> None:
    key, secret = quote(soketi.key, safe=""), quote(soketi.secret, safe="")
    pusher = f"pusher://{key}:{secret}@127.0.0.1:{soketi.port}/{soketi.app_id}?tls=false"
    report, stats = tmp_path / "costs.html", tmp_path / "stats.json"
    env = {name: value for name, value in os.environ.items() if name not in BRIDGE_VARIABLES}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "staging_costs.py"), str(report),
         "--stats", str(stats), "--events", "300", "--shadow", pusher],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "<svg" in html and "</svg>" in html
    for vendor in VENDOR_NAMES:
        assert vendor in html, vendor
    assert f"HTML report:  {report}" in done.stdout

    adapters = json.loads(stats.read_text())["adapters"]
    roles = {label.split("://")[0]: entry["role"] for label, entry in adapters.items()}
    assert roles == {
        "memory": "primary",
        "ably": "shadow",
        "supabase": "shadow",
        "liveblocks": "shadow",
        "pusher": "shadow",
    }
    # Every shadow took every event of the day: nothing refused, nothing dropped.
    assert {entry["events"] for entry in adapters.values()} == {300}
    assert {entry["shadow_dropped"] for entry in adapters.values()} == {0}
    assert soketi.secret not in stats.read_text() + html + done.stdout
