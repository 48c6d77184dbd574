"""Fixtures for the Ably adapter: the Ably emulator served over HTTP, or real Ably.

* ``ably_adapter``: the contract suite's adapter (``tests/conftest.py`` names it). By
  default an ``AblyAdapter`` on ``shared_ably``, reset before each test. With
  ``REALTIME_BRIDGE_TEST_ABLY_URL`` set (``ably://KEYNAME:SECRET@`` for real Ably, see
  ``test_ably_live.py``) it talks to that instead, each test's channels under a
  namespace of their own (``ChannelNamespace``), and nothing here is started.
* ``shared_ably``: one ``AblyEmulator`` for the session, served by uvicorn on its own
  thread and event loop (serving one per test costs ~180 ms: uvicorn's shutdown waits
  out two 0.1 s ticks). Its state belongs to that thread, so tests change it through
  ``ThreadServedEmulator.call`` or its control API (``EmulatorControl``: what Ably's
  realtime clients would do there, and what reached it), both run by the server's
  loop between requests.
* ``serve_ably``: ``await serve_ably(**emulator_options)`` serves a private emulator in
  the test's own loop (a ``ManualClock``, a smaller ``max_message_size``, other keys)
  and stops it after the test; the emulator is then the test's to touch directly.

The emulator needs nothing from the network or this machine's services, so nothing
here skips: it runs everywhere, CI included.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import pytest
from namespaced_transport import NamespacingTransport
from threaded_server import ThreadServed

from realtime_bridge.adapters.ably import AblyAdapter
from realtime_bridge.testing.ably import AblyEmulator, serve

T = TypeVar("T")

#: Set to an ``ably://`` URL to run the contract suite's Ably tests against it.
LIVE_URL_VARIABLE = "REALTIME_BRIDGE_TEST_ABLY_URL"
#: Bound on every call into the emulator thread (a bound, not a timing claim).
PATIENCE = 10.0


def live_ably_url() -> str | None:
    """The ``ably://`` URL the contract suite's Ably tests use instead of the emulator."""
    return os.environ.get(LIVE_URL_VARIABLE) or None


def port_of(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None, base_url
    return port


def adapter_url(base_url: str, key: str, **options: str) -> str:
    """The ``ably://`` URL of an emulator at ``base_url`` (plain HTTP, so token auth)."""
    name, _, secret = key.partition(":")
    query = "&".join(f"{k}={v}" for k, v in {"tls": "false", **options}.items())
    credentials = f"{quote(name, safe='.')}:{quote(secret, safe='')}"
    return f"ably://{credentials}@127.0.0.1:{port_of(base_url)}?{query}"


# -- an emulator for the whole session, on a thread of its own ---------------------------


class ThreadServedEmulator(ThreadServed[AblyEmulator]):
    """The session's emulator on a thread of its own (see ``threaded_server``)."""

    def __init__(self, emulator: AblyEmulator) -> None:
        super().__init__(emulator, serve, what="the Ably emulator")

    def adapter_url(self, **options: str) -> str:
        return adapter_url(self.url, self.emulator.key, **options)


@pytest.fixture(scope="session")
def shared_ably() -> Iterator[ThreadServedEmulator]:
    """The session's emulator (key ``emulator.key:secret``); ``ably_adapter`` resets it."""
    served = ThreadServedEmulator(AblyEmulator())
    served.start()
    try:
        yield served
    finally:
        served.stop()


class EmulatorControl:
    """A served emulator's control API: what realtime clients would do, and what it holds.

    Each call is handled by the emulator's own loop, in turn with Ably's API requests,
    so it works on an emulator served on another thread or in another process.
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=f"{base_url}/_emulator", timeout=PATIENCE)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def messages(self, channel: str) -> list[dict[str, Any]]:
        """What ``channel`` holds, oldest first, as Ably's history would give each message."""
        found = await self._json("GET", "/messages", params={"channel": channel})
        assert isinstance(found, list)
        return found

    async def enter(
        self, channel: str, client_id: str, data: object, connection_id: str | None = None
    ) -> str:
        """Enter (or, on the same connection, update) a member; its connection id."""
        body = {"channel": channel, "client_id": client_id, "data": data}
        if connection_id is not None:
            body["connection_id"] = connection_id
        return str((await self._json("POST", "/presence", json=body))["connection_id"])

    async def leave(self, channel: str, client_id: str, connection_id: str | None = None) -> int:
        body: dict[str, Any] = {"channel": channel, "client_id": client_id, "action": "leave"}
        if connection_id is not None:
            body["connection_id"] = connection_id
        return int((await self._json("POST", "/presence", json=body))["left"])

    async def set_subscribers(self, channel: str, subscribers: int) -> None:
        await self._json(
            "POST", "/occupancy", json={"channel": channel, "subscribers": subscribers}
        )

    async def aclose(self) -> None:
        await self.http.aclose()


# -- real Ably: each test's channels under a namespace of their own -----------------------


class ChannelNamespace(NamespacingTransport):
    """Ably's channels under ``prefix``: ``/channels/{channel}/...`` paths and the
    ``channels`` of a batch ``POST /messages``. Real Ably keeps history (two minutes at
    least) and presence across test runs."""

    def __init__(self, prefix: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(prefix, root=b"/channels/", inner=inner)

    def rewrite_body(self, method: str, path: bytes, content: bytes) -> bytes:
        if path != b"/messages" or method != "POST":
            return content
        specs = json.loads(content)
        for spec in specs if isinstance(specs, list) else [specs]:
            named = spec["channels"]
            spec["channels"] = (
                self.named(named) if isinstance(named, str) else list(map(self.named, named))
            )
        return json.dumps(specs).encode()


# -- the contract suite's adapter -----------------------------------------------------------


@pytest.fixture
async def ably_adapter(request: pytest.FixtureRequest) -> AsyncIterator[AblyAdapter]:
    """The Ably adapter on the shared emulator (reset first), or on live Ably if asked."""
    live = live_ably_url()
    if live is not None:
        namespace = f"rbtest:{uuid.uuid4().hex[:12]}-"
        adapter = AblyAdapter.from_url(live, transport=ChannelNamespace(namespace))
    else:
        shared: ThreadServedEmulator = request.getfixturevalue("shared_ably")
        shared.call(shared.emulator.reset)
        adapter = AblyAdapter.from_url(shared.adapter_url())
    try:
        yield adapter
    finally:
        await adapter.aclose()


# -- private emulators, served in the test's own loop -----------------------------------------


@dataclass
class ServedAbly:
    """An emulator of this test's own and the base URL it is served at."""

    emulator: AblyEmulator
    base_url: str

    @property
    def port(self) -> int:
        return port_of(self.base_url)

    def url(self, key: str | None = None, **options: str) -> str:
        """The ``ably://`` URL for ``key`` (default: the emulator's first key)."""
        return adapter_url(self.base_url, key or self.emulator.key, **options)


ServeAbly = Callable[..., Awaitable[ServedAbly]]


@pytest.fixture
async def serve_ably() -> AsyncIterator[ServeAbly]:
    """``await serve_ably(**AblyEmulator options)``: a private served emulator."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: Any) -> ServedAbly:
            emulator = AblyEmulator(**options)
            base_url = await stack.enter_async_context(serve(emulator))
            return ServedAbly(emulator, base_url)

        yield start
