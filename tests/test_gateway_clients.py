"""Clients of the gateway for its tests, and tests of those clients' own parsing.

The other ``test_gateway*`` modules import these: an SSE reader over httpx
streaming (the event stream parsed here, line by line, as the WHATWG spec
says), a raw-socket SSE reader with a tiny receive buffer (a client that can
stop reading), a WebSocket client over ``websockets``, and ``GatewayEnv``: a
Redis prefix, the adapter that publishes into it, and tokens for it.

Waiting is always for a condition, with ``PATIENCE`` as the upper bound that
only a broken gateway reaches.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import websockets
from pydantic import SecretStr

from realtime_bridge import Event, Member
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.gateway import GatewaySettings

__all__ = [
    "PATIENCE",
    "SECRET",
    "GatewayEnv",
    "RawSse",
    "SseEvent",
    "SseStream",
    "WsClient",
    "eventually",
    "open_sse",
    "open_ws",
    "parse_sse",
    "request_sse",
    "sse_client",
]

#: Upper bound on any wait for something the gateway should do at once.
PATIENCE = 10.0
SECRET = "gateway-test-secret-0123456789abcdefghij"

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str) -> T:
    """Poll ``probe`` until ``check`` holds (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last value: {value!r}")
        await asyncio.sleep(0.02)


# -- the environment: Redis keys, a publisher, tokens ------------------------------------


@dataclass
class GatewayEnv:
    """One test's Redis prefix, the adapter publishing into it, and tokens for its gateway."""

    redis_url: str
    publisher: RedisAdapter
    published: list[Event] = field(default_factory=list)

    @classmethod
    def create(cls, redis_server: str, prefix: str, **options: str) -> GatewayEnv:
        query = urlencode({"prefix": prefix, "gateway_secret": SECRET, **options})
        url = f"{redis_server}?{query}"
        return cls(url, RedisAdapter.from_url(url))

    def settings(self, **overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {"redis_url": SecretStr(self.redis_url), "port": 0}
        return GatewaySettings(**{**values, **overrides})

    def token(self, *channels: str, user: Member | None = None) -> str:
        grant = self.publisher.authorize_channels(channels, user=user)
        return str(grant["token"])

    async def publish(self, channel: str, count: int = 1, **data: Any) -> list[Event]:
        """Publish ``count`` events on ``channel``, numbered on from those already sent."""
        events = []
        for _ in range(count):
            n = len(self.published)
            events.append(Event(channel=channel, type="test.tick", data={"n": n, **data}))
            self.published.append(events[-1])
        await self.publisher.publish(events)
        return events

    async def aclose(self) -> None:
        await self.publisher.aclose()


# -- SSE ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One dispatched SSE event: its name (``message`` when unnamed), data and last id."""

    name: str
    data: str
    id: str

    def json(self) -> Any:
        return json.loads(self.data)

    def envelope(self) -> Event:
        assert self.name == "message", self
        return Event.decode(self.data)


class SseParser:
    """The event-stream interpretation algorithm: lines in, events out."""

    def __init__(self) -> None:
        self.last_id = ""
        self.retry: int | None = None
        self._name = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, name = "\n".join(self._data), self._name or "message"
        had_data = bool(self._data)
        self._data, self._name = [], ""
        return SseEvent(name, data, self.last_id) if had_data else None


def parse_sse(text: str) -> list[SseEvent]:
    """Every complete event in ``text``."""
    parser = SseParser()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [event for line in lines if (event := parser.feed(line)) is not None]


class SseStream:
    """An open SSE response, read one event at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SseParser()
        self._lines = response.aiter_lines()
        #: Events before ``ready`` (what the stream caught up on), and ``ready`` itself.
        self.caught_up: list[SseEvent] = []
        self.ready: SseEvent | None = None

    @property
    def last_id(self) -> str:
        return self.parser.last_id

    async def next(self) -> SseEvent | None:
        """The next event of any name, or None when the stream ends."""
        async with asyncio.timeout(PATIENCE):
            async for line in self._lines:
                event = self.parser.feed(line)
                if event is not None:
                    return event
        return None

    async def until(self, name: str) -> SseEvent:
        """Skip to the next event called ``name`` (failing if the stream ends first)."""
        while True:
            event = await self.next()
            assert event is not None, f"the stream ended before a {name!r} event"
            if event.name == name:
                return event

    async def envelopes(self, count: int) -> list[Event]:
        """The next ``count`` event envelopes, skipping heartbeats (failing on anything else)."""
        received: list[Event] = []
        while len(received) < count:
            event = await self.next()
            assert event is not None, f"the stream ended after {len(received)} of {count}"
            if event.name == "heartbeat":
                continue
            received.append(event.envelope())
        return received

    async def rest(self) -> list[SseEvent]:
        """Every event until the stream ends."""
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events


async def request_sse(
    client: httpx.AsyncClient,
    base_url: str,
    token: str | None,
    channels: Sequence[str] = (),
    *,
    last_event_id: str | None = None,
    ready: bool = True,
) -> SseStream:
    """``GET /sse`` streamed (the caller closes ``stream.response``); by default read to ``ready``.

    Events sent before ``ready`` (the catch-up) are kept in ``caught_up``.
    """
    params: list[tuple[str, str]] = [("channel", channel) for channel in channels]
    if token is not None:
        params.append(("token", token))
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    request = client.build_request("GET", f"{base_url}/sse", params=params, headers=headers)
    stream = SseStream(await client.send(request, stream=True))
    if ready:
        assert stream.response.status_code == 200, (await stream.response.aread()).decode()
        while (event := await stream.next()) is not None and event.name != "ready":
            stream.caught_up.append(event)
        assert event is not None, "the stream ended before ready"
        stream.ready = event
    return stream


def sse_client() -> httpx.AsyncClient:
    """An httpx client that waits on a quiet stream as long as it takes."""
    return httpx.AsyncClient(timeout=httpx.Timeout(PATIENCE, read=None))


@asynccontextmanager
async def open_sse(
    base_url: str,
    token: str | None,
    channels: Sequence[str] = (),
    *,
    last_event_id: str | None = None,
    ready: bool = True,
) -> AsyncIterator[SseStream]:
    """``request_sse`` on a client of its own, closed with the block."""
    async with sse_client() as client:
        stream = await request_sse(
            client, base_url, token, channels, last_event_id=last_event_id, ready=ready
        )
        try:
            yield stream
        finally:
            await stream.response.aclose()


class RawSse:
    """An SSE client on a bare socket with a tiny receive buffer: it can stop reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = SseParser()
        self._pending = b""

    @classmethod
    async def connect(cls, base_url: str, token: str, channel: str) -> RawSse:
        parts = urlsplit(base_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        query = urlencode({"token": token, "channel": channel})
        writer.write(
            f"GET /sse?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        return cls(reader, writer)

    async def read_until(self, name: str) -> list[SseEvent]:
        """Read (the headers, then events) up to and including the event called ``name``."""
        events: list[SseEvent] = []
        async with asyncio.timeout(PATIENCE):
            while not events or events[-1].name != name:
                line = await self._line()
                assert line is not None, f"the stream ended before {name!r}"
                event = self.parser.feed(line)
                if event is not None:
                    events.append(event)
        return events

    async def read_to_end(self) -> list[SseEvent]:
        events: list[SseEvent] = []
        async with asyncio.timeout(PATIENCE * 3):
            while (line := await self._line()) is not None:
                event = self.parser.feed(line)
                if event is not None:
                    events.append(event)
        return events

    async def _line(self) -> str | None:
        """The next line of the body; the chunked framing is removed as it goes."""
        while b"\n" not in self._pending:
            more = await self._body_chunk()
            if more is None:
                return None
            self._pending += more
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode().rstrip("\r")

    _headers_read = False

    async def _body_chunk(self) -> bytes | None:
        if not self._headers_read:
            head = await self.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"transfer-encoding: chunked" in head.lower(), head
            self._headers_read = True
        size_line = await self.reader.readline()
        if not size_line:
            return None
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            return None
        chunk = await self.reader.readexactly(size + 2)
        return chunk[:-2]

    async def aclose(self) -> None:
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()


# -- WebSocket ----------------------------------------------------------------------------


class WsClient:
    """A WebSocket client speaking the gateway's JSON messages."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.hello: dict[str, Any] = {}

    async def send(self, **message: Any) -> None:
        await self.connection.send(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(PATIENCE):
            raw = await self.connection.recv()
        message = json.loads(raw)
        assert isinstance(message, dict)
        return message

    async def until(self, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The next message of type ``kind``, and those before it (heartbeats left out)."""
        before = []
        while (message := await self.recv())["type"] != kind:
            if message["type"] != "heartbeat":
                before.append(message)
        return message, before

    async def subscribe(self, channel: str, **options: Any) -> list[dict[str, Any]]:
        """Subscribe; returns the caught-up messages (events, resets) sent before ``subscribed``."""
        await self.send(type="subscribe", channel=channel, **options)
        subscribed, before = await self.until("subscribed")
        self.subscribed = subscribed
        return before

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` ``event`` messages (heartbeats skipped, anything else fails)."""
        received = []
        while len(received) < count:
            message = await self.recv()
            if message["type"] == "heartbeat":
                continue
            assert message["type"] == "event", message
            received.append(message)
        return received

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the gateway to close; its close code and reason."""
        async with asyncio.timeout(PATIENCE):
            await self.connection.wait_closed()
        received = self.connection.protocol.close_rcvd
        return (received.code, received.reason) if received else (None, None)


@asynccontextmanager
async def open_ws(
    base_url: str, token: str | None, *, welcome: bool = True, **options: Any
) -> AsyncIterator[WsClient]:
    """A WebSocket on ``/ws``; by default after the ``connected`` message.

    ``options`` go to ``websockets.connect`` (``max_queue=1``: a client that stops reading).
    """
    url = base_url.replace("http://", "ws://") + "/ws"
    if token is not None:
        url += "?" + urlencode({"token": token})
    options = {"open_timeout": PATIENCE, "close_timeout": 2, **options}
    async with websockets.connect(url, **options) as connection:
        client = WsClient(connection)
        if welcome:
            client.hello = await client.recv()
            assert client.hello["type"] == "connected", client.hello
        yield client


# -- the helpers' own tests ---------------------------------------------------------------


def test_sse_parser_follows_the_spec() -> None:
    text = (
        "retry: 1500\n\n"
        ": a comment\n"
        "id: a:1-0\n"
        "data: one\n\n"
        "event: reset\n"
        'data: {"x": 1}\n'
        "data: second line\r\n\r\n"
        "event: empty\n\n"
        "data:no-space\n\n"
    )
    events = parse_sse(text)
    assert [(e.name, e.data, e.id) for e in events] == [
        ("message", "one", "a:1-0"),
        ("reset", '{"x": 1}\nsecond line', "a:1-0"),
        ("message", "no-space", "a:1-0"),
    ]


def test_sse_parser_keeps_the_id_of_an_event_without_data() -> None:
    parser = SseParser()
    for line in ["id: c:5-0", ""]:
        assert parser.feed(line) is None
    assert parser.last_id == "c:5-0"
