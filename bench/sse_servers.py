"""Serve our gateway or the peer in this process: what ``bench.gateway_sse`` starts, one each.

``python -m bench.sse_servers gateway --redis URL --secret S`` serves the
gateway as ``realtime-bridge gateway`` does (``create_app``, ``server_for``,
a socket bound by ``bind``, ``asyncio.run``; the benchmark runs the command
itself unless asked for other settings), and
``python -m bench.sse_servers peer --redis URL --channel C`` serves
``bench.sse_peer`` through the same uvicorn settings. So both servers differ
only in their app. ``--http``, ``--loop`` and ``--gc-threshold`` change both
alike, to measure what httptools (uvicorn's faster HTTP parser), uvloop or a
less eager garbage collector would give.

Each prints ``... listening on http://127.0.0.1:PORT`` once bound, raises its
open-files limit to the hard limit (10,000 streams need 10,000 descriptors),
and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import SecretStr

from bench.sse_load import raise_open_files_limit
from bench.sse_peer import create_app as create_peer_app
from realtime_bridge._serving import bind, url_of
from realtime_bridge.cli_emulate import _sigterm_as_interrupt
from realtime_bridge.gateway.app import create_app as create_gateway_app
from realtime_bridge.gateway.server import GRACE, server_for
from realtime_bridge.gateway.settings import GatewaySettings

__all__ = ["main", "server"]

HTTP = ("auto", "h11", "httptools")
LOOPS = ("asyncio", "uvloop")


def server(args: argparse.Namespace) -> uvicorn.Server:
    """The uvicorn server for ``args.kind``: the gateway's own, or one set up like it."""
    if args.kind == "gateway":
        settings = GatewaySettings(redis_url=SecretStr(args.redis), secret=SecretStr(args.secret))
        served: uvicorn.Server = server_for(create_gateway_app(settings))
    else:
        config = uvicorn.Config(
            create_peer_app(args.redis, args.channel),
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACE,
        )
        served = uvicorn.Server(config)
    served.config.http = args.http
    return served


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sse_servers", description=__doc__)
    parser.add_argument("kind", choices=("gateway", "peer"))
    parser.add_argument("--redis", required=True, help="the Redis URL (the adapter's, for ours)")
    parser.add_argument("--secret", help="the gateway's token secret")
    parser.add_argument("--channel", default="bench.sse", help="the peer's broadcaster channel")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http", choices=HTTP, default="auto")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument(
        "--gc-threshold",
        metavar="G0,G1,G2",
        help="gc.set_threshold() before serving (default: Python's, as the CLI runs)",
    )
    args = parser.parse_args(argv)
    if args.gc_threshold:
        gc.set_threshold(*(int(part) for part in args.gc_threshold.split(",")))
    if args.kind == "gateway" and not args.secret:
        parser.error("the gateway needs --secret")
    raise_open_files_limit()
    served = server(args)
    sock = bind(args.host, 0)
    print(f"{args.kind} listening on {url_of(sock)}", flush=True)
    try:
        with _sigterm_as_interrupt():
            if args.loop == "uvloop":
                import uvloop

                uvloop.run(served.serve(sockets=[sock]))
            else:
                asyncio.run(served.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
