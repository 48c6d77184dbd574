"""Supabase Realtime's Phoenix WebSocket, through the ``realtime`` SDK: presence and probes.

Supabase shows presence only to a client joined over its WebSocket, so the
adapter keeps one SDK client, connected on first use, with each channel
joined once and kept (the SDK keeps its presence in sync and rejoins after a
reconnect). ``aclose`` waits for every task the SDK started, so nothing is
left pending. Split from ``supabase.py`` so that module reads as REST
publishing and this one as the socket.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationFailed,
    ConfigurationError,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from . import supabase_auth
from .base import Member

if TYPE_CHECKING:
    from realtime import (
        AsyncRealtimeChannel,
        AsyncRealtimeClient,
        BroadcastPayload,
        RealtimeSubscribeStates,
    )

__all__ = ["PROBE_EVENT", "Socket", "members_of", "scrub"]

_HIDDEN_META = frozenset({"presence_ref", "phx_ref", "phx_ref_prev"})
_INSTALL = "pip install 'realtime-bridge[supabase]'"
_DETAIL_LIMIT = 300
#: The event name of ``verify_private_delivery``'s probe broadcast.
PROBE_EVENT = "realtime-bridge.probe"


def scrub(text: str, hidden: Sequence[str]) -> str:
    """``text`` without any of ``hidden`` (the key), on one line, clipped."""
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT] + "..."


def members_of(state: Mapping[str, Sequence[Mapping[str, object]]]) -> list[Member]:
    """One member per presence key, with what its first connection tracked."""
    members = []
    for key, metas in state.items():
        if metas:
            info = {name: value for name, value in metas[0].items() if name not in _HIDDEN_META}
            members.append(Member(id=key, info=info))
    return sorted(members, key=lambda member: member.id)


# -- the WebSocket: one pooled SDK client, one joined channel per topic -----------------------


def _options(private: bool, *, presence: bool) -> Any:
    """The SDK's channel options (a TypedDict; built here so the SDK is imported lazily)."""
    return {
        "config": {
            "broadcast": {"ack": False, "self": False},
            "presence": {"key": "", "enabled": presence},
            "private": private,
        }
    }


def _pending(channel: AsyncRealtimeChannel) -> list[asyncio.Task[Any]]:
    """Stop a channel's timers and pushes without telling the server; return their tasks."""
    from realtime.types import ChannelStates

    pushes = [channel.join_push, *channel.messages_waiting_for_ack.values()]
    tasks = [push.timeout_task for push in pushes]
    tasks.append(channel.rejoin_timer.timer)
    channel.rejoin_timer.reset()
    for push in pushes:
        push.destroy()
    channel.messages_waiting_for_ack.clear()
    channel.state = ChannelStates.CLOSED
    return [task for task in tasks if task is not None]


@dataclass(eq=False, slots=True)
class _Joined:
    """A joined channel, and whether it is joined now (the SDK reports every rejoin and error)."""

    channel: AsyncRealtimeChannel
    ready: asyncio.Event
    reasons: list[str]

    def note(self, state: RealtimeSubscribeStates, error: Exception | None) -> None:
        if state.value == "SUBSCRIBED":
            self.ready.set()
        else:
            self.ready.clear()
            self.reasons.append(str(error) if error is not None else str(state.value))


class Socket:
    """Supabase Realtime's Phoenix WebSocket through the ``realtime`` SDK.

    One client per adapter, connected on first use; channels joined once per
    topic and kept (the SDK keeps their presence in sync and rejoins them after
    a reconnect), at most ``max_channels``, the least recently used left first.
    """

    def __init__(self, *, url: str, key: str, timeout: float, adapter: str, max_channels: int):
        self._url, self._key, self._timeout = url, key, timeout
        self._adapter = adapter
        self._max_channels = max_channels
        self._client: AsyncRealtimeClient | None = None
        self._channels: dict[str, _Joined] = {}
        self._lock = asyncio.Lock()

    def new_client(self, access_token: str | None) -> AsyncRealtimeClient:
        """A client on the project's key; joins carry ``access_token`` (a JWT) if any."""
        try:
            from realtime import AsyncRealtimeClient
        except ImportError as exc:
            raise ConfigurationError(
                f"Supabase presence uses the realtime SDK ({exc.name}); install it: {_INSTALL}"
            ) from exc
        client = AsyncRealtimeClient(self._url, self._key, timeout=max(1, math.ceil(self._timeout)))
        client.access_token = access_token
        return client

    async def connect(self, client: AsyncRealtimeClient) -> None:
        """Connect once, failing fast with the real cause (reconnects stay automatic after)."""
        if client.is_connected:
            return
        client.auto_reconnect = False
        try:
            async with asyncio.timeout(self._timeout):
                await client.connect()
        except TimeoutError as exc:
            raise VendorUnavailable(
                f"the Realtime WebSocket did not open within {self._timeout:g}s",
                adapter=self._adapter,
            ) from exc
        except Exception as exc:  # whatever websockets raised: mapped once, here
            raise self._connect_error(exc) from exc
        finally:
            client.auto_reconnect = True

    def _connect_error(self, exc: Exception) -> RealtimeBridgeError:
        from websockets.exceptions import InvalidStatus

        status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
        text = scrub(f"{type(exc).__name__}: {exc}", [self._key])
        message = f"the Realtime WebSocket failed to open: {text}"
        if status in (401, 403):
            return AuthenticationFailed(f"{message} (check the key)", adapter=self._adapter)
        if status == 429:
            return RateLimited(message, adapter=self._adapter)
        return VendorUnavailable(message, adapter=self._adapter)

    async def join(
        self,
        client: AsyncRealtimeClient,
        topic: str,
        *,
        private: bool,
        presence: bool,
        on_broadcast: Callable[[BroadcastPayload], None] | None = None,
    ) -> _Joined:
        """Join ``topic``; with ``presence``, return once the first presence state arrived."""
        channel = client.channel(topic, _options(private, presence=presence))
        joined = _Joined(channel, asyncio.Event(), [])
        synced = asyncio.Event()
        if presence:
            channel.on_presence_sync(synced.set)
        else:
            synced.set()
        if on_broadcast is not None:
            channel.on_broadcast(PROBE_EVENT, on_broadcast)
        try:
            async with asyncio.timeout(self._timeout):
                await channel.subscribe(joined.note)
                if not channel.is_joined:
                    reason = joined.reasons[-1] if joined.reasons else "no answer"
                    raise self._join_error(topic, reason)
                await synced.wait()
        except BaseException as exc:
            await _settle(_pending(channel))
            client.channels.pop(channel.topic, None)
            if isinstance(exc, TimeoutError):
                raise VendorUnavailable(
                    f"joining {topic!r} over the WebSocket took over {self._timeout:g}s",
                    adapter=self._adapter,
                ) from exc
            raise
        return joined

    def _join_error(self, topic: str, reason: str) -> RealtimeBridgeError:
        text = scrub(reason, [self._key])
        message = f"Realtime refused to join {topic!r}: {text}"
        if "RateLimitReached" in text:
            return RateLimited(message, adapter=self._adapter)
        if "nauthorized" in text or "permission" in text:
            hint = "the key's role must pass RLS on realtime.messages (service_role bypasses it)"
            return AuthenticationFailed(f"{message} ({hint})", adapter=self._adapter)
        return VendorUnavailable(message, adapter=self._adapter)

    async def presence_channel(self, topic: str, *, private: bool) -> AsyncRealtimeChannel:
        """The joined channel of ``topic``, joining (and connecting) on first use."""
        async with self._lock:
            if self._client is None:
                token = self._key if supabase_auth.is_jwt(self._key) else None
                self._client = self.new_client(token)
            client = self._client
            await self.connect(client)
            joined = self._channels.pop(topic, None)
            if joined is None or joined.channel.is_closed or joined.channel.is_leaving:
                await self._make_room(client)  # a new channel, or the server closed the old one
                joined = await self.join(client, topic, private=private, presence=True)
            self._channels[topic] = joined  # last: the most recently used
        await self._until_joined(joined)
        return joined.channel

    async def _make_room(self, client: AsyncRealtimeClient) -> None:
        """Leave the least recently used channel when the socket holds ``max_channels``."""
        from realtime import Message

        while len(self._channels) >= self._max_channels:
            oldest = self._channels.pop(next(iter(self._channels))).channel
            await _settle(_pending(oldest))
            client.channels.pop(oldest.topic, None)
            await client.send(Message(topic=oldest.topic, event="phx_leave", payload={}))

    async def _until_joined(self, joined: _Joined) -> None:
        """Wait while the SDK rejoins a channel after a reconnect."""
        try:
            async with asyncio.timeout(self._timeout):
                await joined.ready.wait()
        except TimeoutError as exc:
            raise VendorUnavailable(
                f"channel {joined.channel.topic!r} did not rejoin within {self._timeout:g}s",
                adapter=self._adapter,
            ) from exc

    async def close_client(self, client: AsyncRealtimeClient) -> None:
        """Close ``client`` and wait for every task it or its channels started."""
        tasks = [task for channel in client.channels.values() for task in _pending(channel)]
        tasks += [task for task in (client._listen_task, client._heartbeat_task) if task]
        client.channels.clear()
        await client.close()  # cancels the reader and the heartbeat, without waiting for them
        await _settle(tasks)

    async def aclose(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            self._channels.clear()
            if client is not None:
                await self.close_client(client)


async def _settle(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them, so none is left pending."""
    current = asyncio.current_task()
    waiting = [task for task in tasks if task is not current and not task.done()]
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
