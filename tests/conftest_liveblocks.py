"""Fixtures for the Liveblocks adapter: the Liveblocks emulator served over HTTP, or Liveblocks.

* ``liveblocks_adapter``: the contract suite's adapter (``tests/conftest.py`` names it). By
  default a ``LiveblocksAdapter`` on ``shared_liveblocks``, reset before each test. With
  ``REALTIME_BRIDGE_TEST_LIVEBLOCKS_URL`` set (``liveblocks://sk_...@`` for real Liveblocks,
  see ``test_liveblocks_live.py``) it talks to that instead, each test's rooms under a
  prefix of their own (``RoomNamespace``), and nothing here is started.
* ``shared_liveblocks``: one ``LiveblocksEmulator`` for the session, served by uvicorn on its
  own thread and event loop (``threaded_server``). Its state belongs to that thread, so
  tests change it through ``ThreadServedLiveblocks.call`` or its control API
  (``EmulatorControl``), both run by the server's loop between requests.
* ``serve_liveblocks``: ``await serve_liveblocks(**emulator_options)`` serves a private
  emulator in the test's own loop (a smaller ``max_message_size``, other keys, a
  ``ManualClock``), stopped after the test; the emulator is then the test's to touch.
* ``LiveblocksClients``: browsers in rooms, as the emulator's connections (``connect``):
  live subscribers and presence members. ``test_contract.py`` builds its clients on it.

The emulator needs nothing from the network or this machine's services, so nothing
here skips: it runs everywhere, CI included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import pytest
from namespaced_transport import NamespacingTransport
from threaded_server import ThreadServed

from realtime_bridge import Event, Member
from realtime_bridge.adapters.liveblocks import LiveblocksAdapter
from realtime_bridge.testing.liveblocks import LiveblocksEmulator, serve

T = TypeVar("T")

#: Set to a ``liveblocks://`` URL to run the contract suite's Liveblocks tests against it.
LIVE_URL_VARIABLE = "REALTIME_BRIDGE_TEST_LIVEBLOCKS_URL"
#: Bound on every wait here (a bound on a hang, not a timing claim).
PATIENCE = 10.0


def live_liveblocks_url() -> str | None:
    """The ``liveblocks://`` URL the contract suite's tests use instead of the emulator."""
    return os.environ.get(LIVE_URL_VARIABLE) or None


def port_of(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None, base_url
    return port


def adapter_url(base_url: str, secret: str, **options: str) -> str:
    """The ``liveblocks://`` URL of an emulator at ``base_url`` (plain HTTP)."""
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {"tls": "false", **options}.items())
    return f"liveblocks://{secret}@127.0.0.1:{port_of(base_url)}?{query}"


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Poll ``probe`` until ``done(result)``; fail after ``PATIENCE`` seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}; last saw {result!r}")
        await asyncio.sleep(0.02)


# -- an emulator for the whole session, on a thread of its own ---------------------------


class ThreadServedLiveblocks(ThreadServed[LiveblocksEmulator]):
    """The session's emulator on a thread of its own (see ``threaded_server``)."""

    def __init__(self, emulator: LiveblocksEmulator) -> None:
        super().__init__(emulator, serve, what="the Liveblocks emulator")

    def adapter_url(self, **options: str) -> str:
        return adapter_url(self.url, self.emulator.secret, **options)


@pytest.fixture(scope="session")
def shared_liveblocks() -> Iterator[ThreadServedLiveblocks]:
    """The session's emulator (``sk_emulator_secret``); ``liveblocks_adapter`` resets it."""
    served = ThreadServedLiveblocks(LiveblocksEmulator())
    served.start()
    try:
        yield served
    finally:
        served.stop()


class EmulatorControl:
    """A served emulator's control API: browsers entering and leaving rooms, what they got.

    Each call is handled by the emulator's own loop, in turn with the API requests, so it
    works on an emulator served on another thread or in another process.
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=f"{base_url}/_emulator", timeout=PATIENCE)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def connect(
        self,
        room: str,
        user_id: str | None = None,
        info: dict[str, Any] | None = None,
        connection_id: int | None = None,
    ) -> int:
        """A browser enters ``room`` (or, given its connection, changes its info)."""
        body = {"room": room, "user_id": user_id, "info": info, "connection_id": connection_id}
        return int((await self._json("POST", "/connections", json=body))["connection_id"])

    async def disconnect(
        self, room: str, *, connection_id: int | None = None, user_id: str | None = None
    ) -> int:
        body = {"room": room, "connection_id": connection_id, "user_id": user_id}
        return int((await self._json("DELETE", "/connections", json=body))["left"])

    async def received(self, room: str, connection_id: int) -> list[dict[str, Any]]:
        """What one connection got, as ``useEventListener`` gets it: event, connectionId, user."""
        params = {"room": room, "connection": str(connection_id)}
        found = await self._json("GET", "/received", params=params)
        assert isinstance(found, list)
        return found

    async def aclose(self) -> None:
        await self.http.aclose()


# -- browsers: connections in rooms ----------------------------------------------------------


def decoded(received: dict[str, Any], room: str) -> Event:
    """What a listener got for a REST broadcast, as the ``Event`` it carries."""
    assert received["connectionId"] == -1 and received["user"] is None, received
    event = Event.decode(json.dumps(received["event"]))
    assert event.channel == room, received
    return event


class LiveblocksClients:
    """Browsers in Liveblocks rooms, as the emulator's connections (its control API).

    ``subscriber(room)`` is an anonymous connection in the room: it receives every event
    broadcast while it is there, in order (read back from the emulator, each checked to
    come from the REST API, ``connectionId`` -1), and counts among the room's connections.

    A member is a connection of its user id with its info (Liveblocks' ``userInfo``):
    ``enter`` connects it, entering again replaces the info on the same connection,
    ``leave`` closes it. A Liveblocks connection goes when its socket does (a browser that
    stops answering is dropped), so a member's connection is closed ``ttl`` seconds after
    it last entered (a timer, restarted by each enter).
    """

    shows_member_info = True

    def __init__(self, control: EmulatorControl) -> None:
        self.control = control
        self._connections: dict[tuple[str, str], int] = {}
        self._lapses: dict[tuple[str, str], asyncio.Task[None]] = {}

    @contextlib.asynccontextmanager
    async def subscriber(self, room: str) -> AsyncIterator[Callable[[], Awaitable[Event]]]:
        connection = await self.control.connect(room)
        seen = 0

        async def next_event() -> Event:
            nonlocal seen
            got = await eventually(
                lambda: self.control.received(room, connection),
                lambda found: len(found) > seen,
                f"an event in room {room}",
            )
            seen += 1
            return decoded(got[seen - 1], room)

        try:
            yield next_event
        finally:
            await self.control.disconnect(room, connection_id=connection)

    async def enter(self, room: str, member: Member, ttl: float = 60.0) -> None:
        key = (room, member.id)
        lapse = self._lapses.pop(key, None)
        if lapse is not None:
            lapse.cancel()
        connection = await self.control.connect(
            room, member.id, member.info, self._connections.get(key)
        )
        self._connections[key] = connection
        self._lapses[key] = asyncio.create_task(self._lapse(room, member.id, connection, ttl))

    async def leave(self, room: str, member_id: str) -> None:
        key = (room, member_id)
        lapse = self._lapses.pop(key, None)
        if lapse is not None:
            lapse.cancel()
        connection = self._connections.pop(key, None)
        if connection is not None:
            await self.control.disconnect(room, connection_id=connection)

    async def _lapse(self, room: str, member_id: str, connection: int, ttl: float) -> None:
        await asyncio.sleep(ttl)  # no answer from the browser: Liveblocks drops the connection
        if self._connections.get((room, member_id)) == connection:
            del self._connections[room, member_id]
            self._lapses.pop((room, member_id), None)
        await self.control.disconnect(room, connection_id=connection)

    async def aclose(self) -> None:
        lapses, self._lapses = list(self._lapses.values()), {}
        for lapse in lapses:
            lapse.cancel()
        await asyncio.gather(*lapses, return_exceptions=True)
        await self.control.aclose()


def liveblocks_clients_for_suite(request: pytest.FixtureRequest) -> EmulatorControl:
    """The control API of the contract suite's emulator; on live Liveblocks, a skip saying
    why (the suite's browsers are the emulator's connections)."""
    if live_liveblocks_url() is not None:
        pytest.skip(
            "live Liveblocks: this test needs the emulator's view of Liveblocks' browsers "
            "(connections in rooms, what they received); see test_liveblocks_live.py"
        )
    shared: ThreadServedLiveblocks = request.getfixturevalue("shared_liveblocks")
    return EmulatorControl(shared.url)


# -- real Liveblocks: each test's rooms under a prefix of their own --------------------------------


class RoomNamespace(NamespacingTransport):
    """Liveblocks' rooms under ``prefix`` (``/v2/rooms/{room}/...``): rooms Liveblocks
    creates outlive a run."""

    def __init__(self, prefix: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(prefix, root=b"/v2/rooms/", inner=inner)


# -- the contract suite's adapter -----------------------------------------------------------


@pytest.fixture
async def liveblocks_adapter(request: pytest.FixtureRequest) -> AsyncIterator[LiveblocksAdapter]:
    """The Liveblocks adapter on the shared emulator (reset first), or on Liveblocks if asked."""
    live = live_liveblocks_url()
    if live is not None:
        namespace = f"rbtest-{uuid.uuid4().hex[:12]}-"
        adapter = LiveblocksAdapter.from_url(live, transport=RoomNamespace(namespace))
    else:
        shared: ThreadServedLiveblocks = request.getfixturevalue("shared_liveblocks")
        shared.call(shared.emulator.reset)
        adapter = LiveblocksAdapter.from_url(shared.adapter_url())
    try:
        yield adapter
    finally:
        await adapter.aclose()


# -- private emulators, served in the test's own loop -----------------------------------------


@dataclass
class ServedLiveblocks:
    """An emulator of this test's own and the base URL it is served at."""

    emulator: LiveblocksEmulator
    base_url: str

    @property
    def port(self) -> int:
        return port_of(self.base_url)

    def url(self, secret: str | None = None, **options: str) -> str:
        """The ``liveblocks://`` URL for ``secret`` (default: the emulator's first key)."""
        return adapter_url(self.base_url, secret or self.emulator.secret, **options)

    def adapter(self, secret: str | None = None, **options: Any) -> LiveblocksAdapter:
        return LiveblocksAdapter.from_url(self.url(secret), **options)


ServeLiveblocks = Callable[..., Awaitable[ServedLiveblocks]]


@pytest.fixture
async def serve_liveblocks() -> AsyncIterator[ServeLiveblocks]:
    """``await serve_liveblocks(**LiveblocksEmulator options)``: a private served emulator."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: Any) -> ServedLiveblocks:
            emulator = LiveblocksEmulator(**options)
            base_url = await stack.enter_async_context(serve(emulator))
            return ServedLiveblocks(emulator, base_url)

        yield start
