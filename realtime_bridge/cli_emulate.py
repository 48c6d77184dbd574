"""``realtime-bridge emulate ably|supabase|liveblocks``: serve a vendor emulator in the foreground.

Kept apart from ``cli.py``, which registers them with ``add_emulate_commands``.
The Ably emulator speaks the part of Ably's REST API that realtime_bridge
uses (``realtime_bridge.testing.ably``); the Supabase one, Supabase
Realtime's broadcast endpoints and its WebSocket (``realtime_bridge.testing.
supabase``). Both over plain HTTP, until Ctrl-C. They need the ``emulator``
extra (starlette, uvicorn), imported only when they run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ._serving import bind, serve_announced, url_of
from .errors import ConfigurationError

__all__ = ["add_emulate_commands"]

DEFAULT_PORT = 8080
SUPABASE_PORT = 54321  # where `supabase start` serves the API gateway


def add_emulate_commands(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``emulate ably`` and ``emulate supabase`` on the CLI's subcommand parser."""
    emulate = commands.add_parser(
        "emulate",
        help="serve a vendor emulator for local tests",
        description="Serve an emulator of a vendor's REST API on this machine, until Ctrl-C.",
    )
    vendors = emulate.add_subparsers(dest="vendor", required=True, metavar="VENDOR")
    ably = add(vendors, "ably", emulate_ably, "emulate Ably's REST API over plain HTTP")
    ably.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ably.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0 for a free one)"
    )
    ably.add_argument(
        "--key",
        action="append",
        metavar="NAME:SECRET",
        help="an API key appId.keyId:secret, repeatable (default emulator.key:secret)",
    )
    ably.add_argument(
        "--allow-basic-over-http",
        action="store_true",
        help="accept Basic auth over plain HTTP (Ably refuses it with 40103)",
    )
    ably.add_argument(
        "--max-message-size", type=int, default=65_536, metavar="BYTES", help="(65536)"
    )
    ably.add_argument(
        "--retention",
        type=float,
        default=72 * 3600.0,
        metavar="SECONDS",
        help="history kept (72 h)",
    )
    _add_supabase(vendors, add)
    _add_liveblocks(vendors, add)


def _add_supabase(vendors: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    supabase = add(
        vendors,
        "supabase",
        emulate_supabase,
        "emulate Supabase Realtime (REST broadcast and WebSocket) over plain HTTP",
    )
    supabase.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    supabase.add_argument(
        "--port",
        type=int,
        default=SUPABASE_PORT,
        help=f"port ({SUPABASE_PORT}, as `supabase start`; 0 for a free one)",
    )
    supabase.add_argument(
        "--jwt-secret",
        metavar="SECRET",
        help="the project's JWT secret, 32 characters or more, that signs the keys "
        "(default: the emulator's, emulator-jwt-secret-at-least-32-bytes-long)",
    )
    supabase.add_argument("--max-payload-kb", type=int, default=256, metavar="KB", help="(256)")
    supabase.add_argument(
        "--messages-per-second", type=int, default=100, metavar="N", help="the quota (100)"
    )


LIVEBLOCKS_PORT = 8081


def _add_liveblocks(vendors: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    liveblocks = add(
        vendors,
        "liveblocks",
        emulate_liveblocks,
        "emulate Liveblocks' REST API (broadcast, active users, rooms, tokens) over plain HTTP",
    )
    liveblocks.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    liveblocks.add_argument(
        "--port",
        type=int,
        default=LIVEBLOCKS_PORT,
        help=f"port ({LIVEBLOCKS_PORT}; 0 for a free one)",
    )
    liveblocks.add_argument(
        "--secret",
        action="append",
        metavar="SK",
        help="a secret key sk_..., repeatable (default sk_emulator_secret)",
    )
    liveblocks.add_argument(
        "--max-message-size", type=int, default=1_000_000, metavar="BYTES", help="(1000000)"
    )


def emulate_liveblocks(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); exit 0 when stopped that way."""
    from .testing.liveblocks import DEFAULT_SECRET, LiveblocksEmulator
    from .testing.liveblocks.server import instructions, server_for

    try:
        emulator = LiveblocksEmulator(
            args.secret or DEFAULT_SECRET, max_message_size=args.max_message_size
        )
    except ValueError as exc:
        raise ConfigurationError(f"cannot emulate Liveblocks: {exc}") from exc
    server = server_for(emulator)  # raises the one-line error if the extra is missing
    return _serve_until_stopped(
        server, args.host, args.port, lambda url: instructions(url, emulator), "Liveblocks"
    )


def emulate_ably(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); exit 0 when stopped that way."""
    from .testing.ably import DEFAULT_KEY, AblyEmulator
    from .testing.ably.server import server_for

    emulator = AblyEmulator(
        args.key or DEFAULT_KEY,
        allow_basic_over_http=args.allow_basic_over_http,
        max_message_size=args.max_message_size,
        retention=args.retention,
    )
    server = server_for(emulator)  # raises the one-line error if the extra is missing
    return _serve_until_stopped(
        server,
        args.host,
        args.port,
        lambda url: instructions(url, emulator.key, args.allow_basic_over_http),
        "Ably",
    )


def emulate_supabase(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); exit 0 when stopped that way."""
    from .testing.supabase import DEFAULT_JWT_SECRET, SupabaseEmulator
    from .testing.supabase.server import server_for

    try:
        emulator = SupabaseEmulator(
            args.jwt_secret or DEFAULT_JWT_SECRET,
            max_payload_kb=args.max_payload_kb,
            messages_per_second=args.messages_per_second,
        )
    except ValueError as exc:
        raise ConfigurationError(f"cannot emulate Supabase: {exc}") from exc
    server = server_for(emulator)  # raises the one-line error if the extra is missing
    return _serve_until_stopped(
        server, args.host, args.port, lambda url: supabase_instructions(url, emulator), "Supabase"
    )


def _serve_until_stopped(
    server: Any, host: str, port: int, banner: Callable[[str], str], vendor: str
) -> int:
    """Serve ``server`` on ``host:port`` until Ctrl-C or SIGTERM, then say so; exit code 0."""
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        with _sigterm_as_interrupt():
            asyncio.run(serve_announced(server, sock, banner(url_of(sock))))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print(f"{vendor} emulator stopped", file=sys.stderr, flush=True)
    return 0


def supabase_instructions(url: str, emulator: Any) -> str:
    """How to point realtime_bridge, realtime-py and curl at the Supabase emulator."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    base = f"http://{host}:{port}"
    service, anon = emulator.service_key, emulator.anon_key
    message = """'{"messages": [{"topic": "room-1", "event": "hi", "payload": {"n": 1}}]}'"""
    rows = [
        ("jwt secret", emulator.jwt_secret),
        ("anon key", anon),
        ("service key", service),
        ("realtime_bridge", f"REALTIME_BRIDGE_URL='supabase://{service}@{host}:{port}?tls=false'"),
        ("realtime-py", f'AsyncRealtimeClient("{base}/realtime/v1", token="{anon}")'),
        (
            "broadcast",
            f"curl -X POST {base}/realtime/v1/api/broadcast -H 'apikey: {service}' "
            f"-H 'content-type: application/json' -d {message}",
        ),
        (
            "RLS policy",
            f"curl -X POST {base}/_emulator/policies "
            """-d '{"topic": "room-*", "role": "authenticated"}'""",
        ),
    ]
    lines = [f"Supabase Realtime emulator (REST broadcast and WebSocket) listening on {url}"]
    lines += [f"  {label:<16} {text}" for label, text in rows]
    lines += ["  Private channels need a policy (none by default); the service key bypasses RLS."]
    lines += ["Ctrl-C stops it."]
    return "\n".join(lines)


def instructions(url: str, key: str, basic: bool) -> str:
    """How to point realtime_bridge, the ``ably`` SDK and curl at the emulator."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    endpoint = host.strip("[]")
    base = f"http://{host}:{port}"
    auth = (
        "Basic auth over plain HTTP is accepted (--allow-basic-over-http)."
        if basic
        else "Basic auth over plain HTTP is refused (40103), as Ably refuses it: use tokens."
    )
    sdk = f"AblyRest(key={key!r}, endpoint={endpoint!r}, port={port}, tls=False,"
    rows = [
        ("key", key),
        ("realtime_bridge", f"REALTIME_BRIDGE_URL='ably://{key}@{host}:{port}?tls=false'"),
        ("ably SDK", sdk),
        ("", "         use_binary_protocol=False, use_token_auth=True)"),
        (
            "faults",
            f"""curl -X POST {base}/_emulator/faults -d '{{"fail_next": 1, "status": 503}}'""",
        ),
        (
            "presence",
            f"curl -X POST {base}/_emulator/presence "
            """-d '{"channel": "room", "client_id": "alice"}'""",
        ),
    ]
    lines = [f"Ably emulator (REST API only, plain HTTP) listening on {url}"]
    lines += [f"  {label:<16} {text}" for label, text in rows]
    lines += [f"  {auth}", "Ctrl-C stops it."]
    return "\n".join(lines)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Stop on SIGTERM as on Ctrl-C (uvicorn re-raises the signal after shutting down)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
