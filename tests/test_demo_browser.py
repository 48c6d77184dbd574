"""A real browser on the demo page: events arrive live, and a gateway restart loses nothing.

Chromium (Debian's, headless, driven by Playwright) loads the page the demo
serves. The page uses the browser helper over ``EventSource``. The test stops
the demo's server (page, token route and gateway) while the shop keeps
committing and the relay keeps publishing into the memory adapter, then
starts it again on the same port. The browser must reconnect by itself,
send its last id (``Last-Event-ID``, or the helper's ``last_event_id`` when
it reopened the stream itself), and end with every event exactly once, in
``seq`` order.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

from browser import chromium, console_of  # noqa: F401 (chromium is a fixture)
from playwright.async_api import Browser, Page, Request

from realtime_bridge.demo.live import DemoOptions, LiveDemo

#: Upper bound on waiting for the page; only a broken demo reaches it.
PATIENCE = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def page_shows(page: Page, count: int, console: list[str]) -> list[dict[str, Any]]:
    """Wait until the page has received ``count`` events; return what it received."""
    try:
        await page.wait_for_function(
            "n => window.demo && window.demo.events.length >= n", arg=count, timeout=PATIENCE * 1000
        )
    except Exception as exc:
        seen = await page.evaluate("window.demo && window.demo.events.length")
        raise AssertionError(
            f"the page shows {seen} of {count} events; console: {console}"
        ) from exc
    events: list[dict[str, Any]] = await page.evaluate("window.demo.events")
    return events


def sse_requests(page: Page) -> list[Request]:
    """Every request the page makes to the gateway's ``/sse``, in order."""
    seen: list[Request] = []
    page.on(
        "request", lambda request: seen.append(request) if "/realtime/sse" in request.url else None
    )
    return seen


async def resumed_from(request: Request) -> str | None:
    """The position a reconnecting request asked to resume from, by header or by query."""
    headers = await request.all_headers()
    query = parse_qs(urlsplit(request.url).query)
    return headers.get("last-event-id") or (query.get("last_event_id") or [None])[0]


async def test_demo_page_receives_live_and_resumes_after_a_gateway_restart(
    chromium: Browser,  # noqa: F811 (the fixture)
) -> None:
    port = free_port()
    page = await chromium.new_page()
    console = console_of(page)
    requests = sse_requests(page)
    async with LiveDemo(DemoOptions(port=port, interval=0.02, heartbeat=2, seed=3)) as demo:
        async with demo.serving() as url:
            await page.goto(f"{url}/")
            await page.wait_for_function(
                "window.demo.statuses.includes('open')", timeout=PATIENCE * 1000
            )
            await demo.write(10)
            await page_shows(page, 10, console)
        before_restart = len(requests)

        # The server is down: the shop commits and the relay publishes all the same.
        await demo.write(15)
        await demo.settled()

        async with demo.serving():
            await page_shows(page, 25, console)
            await demo.write(5)
            received = await page_shows(page, 30, console)

        written = demo.written
    assert [event["id"] for event in received] == [event.id for event in written]
    assert [event["seq"] for event in received] == list(range(1, 31))
    assert await page.evaluate("window.demo.resets") == 0
    # The browser reconnected by itself and said where it was.
    resumed = [await resumed_from(request) for request in requests[before_restart:]]
    assert resumed and all(position for position in resumed), resumed
    assert received[9]["id"] == written[9].id  # the position it resumed from: after event 10
