"""The browser helper (``/realtime-bridge.js``) and plain ``EventSource``, in a real Chromium.

Everything is real: the gateway over Redis, Chromium (``tests/browser.py``),
and CORS. The test page comes from a small server of this module, on
another origin than the gateway's, which allows it with ``cors_origins``. The
page plays the application: it loads the helper from the gateway and asks the
page server's ``/token`` for tokens, as it would ask its own API.

Each wait is for a condition, bounded by ``PATIENCE``; nothing asserts how
long anything took.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from browser import chromium, console_of
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from test_gateway_clients import PATIENCE, SECRET, GatewayEnv, eventually

from realtime_bridge import Event
from realtime_bridge._serving import bind, serving
from realtime_bridge.adapters.redis import RedisKeys
from realtime_bridge.gateway import create_app, issue_token, serve_gateway

__all__ = ["chromium"]  # the fixture, imported from browser.py

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "browser.md"


# -- the page and its server ----------------------------------------------------------------

#: The test page: loads the helper from the gateway, and ``follow()`` opens a feed whose
#: callbacks log into ``window.feeds[name]`` for the test to read.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>realtime-bridge browser test</title>
<script src="{gateway}/realtime-bridge.js"></script>
<script>
window.feeds = {{}};
window.follow = function (name, base, options) {{
  const log = {{ events: [], resets: [], gaps: [], statuses: [], readies: 0 }};
  const query = (options.channels || []).map((c) => "channel=" + encodeURIComponent(c));
  const getToken = async () => (await (await fetch("/token?" + query.join("&"))).json()).token;
  window.feeds[name] = log;
  log.feed = RealtimeBridge.subscribe(base, Object.assign({{}}, options, {{
    getToken: options.renew ? getToken : undefined,
    onEvent: (envelope) => log.events.push(envelope),
    onReset: (reset) => log.resets.push(reset),
    onGap: (gap) => log.gaps.push(gap),
    onReady: () => log.readies++,
    onStatus: (state, reason) => log.statuses.push([state, reason]),
  }}));
}};
</script>
"""


@dataclass
class PageServer:
    """Serves the test page and hands out tokens, as an application's own API would."""

    env: GatewayEnv
    gateway_url: str = ""
    url: str = ""
    #: Each ``/token`` request's channels, in order.
    token_requests: list[list[str]] = field(default_factory=list)
    #: Makes the token for a request: (channels, how many were asked before) -> token.
    mint: Callable[[list[str], int], str] | None = None
    #: While set, ``/token`` waits for it (to hold a token renewal at a known moment).
    hold: asyncio.Event | None = None

    @property
    def origin(self) -> str:
        return self.url

    def app(self) -> Starlette:
        async def page(request: Request) -> HTMLResponse:
            return HTMLResponse(PAGE.format(gateway=self.gateway_url))

        async def token(request: Request) -> JSONResponse:
            channels = request.query_params.getlist("channel")
            asked = len(self.token_requests)
            self.token_requests.append(channels)
            if self.hold is not None:
                await self.hold.wait()
            made = self.mint(channels, asked) if self.mint else self.env.token(*channels)
            return JSONResponse({"token": made}, headers={"Cache-Control": "no-store"})

        return Starlette(routes=[Route("/", page), Route("/token", token)])

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[PageServer]:
        config = uvicorn.Config(self.app(), lifespan="off", log_level="warning", access_log=False)
        sock = bind("127.0.0.1", 0)
        async with serving(uvicorn.Server(config), sock, what="the test page", where="") as url:
            self.url = url
            yield self


@dataclass(frozen=True)
class SseRequest:
    """What the gateway was sent to open a stream: the header and the query's cursor."""

    last_event_id_header: str | None
    last_event_id_query: str | None


class RecordSseRequests:
    """ASGI middleware: notes every ``GET /sse`` the gateway receives, before it answers."""

    def __init__(self, app: ASGIApp, requests: list[SseRequest]) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/sse" and scope["method"] == "GET":
            headers = dict(scope["headers"])
            query = parse_qs(scope["query_string"].decode())
            header = headers.get(b"last-event-id")
            self.requests.append(
                SseRequest(
                    last_event_id_header=header.decode() if header is not None else None,
                    last_event_id_query=query.get("last_event_id", [None])[0],
                )
            )
        await self.app(scope, receive, send)


@asynccontextmanager
async def recorded_gateway(
    env: GatewayEnv, origin: str, *, port: int = 0, **settings: Any
) -> AsyncIterator[tuple[str, list[SseRequest]]]:
    """A gateway in this process that lets ``origin`` in, and the ``/sse`` requests it got."""
    requests: list[SseRequest] = []
    app = create_app(env.settings(cors_origins=[origin], **settings))
    app.add_middleware(RecordSseRequests, requests=requests)
    async with serve_gateway(app=app, port=port) as url:
        yield url, requests


@pytest.fixture
async def env(redis_server: str, redis_prefix: str) -> AsyncIterator[GatewayEnv]:
    environment = GatewayEnv.create(redis_server, redis_prefix, history="1000")
    yield environment
    await environment.aclose()


@pytest.fixture
async def pages(env: GatewayEnv) -> AsyncIterator[PageServer]:
    async with PageServer(env).serve() as server:
        yield server


@dataclass
class Tab:
    """The test page in the browser, and what it has logged (for failure messages)."""

    page: Page
    console: list[str]


async def open_page(browser: Browser, pages: PageServer, gateway_url: str) -> Tab:
    """The test page, loaded (with the helper, from ``gateway_url``) and logging its console."""
    pages.gateway_url = gateway_url
    page = await browser.new_page()
    tab = Tab(page, console_of(page))
    await page.goto(pages.url + "/")
    loaded = await page.evaluate("typeof window.RealtimeBridge?.subscribe")
    assert loaded == "function", tab.console
    return tab


# -- reading the page -----------------------------------------------------------------------


async def follow(tab: Tab, name: str, gateway_url: str, **options: Any) -> None:
    """Open a feed called ``name`` in the page (``options`` as ``RealtimeBridge.subscribe``'s)."""
    await tab.page.evaluate("([n, url, o]) => follow(n, url, o)", [name, gateway_url, options])


async def state(tab: Tab, name: str) -> dict[str, Any]:
    """What the feed ``name`` has seen: its log, its stats, status and last event id."""
    found = await tab.page.evaluate(
        """(name) => {
            const log = window.feeds[name];
            const { feed, ...rest } = log;
            const { stats, status, lastEventId } = feed;
            return { ...rest, stats, status, lastEventId };
        }""",
        name,
    )
    assert isinstance(found, dict)
    return found


async def until(
    tab: Tab, name: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The feed's state once ``check`` holds (bounded by ``PATIENCE``)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        found = await state(tab, name)
        if check(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; feed: {found!r}; page: {tab.console!r}")
        await asyncio.sleep(0.05)


def delivered(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda found: len(found["events"]) >= count


def readies(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda found: found["readies"] >= count


async def publish_seq(env: GatewayEnv, channel: str, *seqs: int) -> list[Event]:
    """Publish one event per ``seq`` on ``channel`` in one batch, as the relay would."""
    events = [Event(channel=channel, type="test.tick", data={"seq": seq}, seq=seq) for seq in seqs]
    await env.publisher.publish(events)
    return events


def ids(events: Sequence[Event | dict[str, Any]]) -> list[str]:
    return [event["id"] if isinstance(event, dict) else event.id for event in events]


def seqs(found: dict[str, Any]) -> list[int | None]:
    return [event["seq"] for event in found["events"]]


# -- plain EventSource ------------------------------------------------------------------------

PLAIN = """([url, token, channel]) => {
  window.plain = { events: [], ready: 0, errors: 0, closed: false };
  const query = `token=${encodeURIComponent(token)}&channel=${channel}`;
  const source = new EventSource(`${url}/sse?${query}`);
  source.onmessage = (message) => window.plain.events.push(JSON.parse(message.data));
  source.addEventListener("ready", () => window.plain.ready++);
  source.onerror = () => {
    window.plain.errors++;
    window.plain.closed = source.readyState === EventSource.CLOSED;
  };
  window.plainSource = source;
}"""


async def test_plain_event_source_receives_events_without_the_helper(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    async with recorded_gateway(env, pages.origin) as (url, _):
        tab = await open_page(chromium, pages, url)
        await tab.page.evaluate(PLAIN, [url, env.token("orders.1"), "orders.1"])
        await wait_in(tab, "window.plain.ready === 1")
        sent = await env.publish("orders.1", 3)
        await wait_in(tab, "window.plain.events.length >= 3")
        received = await tab.page.evaluate("window.plain.events")
        await tab.page.evaluate("window.plainSource.close()")
    assert ids(received) == ids(sent)
    assert [event["data"]["n"] for event in received] == [0, 1, 2]
    assert received[0]["channel"] == "orders.1" and received[0]["seq"] is None


async def wait_in(tab: Tab, condition: str) -> None:
    """Wait until the JavaScript ``condition`` holds in the page (bounded by ``PATIENCE``)."""
    try:
        await tab.page.wait_for_function(condition, polling=50, timeout=PATIENCE * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"timed out waiting for {condition}; page: {tab.console!r}")


async def test_an_origin_the_gateway_does_not_allow_cannot_read_the_stream(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    """The same page on another origin (``localhost`` for ``127.0.0.1``): CORS refuses it."""
    async with recorded_gateway(env, pages.origin) as (url, requests):
        pages.gateway_url = url
        page = await chromium.new_page()
        tab = Tab(page, console_of(page))
        await page.goto(pages.url.replace("127.0.0.1", "localhost") + "/")
        await page.evaluate(PLAIN, [url, env.token("orders.1"), "orders.1"])
        await wait_in(tab, "window.plain.closed")
        plain = await page.evaluate("window.plain")
    assert plain["ready"] == 0 and plain["events"] == []
    assert len(requests) == 1, "the request reached the gateway; the browser hid the answer"


# -- the helper: once each, in order, across a restart ----------------------------------------


async def test_gateway_restart_the_helper_resumes_with_last_event_id_and_misses_nothing(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    async with AsyncExitStack() as first:
        url, _ = await first.enter_async_context(recorded_gateway(env, pages.origin))
        tab = await open_page(chromium, pages, url)
        await follow(tab, "f", url, token=env.token("orders.1"), channels=["orders.1"])
        await until(tab, "f", readies(1), "the feed to be ready")
        sent = await publish_seq(env, "orders.1", 1, 2, 3)
        await until(tab, "f", delivered(3), "the first events")
    # The gateway is gone; the browser retries by itself (connection refused meanwhile).
    before = await until(
        tab, "f", lambda found: found["status"] == "reconnecting", "the feed to notice"
    )
    sent += await publish_seq(env, "orders.1", 4, 5, 6)  # while no gateway runs
    port = urlsplit(url).port
    assert port is not None
    async with recorded_gateway(env, pages.origin, port=port) as (url, requests):
        await until(tab, "f", readies(2), "the browser to reconnect")
        sent += await publish_seq(env, "orders.1", 7, 8)
        found = await until(tab, "f", delivered(8), "every event")
    assert ids(found["events"]) == ids(sent)
    assert seqs(found) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert found["stats"]["duplicates"] == 0 and found["gaps"] == [] and found["resets"] == []
    # The browser's own reconnect (not the helper's): the header, with the last id it saw.
    assert requests[0].last_event_id_header == before["lastEventId"] != ""
    assert found["stats"]["reopens"] == 0


# -- the helper: duplicates, order, gaps ------------------------------------------------------


async def test_duplicates_are_dropped_and_events_are_ordered_by_seq(
    chromium: Browser, env: GatewayEnv, pages: PageServer, redis_prefix: str
) -> None:
    """Each duplicate really reaches the browser (``received`` counts it); the helper drops it.

    ``holdMs`` is long, so only the count bound (``maxHeld``) lets a gap through:
    what is asserted never depends on how fast anything ran.
    """
    async with recorded_gateway(env, pages.origin) as (url, _):
        tab = await open_page(chromium, pages, url)
        token = env.token("a.1", "b.1")
        await follow(tab, "f", url, token=token, holdMs=60_000, maxHeld=2)
        await until(tab, "f", readies(1), "the feed to be ready")
        one, two = await publish_seq(env, "a.1", 1, 2)
        # The same event again, on another channel of the stream: dropped by id.
        await env.publisher.publish([one.model_copy(update={"channel": "b.1"})])
        # A replay after the adapter forgot the id (its dedupe key gone): dropped by id.
        await _forget_id(env, redis_prefix, two)
        await env.publisher.publish([two])
        # Out of order: 4 waits for 3. A new event claiming an old seq is a duplicate too.
        four, three = await publish_seq(env, "a.1", 4, 3)
        (stale,) = await publish_seq(env, "a.1", 2)
        untracked = Event(channel="a.1", type="test.note", data={})  # seq null: as it comes
        await env.publisher.publish([untracked])
        # 5 never comes: 6 and 7 wait; 8 is one too many, so all go, with the gap reported.
        rest = await publish_seq(env, "a.1", 6, 7, 8)
        found = await until(tab, "f", delivered(8), "the events to be delivered")
        published = 11
        await until(tab, "f", lambda f: f["stats"]["received"] == published, "every copy")
    assert ids(found["events"]) == ids([one, two, three, four, untracked, *rest])
    assert seqs(found) == [1, 2, 3, 4, None, 6, 7, 8]
    assert found["gaps"] == [{"channel": "a.1", "from": 5, "to": 5}]
    final = await state(tab, "f")
    assert final["stats"]["duplicates"] == 3 and final["stats"]["delivered"] == 8
    assert stale.id not in ids(final["events"])


async def _forget_id(env: GatewayEnv, prefix: str, event: Event) -> None:
    client = aioredis.Redis.from_url(env.redis_url.split("?")[0])
    try:
        assert await client.delete(RedisKeys(prefix, event.channel).dedupe(event.id)) == 1
    finally:
        await client.aclose()


async def test_an_event_that_skips_ahead_waits_at_most_hold_ms(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    async with recorded_gateway(env, pages.origin) as (url, _):
        tab = await open_page(chromium, pages, url)
        await follow(tab, "f", url, token=env.token("c.1"), holdMs=200)
        await until(tab, "f", readies(1), "the feed to be ready")
        await publish_seq(env, "c.1", 1, 3)  # 2 never comes
        found = await until(tab, "f", delivered(2), "3 to be let through")
    assert seqs(found) == [1, 3]
    assert found["gaps"] == [{"channel": "c.1", "from": 2, "to": 2}]


async def test_the_id_memory_is_bounded_by_remember_ids(
    chromium: Browser, env: GatewayEnv, pages: PageServer, redis_prefix: str
) -> None:
    """With room for two ids, a replay of the third-newest event is no longer recognised."""
    async with recorded_gateway(env, pages.origin) as (url, _):
        tab = await open_page(chromium, pages, url)
        await follow(tab, "f", url, token=env.token("m.1"), rememberIds=2)
        await until(tab, "f", readies(1), "the feed to be ready")
        first, second, third = await env.publish("m.1", 3)  # seq null: deduped by id only
        await until(tab, "f", delivered(3), "the events")
        for old in (third, first):  # third is remembered; first was forgotten
            await _forget_id(env, redis_prefix, old)
            await env.publisher.publish([old])
        await until(tab, "f", lambda f: f["stats"]["received"] == 5, "both replays")
        found = await until(tab, "f", delivered(4), "the forgotten one again")
    assert ids(found["events"]) == ids([first, second, third, first])
    assert found["stats"]["duplicates"] == 1


# -- reset, expiry, stalls --------------------------------------------------------------------


async def test_a_reset_reaches_on_reset_and_restarts_the_channels_order(
    chromium: Browser, redis_server: str, redis_prefix: str, pages: PageServer
) -> None:
    """The gateway is away while more is published than history keeps: on return, ``reset``.

    After it the helper forgets the channel's seq: the next event (seq 11, with
    3 to 10 never delivered) goes straight through instead of waiting for them.
    """
    env = GatewayEnv.create(redis_server, redis_prefix, history="3", exact="true")
    try:
        async with AsyncExitStack() as first:
            url, _ = await first.enter_async_context(recorded_gateway(env, pages.origin))
            tab = await open_page(chromium, pages, url)
            await follow(tab, "f", url, token=env.token("r.1"), holdMs=60_000)
            await until(tab, "f", readies(1), "the feed to be ready")
            await publish_seq(env, "r.1", 1, 2)
            await until(tab, "f", delivered(2), "the first events")
        await publish_seq(env, "r.1", *range(3, 11))  # history keeps only 8, 9 and 10
        port = urlsplit(url).port
        assert port is not None
        async with recorded_gateway(env, pages.origin, port=port) as (url, _):
            found = await until(tab, "f", lambda f: f["resets"], "the reset")
            (eleven,) = await publish_seq(env, "r.1", 11)
            found = await until(tab, "f", delivered(3), "the event after the reset")
    finally:
        await env.aclose()
    assert [(reset["channel"], reset["reason"]) for reset in found["resets"]] == [("r.1", "gap")]
    assert seqs(found) == [1, 2, 11] and found["events"][-1]["id"] == eleven.id
    assert found["gaps"] == []


async def test_an_expired_token_is_renewed_through_get_token_and_nothing_is_missed(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    """The first token has two seconds left. When it expires, the helper asks for another.

    The page server holds that second ``/token`` answer until an event has been
    published: the helper must get it from the reopened stream's catch-up.
    """

    def mint(channels: list[str], asked: int) -> str:
        if asked == 0:
            return issue_token(SECRET, channels=channels, now=time.time() - 3600 + 2, ttl=3600)
        return env.token(*channels)

    pages.mint = mint
    async with recorded_gateway(env, pages.origin) as (url, requests):
        tab = await open_page(chromium, pages, url)
        await follow(tab, "f", url, channels=["e.1"], renew=True)
        await until(tab, "f", readies(1), "the feed to be ready")
        sent = await publish_seq(env, "e.1", 1, 2)
        before = await until(tab, "f", delivered(2), "the first events")
        pages.hold = asyncio.Event()
        await eventually(_count(pages.token_requests), lambda n: n == 2, "a second token request")
        sent += await publish_seq(env, "e.1", 3)  # after the expiry, before the new token
        pages.hold.set()
        await until(tab, "f", readies(2), "the stream to reopen")
        sent += await publish_seq(env, "e.1", 4)
        found = await until(tab, "f", delivered(4), "every event")
    assert ids(found["events"]) == ids(sent)
    assert ["reconnecting", "expired"] in found["statuses"]
    assert pages.token_requests == [["e.1"], ["e.1"]]
    # The helper reopened the stream itself: the cursor goes in the query (no header).
    assert [request.last_event_id_query for request in requests] == [None, before["lastEventId"]]
    assert requests[1].last_event_id_header is None


async def test_when_the_browser_gives_up_the_helper_retries_with_a_fresh_token(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    """A token that expired before the page opened: 401, which ``EventSource`` never retries."""
    stale = issue_token(SECRET, channels=["g.1"], now=time.time() - 7200, ttl=3600)
    async with recorded_gateway(env, pages.origin) as (url, requests):
        tab = await open_page(chromium, pages, url)
        await follow(tab, "f", url, token=stale, channels=["g.1"], renew=True)
        await until(tab, "f", readies(1), "the feed to be ready with a new token")
        sent = await publish_seq(env, "g.1", 1)
        found = await until(tab, "f", delivered(1), "the event")
    assert ids(found["events"]) == ids(sent)
    assert ["reconnecting", "error"] in found["statuses"]
    assert pages.token_requests == [["g.1"]] and len(requests) == 2


async def test_subscribe_refuses_options_it_cannot_use(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    async with recorded_gateway(env, pages.origin) as (url, requests):
        tab = await open_page(chromium, pages, url)
        errors = await tab.page.evaluate(
            """(url) => [{}, { token: "t", channels: "orders.1" }].map((options) => {
                try { RealtimeBridge.subscribe(url, options); }
                catch (error) { return `${error.name}: ${error.message}`; }
            })""",
            url,
        )
    assert requests == [], "refused before connecting"
    assert errors == [
        "TypeError: RealtimeBridge.subscribe: pass options.token or options.getToken",
        "TypeError: RealtimeBridge.subscribe: options.channels must be an array",
    ]


def _count(items: list[Any]) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return len(items)

    return probe


@asynccontextmanager
async def gateway_process(env: GatewayEnv, origin: str) -> AsyncIterator[tuple[str, int]]:
    """``realtime-bridge gateway`` in a subprocess (so it can be SIGSTOPped): URL and pid."""
    command = [
        sys.executable,
        "-m",
        "realtime_bridge.cli",
        "gateway",
        "--redis",
        env.redis_url,
        "--port",
        "0",
        "--heartbeat",
        "0.5",
        "--cors-origin",
        origin,
    ]
    variables = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_BRIDGE_")}
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**variables, "REALTIME_BRIDGE_GATEWAY_SECRET": SECRET},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(PATIENCE * 2):
            first = (await process.stdout.readline()).decode()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first
        # The line comes once the port is bound, maybe before uvicorn listens on it.
        await eventually(_health_status(found[0]), lambda status: status == 200, "the gateway")
        yield found[0], process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(PATIENCE):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def _health_status(url: str) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        async with httpx.AsyncClient() as client:
            try:
                return (await client.get(f"{url}/healthz", timeout=PATIENCE)).status_code
            except httpx.ConnectError:
                return 0

    return probe


async def test_the_heartbeat_watchdog_reopens_a_stalled_stream(
    chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    """A SIGSTOPped gateway keeps its connections open and sends nothing, not even
    heartbeats: only the watchdog can tell. It reopens with ``?last_event_id=``.
    """
    async with gateway_process(env, pages.origin) as (url, pid):
        tab = await open_page(chromium, pages, url)
        await follow(tab, "f", url, token=env.token("w.1"))
        await until(tab, "f", readies(1), "the feed to be ready")
        sent = await publish_seq(env, "w.1", 1)
        await until(tab, "f", delivered(1), "the first event")
        os.kill(pid, signal.SIGSTOP)
        try:
            found = await until(
                tab, "f", lambda f: f["stats"]["reopens"] >= 1, "the watchdog to reopen"
            )
            sent += await publish_seq(env, "w.1", 2)  # while the gateway is stopped
        finally:
            os.kill(pid, signal.SIGCONT)
        sent += await publish_seq(env, "w.1", 3)
        found = await until(tab, "f", delivered(3), "every event")
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"{url}/healthz", timeout=PATIENCE)).json()
    assert ids(found["events"]) == ids(sent)
    assert ["reconnecting", "stalled"] in found["statuses"]
    assert health["totals"]["sse_connections"] >= 2


# -- the doc's snippets run as written --------------------------------------------------------

SNIPPET = re.compile(r"^```js\n(.*?)^```", re.DOTALL | re.MULTILINE)

#: What the doc's snippets assume the page has: the gateway's URL, a token, and the app's
#: own ``render`` and ``refetch`` (here they log what they were given).
HARNESS = """([url, token, module]) => {
  if (module) delete window.RealtimeBridge; // the snippet's import must define it
  window.GATEWAY_URL = url;
  window.token = token;
  window.rendered = [];
  window.render = (event) => window.rendered.push(event);
  window.refetch = (channel) => window.rendered.push({ refetch: channel });
}"""


def doc_snippets() -> list[Any]:
    return [
        pytest.param(match.group(1), id=f"docs/browser.md#{number}")
        for number, match in enumerate(SNIPPET.finditer(DOC.read_text()), start=1)
    ]


def test_the_doc_has_snippets_for_plain_event_source_the_helper_and_a_module() -> None:
    snippets = [param.values[0] for param in doc_snippets()]
    assert any("new EventSource(" in code for code in snippets)
    assert any("RealtimeBridge.subscribe(" in code for code in snippets)
    assert any("await import(" in code for code in snippets)


@pytest.mark.parametrize("code", doc_snippets())
async def test_doc_snippet_runs_in_the_browser(
    code: str, chromium: Browser, env: GatewayEnv, pages: PageServer
) -> None:
    """Each ``js`` block of docs/browser.md, run as written: it must render a live event.

    The snippet subscribes on its own schedule, and an event published before its
    stream is ready may come before the stream's start: publish one event every
    half second until one renders.
    """
    async with recorded_gateway(env, pages.origin) as (url, _):
        tab = await open_page(chromium, pages, url)
        module = "await import(" in code
        await tab.page.evaluate(HARNESS, [url, env.token("orders.42"), module])
        await tab.page.add_script_tag(content=code, type="module" if module else "text/javascript")
        sent: list[Event] = []
        deadline = time.monotonic() + PATIENCE
        while not (rendered := await tab.page.evaluate("window.rendered")):
            if time.monotonic() > deadline:
                pytest.fail(f"the snippet rendered nothing; page: {tab.console!r}")
            sent += await env.publish("orders.42")
            await asyncio.sleep(0.5)
    assert not [line for line in tab.console if line.startswith("uncaught")], tab.console
    assert rendered[0]["id"] in ids(sent), rendered
    assert rendered[0]["channel"] == "orders.42"
