"""Serving the Liveblocks emulator with uvicorn: in-process for tests, or in the foreground.

``serve`` runs a ``LiveblocksEmulator`` in this event loop on a free port and
yields its base URL::

    async with serve(LiveblocksEmulator()) as base_url:  # e.g. "http://127.0.0.1:53817"
        ...

``realtime-bridge emulate liveblocks`` serves in the foreground with
``server_for``, ``bind`` and ``url_of``, and prints ``instructions``. How it is
served is shared with the other emulators, in ``realtime_bridge._serving``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._serving import EmulatorServing, bind, url_of

if TYPE_CHECKING:
    from . import LiveblocksEmulator

__all__ = ["bind", "instructions", "missing_extra", "serve", "server_for", "url_of"]

_SERVING: EmulatorServing[LiveblocksEmulator] = EmulatorServing("the Liveblocks emulator")
missing_extra = _SERVING.missing_extra
server_for = _SERVING.server_for
serve = _SERVING.serve


def instructions(url: str, emulator: LiveblocksEmulator) -> str:
    """How to point realtime_bridge, the ``liveblocks`` SDK and curl at the emulator."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    base = f"http://{host}:{port}"
    secret = emulator.secret
    rows = [
        ("secret key", secret),
        ("realtime_bridge", f"REALTIME_BRIDGE_URL='liveblocks://{secret}@{host}:{port}?tls=false'"),
        ("liveblocks SDK", f'Liveblocks(secret="{secret}", base_url="{base}")'),
        (
            "a browser",
            f"curl -X POST {base}/_emulator/connections "
            """-d '{"room": "orders.42", "user_id": "alice", "info": {"name": "Alice"}}'""",
        ),
        (
            "broadcast",
            f"curl -X POST {base}/v2/rooms/orders.42/broadcast_event "
            f"""-H 'Authorization: Bearer {secret}' -d '{{"type": "hi"}}'""",
        ),
        (
            "faults",
            f"""curl -X POST {base}/_emulator/faults -d '{{"fail_next": 1, "status": 503}}'""",
        ),
    ]
    lines = [f"Liveblocks emulator (REST API only, plain HTTP) listening on {url}"]
    lines += [f"  {label:<16} {text}" for label, text in rows]
    lines += ["Ctrl-C stops it."]
    return "\n".join(lines)
