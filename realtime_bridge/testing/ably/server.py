"""Serving the Ably emulator with uvicorn: in-process for tests, or in the foreground.

``serve`` runs an ``AblyEmulator`` in this event loop on a free port and
yields its base URL::

    async with serve(AblyEmulator()) as base_url:  # e.g. "http://127.0.0.1:53817"
        ...

``realtime-bridge emulate ably`` serves in the foreground with ``server_for``,
``bind`` and ``url_of``. The emulator is served over plain HTTP only, so it
refuses Basic auth as Ably does without TLS. How it is served (the socket
bound first, with TCP_NODELAY; uvicorn imported only when serving; a clean
stop) is shared with the other emulators, in ``realtime_bridge.testing._serving``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._serving import EmulatorServing, bind, url_of

if TYPE_CHECKING:
    from . import AblyEmulator

__all__ = ["bind", "missing_extra", "serve", "server_for", "url_of"]

_SERVING: EmulatorServing[AblyEmulator] = EmulatorServing("the Ably emulator")
missing_extra = _SERVING.missing_extra
server_for = _SERVING.server_for
serve = _SERVING.serve
