"""The gateway benchmark's peer: the SSE endpoint a Python team would write without us.

sse-starlette's ``EventSourceResponse`` streaming what encode/broadcaster
receives from Redis pub/sub, the way both projects' READMEs show it, with
their defaults (sse-starlette pings every 15 s and ends lines with CRLF).
One ``Broadcast`` per process, so one Redis subscription per channel per
process, as in our gateway. The messages are the event envelopes the
benchmark publishes, each sent as one ``data:`` line, as our gateway sends
them.

One repair, without which the peer delivers nothing at all: broadcaster
0.3.1's Redis backend wakes its listener *before* its first SUBSCRIBE is
recorded. With redis-py 8 that SUBSCRIBE yields to the event loop, so the
listener finds no subscription, stops listening, and waits for a wake-up that
never comes again. ``_RedisBackend`` wakes it after subscribing instead: the
smallest fix a team would make, and a few lines away from stock.

Two additions, both for the measurement: ``event: ready`` once the stream
is subscribed (our gateway sends the same, so the load generator knows
when each stream can receive), and ``GET /healthz``, so the benchmark
knows when the server answers. Neither is on the delivery path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from broadcaster import Broadcast
from broadcaster._backends.redis import RedisBackend
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["create_app"]


class _RedisBackend(RedisBackend):
    """broadcaster's Redis backend, waking its listener only once the subscription exists."""

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()


def create_app(redis_url: str, channel: str) -> Starlette:
    """The peer's app: ``GET /sse`` streams every message published on ``channel``."""
    broadcast = Broadcast(backend=_RedisBackend(redis_url))

    async def stream(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, Any]]:
            async with broadcast.subscribe(channel) as subscriber:
                yield {"event": "ready", "data": "{}"}
                async for event in subscriber:  # type: ignore[union-attr]
                    yield {"data": event.message}  # type: ignore[union-attr]

        return EventSourceResponse(events())

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broadcast.connect()
        try:
            yield
        finally:
            await broadcast.disconnect()

    routes = [Route("/sse", stream, methods=["GET"]), Route("/healthz", health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)
