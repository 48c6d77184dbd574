"""``realtime-bridge gateway``: serve the SSE/WebSocket gateway over Redis, in the foreground.

Kept apart from ``cli.py``, which registers it with ``add_gateway_commands``.
Each option overrides its ``REALTIME_BRIDGE_GATEWAY_*`` variable. ``--redis``
takes the Redis adapter's URL (the relay's), so both use the same key
prefix. The secret verifies client tokens: pass the one the application's
``redis://...?gateway_secret=`` signs with. The command needs the ``gateway``
extra (starlette, uvicorn), imported only when it runs. It serves until
Ctrl-C or SIGTERM, ending open streams first so clients reconnect elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from ._serving import serve_announced
from .cli_emulate import _sigterm_as_interrupt
from .errors import ConfigurationError

__all__ = ["add_gateway_commands"]

#: Command-line option -> GatewaySettings field, for those given.
_FIELDS = {
    "redis": "redis_url",
    "secret": "secret",
    "host": "host",
    "port": "port",
    "heartbeat": "heartbeat",
    "buffer": "buffer",
    "cors_origin": "cors_origins",
}


def add_gateway_commands(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``gateway`` on the CLI's subcommand parser."""
    gateway = add(commands, "gateway", run_gateway, "serve the SSE/WebSocket gateway over Redis")
    gateway.add_argument(
        "--redis",
        metavar="URL",
        help="the Redis adapter's URL, e.g. redis://127.0.0.1:6379/0?prefix=rb "
        "(REALTIME_BRIDGE_GATEWAY_REDIS_URL)",
    )
    gateway.add_argument(
        "--secret",
        help="the token secret, 32 bytes or more (REALTIME_BRIDGE_GATEWAY_SECRET, "
        "or ?gateway_secret= in the URL)",
    )
    gateway.add_argument("--host", help="address to listen on (127.0.0.1)")
    gateway.add_argument("--port", type=int, help="port (8000; 0 for a free one)")
    gateway.add_argument("--heartbeat", type=float, metavar="SECONDS", help="(15)")
    gateway.add_argument("--buffer", type=int, metavar="EVENTS", help="per connection (256)")
    gateway.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browsers on ORIGIN to use /sse and the catch-up API (repeatable)",
    )


def run_gateway(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); exit 0 when stopped that way."""
    try:
        from .gateway.app import create_app
        from .gateway.server import bind, server_for, url_of
        from .gateway.settings import GatewaySettings
    except ModuleNotFoundError as exc:
        from .gateway.errors import missing_extra

        raise missing_extra(exc) from None

    given = {
        field: getattr(args, option)
        for option, field in _FIELDS.items()
        if getattr(args, option) is not None
    }
    for secret in ("redis_url", "secret"):
        if secret in given:
            given[secret] = SecretStr(given[secret])
    settings = GatewaySettings(**given)
    server = server_for(create_app(settings), log_level="warning")
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from exc
    location = settings.location()
    announce = (
        f"gateway listening on {url_of(sock)} (Redis {location.label}, "
        f"prefix {location.prefix!r}); Ctrl-C stops it"
    )
    try:
        with _sigterm_as_interrupt():
            asyncio.run(serve_announced(server, sock, announce))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("gateway stopped", file=sys.stderr, flush=True)
    return 0
