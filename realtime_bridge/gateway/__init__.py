"""The self-hosted gateway: browsers receive a Redis adapter's events over SSE or WebSocket.

The Redis adapter writes each event to its channel's capped stream (history)
and PUBLISHes it on the channel's topic, atomically. The gateway is the other
end of that. It is an ASGI app (Starlette, served by uvicorn) that lets clients
in with a token the backend issued (``bridge.authorize()``), and sends them:

- ``GET /sse``: Server-Sent Events, for one or more channels;
- ``/ws``: a WebSocket that carries subscriptions, presence and heartbeats;
- ``GET /channels/{channel}/events``: JSON pages of history, for clients that poll;
- ``GET /healthz``: whether Redis answers, and how many connections are open.

How it is built, one module per job:

``tokens``   HS256 tokens: minted by ``RedisAdapter.authorize``, checked here
``settings`` ``GatewaySettings`` (``REALTIME_BRIDGE_GATEWAY_*``), the Redis URL
``cursor``   stream entry ids, and the SSE ``id:`` that holds one per channel
``streams``  reading a channel's stream after a cursor, or seeing that it is too old
``hub``      one Redis subscription per channel per process, shared by its connections
``inbox``    each connection's bounded queue: a client that falls behind is cut off
``session``  one connection's channels: live first, then history, merged without gaps
``presence`` WebSocket members entered, refreshed and left through the Redis adapter
``service``  ``Gateway``: what one process shares (clients, hub, presence, connections)
``sse``, ``ws``, ``catchup``, ``app``, ``server``: the network side.

Several gateway processes can serve the same clients behind a plain load
balancer: a token works on any of them, and the cursor a client resumes from
is the Redis stream's, not a process's.

``create_app`` and ``serve_gateway`` need the ``gateway`` extra (starlette,
uvicorn). They are imported on first use, so ``RedisAdapter.authorize`` works
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .tokens import Grant, TokenRejected, issue_token, verify_token

if TYPE_CHECKING:
    from .app import create_app
    from .memory_feed import MemoryFeed
    from .server import serve_gateway
    from .service import Gateway
    from .settings import GatewaySettings

__all__ = [
    "Gateway",
    "GatewaySettings",
    "Grant",
    "MemoryFeed",
    "TokenRejected",
    "create_app",
    "issue_token",
    "serve_gateway",
    "verify_token",
]

_LAZY = {
    "create_app": ".app",
    "MemoryFeed": ".memory_feed",
    "serve_gateway": ".server",
    "Gateway": ".service",
    "GatewaySettings": ".settings",
}


def __getattr__(name: str) -> Any:
    """Import the network side only when it is used (it needs the ``gateway`` extra)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    from .errors import missing_extra

    try:
        module = import_module(_LAZY[name], __name__)
    except ModuleNotFoundError as exc:
        raise missing_extra(exc) from None
    return getattr(module, name)
