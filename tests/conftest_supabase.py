"""Fixtures for the Supabase adapter: the Supabase emulator served over HTTP, or a real project.

* ``supabase_adapter``: the contract suite's adapter (``tests/conftest.py`` names it). By
  default a ``SupabaseAdapter`` with the service key on ``shared_supabase``, reset before
  each test. With ``REALTIME_BRIDGE_TEST_SUPABASE_URL`` set (a ``supabase://`` URL, see
  ``test_supabase_live.py``) it talks to that instead, and nothing here is started.
* ``shared_supabase``: one ``SupabaseEmulator`` for the session, served by uvicorn on its
  own thread and event loop, with the RLS policies browsers need on ``private-`` and
  ``presence-`` channels (``CONTRACT_POLICIES``). Its state belongs to that thread: tests
  change it through ``ThreadServedSupabase.call``, run by the server's loop between frames.
* ``serve_supabase``: ``await serve_supabase(**emulator_options)`` serves a private emulator
  in the test's own loop (a ``ManualClock``, a smaller quota or payload limit, policies of
  its own) and stops it after the test; the emulator is then the test's to touch directly.
* ``RealtimeClients``: browsers, as Supabase's own Python client (``realtime``'s
  ``AsyncRealtimeClient``) on the emulator or the project: live subscribers and presence
  members. ``test_contract.py`` builds its ``SupabaseClients`` on it.

The emulator needs nothing from the network or this machine's services, so nothing here
skips: it runs everywhere, CI included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import quote, unquote, urlsplit

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime._async.channel import AsyncRealtimeChannel
from threaded_server import ThreadServed

from realtime_bridge import Event, Member
from realtime_bridge.adapters.supabase import SupabaseAdapter
from realtime_bridge.testing.supabase import SupabaseEmulator, serve

T = TypeVar("T")

#: Set to a ``supabase://`` URL to run the contract suite's Supabase tests against it.
LIVE_URL_VARIABLE = "REALTIME_BRIDGE_TEST_SUPABASE_URL"
#: Bound on every wait here (a bound on a hang, not a timing claim).
PATIENCE = 10.0

#: The shared emulator's RLS policies, what ``policies_sql()`` ships, as emulator rules:
#: signed-in users receive broadcasts and the presence list on ``private-`` and
#: ``presence-`` channels, and track presence on ``presence-`` channels. (The shipped SQL
#: also checks that the token names the topic; the emulator's rules cannot read claims.)
CONTRACT_POLICIES: tuple[dict[str, Any], ...] = (
    {"topic": "private-*", "role": "authenticated", "insert": False},
    {"topic": "presence-*", "role": "authenticated", "insert": False},
    {"topic": "presence-*", "role": "authenticated", "extension": "presence"},
)


def live_supabase_url() -> str | None:
    """The ``supabase://`` URL the contract suite's Supabase tests use instead of the emulator."""
    return os.environ.get(LIVE_URL_VARIABLE) or None


def port_of(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None, base_url
    return port


def adapter_url(base_url: str, key: str, **options: str) -> str:
    """The ``supabase://`` URL of an emulator at ``base_url`` (plain HTTP)."""
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {"tls": "false", **options}.items())
    return f"supabase://{quote(key, safe='')}@127.0.0.1:{port_of(base_url)}?{query}"


@dataclass(frozen=True)
class Project:
    """Where browsers reach a project named by a ``supabase://`` URL: its base URL and key."""

    base_url: str
    key: str

    @classmethod
    def of(cls, url: str) -> Project:
        parts = urlsplit(url)
        tls = "tls=false" not in parts.query.lower()
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        port = f":{parts.port}" if parts.port else ""
        path = "/" + parts.path.strip("/") if parts.path.strip("/") else ""
        base = f"{'https' if tls else 'http'}://{host}{port}{path}"
        return cls(base, unquote(parts.username or ""))


# -- an emulator for the whole session, on a thread of its own ---------------------------


class ThreadServedSupabase(ThreadServed[SupabaseEmulator]):
    """The session's emulator on a thread of its own (see ``threaded_server``)."""

    def __init__(self, emulator: SupabaseEmulator) -> None:
        super().__init__(emulator, serve, what="the Supabase emulator")

    def adapter_url(self, **options: str) -> str:
        """The service key's URL, with the JWT secret so that ``authorize`` mints tokens."""
        options.setdefault("jwt_secret", self.emulator.jwt_secret)
        return adapter_url(self.url, self.emulator.service_key, **options)


@pytest.fixture(scope="session")
def shared_supabase() -> Iterator[ThreadServedSupabase]:
    """The session's emulator, with ``CONTRACT_POLICIES``; ``supabase_adapter`` resets it."""
    emulator = SupabaseEmulator()
    for policy in CONTRACT_POLICIES:
        emulator.allow(**policy)
    served = ThreadServedSupabase(emulator)
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
async def supabase_adapter(request: pytest.FixtureRequest) -> AsyncIterator[SupabaseAdapter]:
    """The Supabase adapter on the shared emulator (reset first), or on a live project."""
    live = live_supabase_url()
    if live is not None:
        adapter = SupabaseAdapter.from_url(live)
    else:
        shared: ThreadServedSupabase = request.getfixturevalue("shared_supabase")
        shared.call(shared.emulator.reset)
        adapter = SupabaseAdapter.from_url(shared.adapter_url())
    try:
        yield adapter
    finally:
        await adapter.aclose()


# -- private emulators, served in the test's own loop -----------------------------------------


@dataclass
class ServedSupabase:
    """An emulator of this test's own and the base URL it is served at."""

    emulator: SupabaseEmulator
    base_url: str

    @property
    def port(self) -> int:
        return port_of(self.base_url)

    def url(self, key: str | None = None, **options: str) -> str:
        """The ``supabase://`` URL for ``key`` (default: the service key)."""
        return adapter_url(self.base_url, key or self.emulator.service_key, **options)

    def adapter(self, key: str | None = None, **options: Any) -> SupabaseAdapter:
        """An adapter with ``key`` (default: the service key) and the JWT secret."""
        url = self.url(key, jwt_secret=self.emulator.jwt_secret)
        return SupabaseAdapter.from_url(url, **options)

    def clients(self, adapter: SupabaseAdapter) -> RealtimeClients:
        """Browsers with the anon key, joining private channels as ``authorize`` lets them."""
        return RealtimeClients.as_browsers(adapter, self.base_url, self.emulator.anon_key)


ServeSupabase = Callable[..., Awaitable[ServedSupabase]]


@pytest.fixture
async def serve_supabase() -> AsyncIterator[ServeSupabase]:
    """``await serve_supabase(**SupabaseEmulator options)``: a private served emulator."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: Any) -> ServedSupabase:
            emulator = SupabaseEmulator(**options)
            base_url = await stack.enter_async_context(serve(emulator))
            return ServedSupabase(emulator, base_url)

        yield start


# -- browsers: Supabase's own client --------------------------------------------------------


def channel_options(*, private: bool, presence_key: str | None = None) -> Any:
    """``{"config": ...}`` as supabase-js and realtime-py send it (presence off by default)."""
    return {
        "config": {
            "broadcast": {"ack": False, "self": False},
            "presence": {"key": presence_key or "", "enabled": presence_key is not None},
            "private": private,
        }
    }


async def close_client(client: AsyncRealtimeClient) -> None:
    """``remove_all_channels()`` (a leave for each, then the socket closes), as a browser's
    ``removeAllChannels``; then wait for every task the client started, so none is pending."""
    channels = list(client.channels.values())
    tasks = [task for task in (client._listen_task, client._heartbeat_task) if task is not None]
    await client.remove_all_channels()
    for channel in channels:
        pushes = [channel.join_push, *channel.messages_waiting_for_ack.values()]
        tasks += [push.timeout_task for push in pushes if push.timeout_task is not None]
        for push in pushes:
            push.destroy()
        channel.messages_waiting_for_ack.clear()
        if channel.rejoin_timer.timer is not None:
            tasks.append(channel.rejoin_timer.timer)
        tasks += list(channel._background_tasks)
    waiting = [task for task in tasks if task is not asyncio.current_task() and not task.done()]
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def joined(
    client: AsyncRealtimeClient, topic: str, options: Any, *, broadcasts: Callable[[Any], None]
) -> AsyncRealtimeChannel:
    """``topic`` joined on ``client``; fails with the server's reason when it refuses."""
    states: list[tuple[RealtimeSubscribeStates, Exception | None]] = []
    channel = client.channel(topic, options).on_broadcast("*", broadcasts)
    await channel.subscribe(lambda state, error: states.append((state, error)))
    assert channel.is_joined, f"Supabase refused to join {topic!r}: {states}"
    return channel


def decoded(message: Any, channel: str) -> Event:
    """A broadcast's payload (the envelope, as an object) as the ``Event`` it carries."""
    event = Event.decode(json.dumps(message["payload"]))
    assert (message["event"], event.channel) == (event.type, channel), message
    meta = message.get("meta")
    assert meta is None or meta.get("id") == event.id, message  # the UUID id, as Supabase's
    return event


@dataclass(eq=False)
class _Present:
    """One browser on a presence channel: its client, the joined channel, its lapse timer."""

    client: AsyncRealtimeClient
    channel: AsyncRealtimeChannel
    lapse: asyncio.Task[None] | None = None


TokenFor = Callable[[str, Member], "str | None"]


@dataclass(eq=False)
class RealtimeClients:
    """Browsers, as Supabase's own ``AsyncRealtimeClient`` on the project (or emulator).

    ``subscriber(channel)`` is a real client joined to ``channel`` (private when the
    adapter sends it private), each broadcast's payload decoded to an ``Event``.

    A member is one client joined to the presence channel with ``presence.key`` its id:
    ``enter`` tracks its info (``track()``), entering again tracks the new info on the same
    connection (Supabase replaces the old meta), ``leave`` untracks it (``untrack()``) and
    closes the client. Supabase presence has no ttl a client sets: a member goes when its
    connection does (the server's heartbeat check closes a silent one), so a member's client
    is closed ``ttl`` seconds after it last entered (a timer, restarted by each enter).

    Supabase shows a track to everyone else asynchronously (each observer's own socket gets
    a ``presence_diff``; the adapter reads the state its socket keeps), so ``enter`` and
    ``leave`` return once the adapter's ``presence()`` shows the change, bounded by
    ``PATIENCE``: that is when a Supabase track is done for anyone else.

    Tokens: ``apikey`` opens every socket (the anon key, as a browser's); ``token_for``
    gives the access token a join on a channel carries, for a user (None: the apikey).
    """

    adapter: SupabaseAdapter
    base_url: str
    apikey: str
    token_for: TokenFor
    _present: dict[tuple[str, str], _Present] = field(default_factory=dict)
    _lapses: set[asyncio.Task[None]] = field(default_factory=set)
    _open: set[AsyncRealtimeClient] = field(default_factory=set)

    @classmethod
    def as_browsers(cls, adapter: SupabaseAdapter, base_url: str, anon_key: str) -> Self:
        """The anon key, and on private channels the token ``adapter.authorize`` gives."""

        def token_for(channel: str, user: Member) -> str | None:
            if not adapter.is_private(channel):
                return None
            return str(adapter.authorize(channel, user=user)["access_token"])

        return cls(adapter, base_url, anon_key, token_for)

    @classmethod
    def with_key(cls, adapter: SupabaseAdapter, project: Project) -> Self:
        """The project's own key for everything (a live project: no policies of ours there)."""
        return cls(adapter, project.base_url, project.key, lambda channel, user: None)

    async def client(self, access_token: str | None = None) -> AsyncRealtimeClient:
        """A client of the project, closed by ``aclose`` unless closed before."""
        client = AsyncRealtimeClient(f"{self.base_url}/realtime/v1", token=self.apikey)
        if access_token is not None:
            await client.set_auth(access_token)  # as supabase.realtime.setAuth(token)
        self._open.add(client)
        return client

    async def close(self, client: AsyncRealtimeClient) -> None:
        self._open.discard(client)
        await close_client(client)

    @contextlib.asynccontextmanager
    async def subscriber(
        self, channel: str, *, user: Member | None = None
    ) -> AsyncIterator[Callable[[], Awaitable[Event]]]:
        token = self.token_for(channel, user or Member(f"subscriber-{uuid.uuid4().hex[:8]}"))
        client = await self.client(token)
        received: asyncio.Queue[Any] = asyncio.Queue()
        try:
            options = channel_options(private=self.adapter.is_private(channel))
            await joined(client, channel, options, broadcasts=received.put_nowait)

            async def next_event() -> Event:
                return decoded(await asyncio.wait_for(received.get(), PATIENCE), channel)

            yield next_event
        finally:
            await self.close(client)

    async def enter(self, channel: str, member: Member, ttl: float = 60.0) -> None:
        key = (channel, member.id)
        present = self._present.get(key)
        if present is None:
            client = await self.client(self.token_for(channel, member))
            private = self.adapter.is_private(channel)
            options = channel_options(private=private, presence_key=member.id)
            joined_channel = await joined(client, channel, options, broadcasts=lambda _: None)
            present = self._present[key] = _Present(client, joined_channel)
        elif present.lapse is not None:
            present.lapse.cancel()
        await present.channel.track(dict(member.info))
        await self.seen(channel, lambda members: Member(member.id, member.info) in members)
        present.lapse = asyncio.create_task(self._lapse(key, present, ttl))
        self._lapses.add(present.lapse)
        present.lapse.add_done_callback(self._lapses.discard)

    async def leave(self, channel: str, member_id: str) -> None:
        present = self._present.pop((channel, member_id), None)
        if present is None:
            return
        if present.lapse is not None:
            present.lapse.cancel()
        await present.channel.untrack()
        await self.seen(channel, lambda members: member_id not in [m.id for m in members])
        await self.close(present.client)

    async def seen(self, channel: str, done: Callable[[list[Member]], bool]) -> list[Member]:
        """Wait until the adapter's ``presence(channel)`` satisfies ``done``."""
        deadline = time.monotonic() + PATIENCE
        while True:
            members = await self.adapter.presence(channel)
            if done(members):
                return members
            if time.monotonic() > deadline:
                pytest.fail(f"the adapter never saw the presence change on {channel}: {members}")
            await asyncio.sleep(0.01)

    async def _lapse(self, key: tuple[str, str], present: _Present, ttl: float) -> None:
        await asyncio.sleep(ttl)  # no heartbeat: the connection ends, and the member with it
        if self._present.get(key) is present:
            del self._present[key]
        await self.close(present.client)

    async def aclose(self) -> None:
        present, self._present = list(self._present.values()), {}
        for member in present:  # still present: their lapse has not begun
            if member.lapse is not None:
                member.lapse.cancel()
        await asyncio.gather(*self._lapses, return_exceptions=True)  # those closing finish
        for client in list(self._open):
            await self.close(client)
