"""Serving the Supabase emulator with uvicorn: in-process for tests, or in the foreground.

``serve`` runs a ``SupabaseEmulator`` (REST and the Realtime WebSocket) in
this event loop on a free port and yields its base URL::

    async with serve(SupabaseEmulator()) as base_url:  # e.g. "http://127.0.0.1:53817"
        client = AsyncRealtimeClient(f"{base_url}/realtime/v1", token=emulator.anon_key)

When the block exits, WebSockets still open are closed (1012, "service
restart"), so close clients first. ``realtime-bridge emulate supabase`` serves
in the foreground with ``server_for``, ``bind`` and ``url_of``. How it is
served is shared with the other emulators, in ``realtime_bridge.testing._serving``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._serving import EmulatorServing, bind, url_of

if TYPE_CHECKING:
    from . import SupabaseEmulator

__all__ = ["bind", "missing_extra", "serve", "server_for", "url_of"]

_SERVING: EmulatorServing[SupabaseEmulator] = EmulatorServing("the Supabase emulator")
missing_extra = _SERVING.missing_extra
server_for = _SERVING.server_for
serve = _SERVING.serve
