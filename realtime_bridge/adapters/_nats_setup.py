"""Reaching NATS, and setting up what the adapter keeps there: its stream and presence bucket.

Connecting fails at once on the first error (a refused connection, wrong
credentials) instead of nats-py's default of trying again forever, so a
misconfigured or unreachable server is one clear error; once connected,
nats-py reconnects by itself in the background. While it is disconnected,
publishing fails at once instead of being buffered (``pending_size=0``): the
Bridge backs off or fails over, and nothing buffered goes out later, out of turn.

The stream and bucket are created on first use. An existing stream is
brought in line with the URL (the prefix's subjects added, the per-channel
cap and duplicate window set); settings JetStream refuses are a
``ConfigurationError``, since retrying them cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from ..errors import ConfigurationError
from ._nats_errors import mapped_errors
from ._nats_subjects import NatsNames

__all__ = ["StreamPlan", "connect", "prepare"]

#: JetStream errors about a stream's settings that it answers with code 500, not 400:
#: 10074 "replicas > 1 not supported in non-clustered mode".
_CONFIG_ERR_CODES = frozenset({10074})

Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What the URL says the stream and the bucket should be."""

    names: NatsNames
    history: int
    dedupe_window: float
    presence_ttl: float
    replicas: int


async def connect(
    servers: str,
    *,
    label: str,
    within: float,
    on_error: ErrorCallback,
    on_disconnect: Callback,
    on_reconnect: Callback,
) -> Client:
    """A connection to ``servers``, or the library's error for the first thing that failed.

    ``on_error`` hears nats-py's errors after the connection is made (before,
    the first one ends the attempt).
    """
    nc = Client()
    first_error: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    async def errors(exc: Exception) -> None:
        if not first_error.done():
            first_error.set_result(exc)
        elif nc.is_connected or nc.is_reconnecting:
            await on_error(exc)

    connecting = asyncio.ensure_future(
        nc.connect(
            servers,
            name="realtime-bridge",
            connect_timeout=math.ceil(within),
            reconnect_time_wait=1,
            max_reconnect_attempts=-1,
            pending_size=0,
            error_cb=errors,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    )
    racing: set[asyncio.Future[Any]] = {connecting, first_error}
    done, _ = await asyncio.wait(racing, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    if connecting in done and connecting.exception() is None:
        first_error.cancel()
        return nc
    failure = _failure(connecting, first_error)
    connecting.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await connecting
    with contextlib.suppress(Exception):
        await nc.close()
    with mapped_errors(label, "connecting"):
        raise failure or TimeoutError(f"no answer within {within:g}s")
    raise AssertionError("unreachable")  # pragma: no cover


def _failure(
    connecting: asyncio.Future[None], first_error: asyncio.Future[Exception]
) -> BaseException | None:
    """Why connecting failed: the first error nats-py reported, or the one connect raised."""
    if first_error.done() and not first_error.cancelled():
        return first_error.result()
    if connecting.done() and not connecting.cancelled():
        return connecting.exception()
    return None


async def prepare(js: JetStreamContext, plan: StreamPlan, label: str) -> KeyValue:
    """Create or align the stream and the presence bucket; the bucket, ready for use."""
    names = plan.names
    with mapped_errors(label, f"preparing stream {names.stream}"):
        try:
            await _ensure_stream(js, plan)
            return await _ensure_bucket(js, plan)
        except nats.js.errors.APIError as exc:
            if not _misconfigured(exc):
                raise
            raise ConfigurationError(
                f"{label}: JetStream refused stream {names.stream!r} or bucket "
                f"{names.bucket!r} as configured: {exc.description}"
            ) from exc


def _misconfigured(exc: nats.js.errors.APIError) -> bool:
    """Whether JetStream refused the stream's or bucket's settings (retrying cannot help)."""
    return isinstance(exc, nats.js.errors.BadRequestError) or exc.err_code in _CONFIG_ERR_CODES


async def _ensure_stream(js: JetStreamContext, plan: StreamPlan) -> None:
    names = plan.names
    try:
        info = await js.stream_info(names.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=names.stream,
                description="realtime_bridge events, one subject per channel",
                subjects=[names.subjects],
                max_msgs_per_subject=plan.history,
                duplicate_window=plan.dedupe_window,
                discard=DiscardPolicy.OLD,
                storage=StorageType.FILE,
                num_replicas=plan.replicas,
            )
        )
        return
    config = info.config
    changes: dict[str, Any] = {}
    if names.subjects not in (config.subjects or []):
        changes["subjects"] = [*(config.subjects or []), names.subjects]
    if config.max_msgs_per_subject != plan.history:
        changes["max_msgs_per_subject"] = plan.history
    if not math.isclose(config.duplicate_window or 0, plan.dedupe_window):
        changes["duplicate_window"] = plan.dedupe_window
    if changes:
        await js.update_stream(config.evolve(**changes))


async def _ensure_bucket(js: JetStreamContext, plan: StreamPlan) -> KeyValue:
    names = plan.names
    try:
        info = await js.stream_info(names.presence_stream)
    except nats.js.errors.NotFoundError:
        config = KeyValueConfig(
            bucket=names.bucket,
            description="realtime_bridge presence members",
            history=1,
            ttl=plan.presence_ttl,
            replicas=plan.replicas,
        )
        return await js.create_key_value(config)
    if not math.isclose(info.config.max_age or 0, plan.presence_ttl):
        await js.update_stream(info.config.evolve(max_age=plan.presence_ttl))
    return await js.key_value(names.bucket)
