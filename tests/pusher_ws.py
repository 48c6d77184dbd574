"""A small Pusher-protocol WebSocket client, so tests can watch what subscribers receive.

It plays the browser side of Pusher (protocol 7) against a real server (soketi):
connect and read the ``socket_id``; subscribe to public, private and presence
channels; sign in; send client events; answer ``pusher:ping``. A background task
reads every frame: replies the client waits for (subscription results, sign-in)
resolve futures, app events go to one queue, other protocol messages
(``pusher:error``, ``pusher_internal:member_added``, ``pusher:cache_miss``…) to
another. Every wait has a timeout, so a missing message fails the test instead
of hanging it.
"""

# Each wait takes its own ``timeout=`` (``await ws.next_event(timeout=5)``): one short
# line per wait in a test, rather than an ``asyncio.timeout`` block around each.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from soketi_server import SoketiServer

__all__ = ["PusherError", "PusherSocket", "SocketClosed", "SubscriptionError"]

Message = dict[str, Any]
_CLOSED: Message = {"event": "__closed__"}  # put on both queues when the connection ends


class PusherError(Exception):
    """The server sent ``pusher:error`` (or closed the connection) instead of what we awaited."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data


class SubscriptionError(PusherError):
    """``pusher:subscription_error``: data is ``{type, error, status}`` (soketi: an object)."""


class SocketClosed(PusherError):
    """The connection ended while a message was awaited."""


def _decode(data: Any) -> Any:
    """Pusher sends ``data`` as a JSON string; give it back decoded when it is JSON."""
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


class PusherSocket:
    """One Pusher connection; open it with ``async with PusherSocket.connect(server) as ws``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.socket_id = ""
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._protocol: asyncio.Queue[Message] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._public: list[str] = []  # resubscribed by reconnect(); auth is per socket_id
        self._close_code: int | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, server: SoketiServer | str, *, timeout: float = 10.0
    ) -> AsyncIterator[PusherSocket]:
        """Connect to a server (or a ``ws://`` URL), closing the connection on exit."""
        sock = cls(server if isinstance(server, str) else server.ws_url)
        await sock._open(timeout)
        try:
            yield sock
        finally:
            await sock.close()

    async def _open(self, timeout: float) -> None:
        self._events, self._protocol, self._waiting = asyncio.Queue(), asyncio.Queue(), {}
        self._close_code = None
        ws = await connect(
            self.url, open_timeout=timeout, close_timeout=2, proxy=None, max_size=None
        )
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if first.get("event") != "pusher:connection_established":
                raise PusherError(first.get("data", first))
        except BaseException:
            await ws.close()
            raise
        self._ws, self.socket_id = ws, _decode(first["data"])["socket_id"]
        self._reader = asyncio.create_task(self._read(ws), name=f"pusher-ws {self.url}")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                reply = self._dispatch(json.loads(frame))
                if reply is not None:
                    await ws.send(json.dumps(reply))
        except ConnectionClosed:
            pass
        finally:
            self._close_code = ws.close_code
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(SocketClosed(f"closed (code {ws.close_code})"))
            self._waiting.clear()
            self._events.put_nowait(_CLOSED)
            self._protocol.put_nowait(_CLOSED)

    def _dispatch(self, message: Message) -> Message | None:
        """File one incoming message; return the reply to send, if it needs one."""
        event = str(message.get("event", ""))
        channel = message.get("channel")
        if event == "pusher:ping":
            return {"event": "pusher:pong", "data": {}}
        key = {
            "pusher_internal:subscription_succeeded": f"subscribe:{channel}",
            "pusher:subscription_error": f"subscribe:{channel}",
            "pusher:signin_success": "signin",
            "pusher:pong": "pong",
        }.get(event)
        if key is None and event == "pusher:error" and "signin" in self._waiting:
            key = "signin"
        future = self._waiting.pop(key, None) if key else None
        if future is not None and not future.done():
            future.set_result(message)
        else:
            internal = event.startswith(("pusher:", "pusher_internal:"))
            queue = self._protocol if internal else self._events
            queue.put_nowait({**message, "data": _decode(message.get("data"))})
        return None

    async def _send(self, message: Message) -> None:
        if self._ws is None:
            raise SocketClosed("not connected")
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps(message))

    async def _request(self, key: str, message: Message, timeout: float) -> Message:
        """Send ``message`` and wait for the reply the reader files under ``key``."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        await self._send(message)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(key, None)

    async def subscribe(
        self,
        channel: str,
        auth: str | None = None,
        channel_data: str | None = None,
        *,
        timeout: float = 5.0,
    ) -> Any:
        """Subscribe and wait for the server to confirm; return the confirmation's data.

        For a presence channel that is ``{"presence": {"ids", "hash", "count"}}``; for
        others ``None``. Raises ``SubscriptionError`` if the server refuses.
        """
        data: dict[str, str] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        reply = await self._request(
            f"subscribe:{channel}", {"event": "pusher:subscribe", "data": data}, timeout
        )
        if reply["event"] == "pusher:subscription_error":
            raise SubscriptionError(reply.get("data"))
        if auth is None and channel not in self._public:
            self._public.append(channel)
        return _decode(reply.get("data"))

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe; Pusher sends no confirmation, so this does not wait for one."""
        if channel in self._public:
            self._public.remove(channel)
        await self._send({"event": "pusher:unsubscribe", "data": {"channel": channel}})

    async def signin(self, auth: str, user_data: str, *, timeout: float = 5.0) -> Any:
        """User authentication (``pusher:signin``); return the success data, else raise."""
        reply = await self._request(
            "signin",
            {"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}},
            timeout,
        )
        if reply["event"] != "pusher:signin_success":
            raise PusherError(reply.get("data"))
        return _decode(reply.get("data"))

    async def ping(self, *, timeout: float = 5.0) -> None:
        """A Pusher-level ping; returns when the server's ``pusher:pong`` arrives."""
        await self._request("pong", {"event": "pusher:ping", "data": {}}, timeout)

    async def trigger_client_event(self, channel: str, event: str, data: Any) -> None:
        """Send a ``client-*`` event to the channel's other subscribers (not back to us)."""
        await self._send({"event": event, "channel": channel, "data": data})

    async def next_event(self, timeout: float = 5.0) -> Message:
        """The next app event: ``{"event", "channel", "data" (decoded), ...}``."""
        message = await asyncio.wait_for(self._events.get(), timeout)
        if message is _CLOSED:
            self._events.put_nowait(_CLOSED)  # every later call sees it too
            raise SocketClosed(f"connection closed (code {self.close_code})")
        return message

    async def events(self, n: int, timeout: float = 5.0) -> list[Message]:
        """The next ``n`` app events, all within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return [await self.next_event(timeout) for _ in range(n)]

    async def next_protocol_message(self, timeout: float = 5.0) -> Message:
        """The next protocol message nobody awaited (errors, member_added…), data decoded."""
        message = await asyncio.wait_for(self._protocol.get(), timeout)
        if message is _CLOSED:
            self._protocol.put_nowait(_CLOSED)
            raise SocketClosed(f"connection closed (code {self.close_code})")
        return message

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code of the last connection, once it has ended."""
        return self._close_code

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Wait until the server ends the connection (e.g. it was killed); return the code."""
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def reconnect(self, *, timeout: float = 20.0) -> str:
        """Open a new connection (retrying until ``timeout``, as a Pusher client would).

        Public channels are subscribed again; private and presence ones are not, since
        their auth was for the old ``socket_id``. Events queued but not read are dropped.
        Returns the new ``socket_id``.
        """
        await self.close()
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self._open(min(timeout, 5.0))
                    break
                except (OSError, ConnectionClosed, PusherError, TimeoutError):
                    await asyncio.sleep(0.1)  # the server is not back yet: poll again
        for channel in list(self._public):
            await self.subscribe(channel)
        return self.socket_id

    async def close(self) -> None:
        ws, reader, self._ws, self._reader = self._ws, self._reader, None, None
        if ws is not None:
            await ws.close()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 5)
        # The queues are kept; self._ws is None so sends fail with SocketClosed.
