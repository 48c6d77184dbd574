"""An emulator of the part of Liveblocks' REST API that realtime_bridge uses, held to its SDK.

No Liveblocks server can run here, so tests talk to this instead. It answers as
Liveblocks' REST reference says the API answers (routes, the secret-key checks,
the ``{"error", "message", "suggestion", "docs"}`` errors, room ids of 128
characters, the broadcast size limit), and the official ``liveblocks`` Python
SDK's calls work against it: broadcast, active users, rooms, access and ID
tokens (the tests hold it to the SDK)::

    from liveblocks import AsyncLiveblocks
    from realtime_bridge.testing.liveblocks import LiveblocksEmulator, serve

    emulator = LiveblocksEmulator()                  # secret key "sk_emulator_secret"
    async with serve(emulator) as base_url:          # "http://127.0.0.1:<free port>"
        client = AsyncLiveblocks(secret=emulator.secret, base_url=base_url)
        ...
    emulator.broadcasts("orders.42")                 # what was accepted, in order

Routes: ``POST /v2/rooms/{roomId}/broadcast_event`` (and ``broadcast-event``:
any JSON, 204; 404 ``ROOM_NOT_FOUND`` for a room that does not exist; 413 over
``max_message_size``), ``GET /v2/rooms/{roomId}/active_users`` (and
``active-users``), ``GET`` and ``POST /v2/rooms`` (``limit``,
``startingAfter``, ``organizationId``; ``?idempotent``), ``GET``, ``POST``
and ``DELETE /v2/rooms/{roomId}``, ``POST /v2/authorize-user`` and ``POST
/v2/identify-user``.

Browsers speak Liveblocks' WebSocket protocol, which the emulator does not: a
browser in a room is a *connection* made with ``connect`` (entering a room
creates it, as with access tokens), listed by active users and handed every
event broadcast while it is there (``received``). ``fail_next`` and
``latency`` inject failures; the control API under ``/_emulator/`` does the
same over HTTP for a served emulator (``realtime-bridge emulate liveblocks``).

Needs the ``emulator`` extra (starlette and uvicorn), imported only when the
app is built or served. Modules: ``store`` (rooms, connections, broadcasts),
``tokens`` (keys and the tokens it signs), ``app`` (routes), ``errors``,
``faults``, ``control`` (``/_emulator/``), ``server`` (``serve``, uvicorn).
"""

from __future__ import annotations

import secrets as _random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ...adapters.liveblocks_auth import PERMISSIONS
from .._faults import FaultsAndRequests
from ..ably import ManualClock
from . import tokens
from .faults import Faults, LoggedRequest
from .server import missing_extra, serve
from .store import Broadcast, Connection, Received, Room, Store

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = [
    "DEFAULT_SECRET",
    "Broadcast",
    "Connection",
    "LiveblocksEmulator",
    "LoggedRequest",
    "ManualClock",
    "Received",
    "Room",
    "serve",
]

DEFAULT_SECRET = "sk_emulator_secret"
#: Bytes of one broadcast body: Liveblocks' limit for clients before 3.14.
DEFAULT_MAX_MESSAGE_SIZE = 1_000_000


class LiveblocksEmulator(FaultsAndRequests):
    """One emulated Liveblocks project: its secret keys, rooms, connections and faults.

    ``secrets``: secret keys (``sk_...``) the REST API accepts. ``max_message_size``:
    bytes of one broadcast body (413 beyond). ``project_id``: the ``pid`` of the
    tokens it signs. ``clock``: seconds since the epoch (room timestamps, token
    ``iat`` and ``exp``; a ``ManualClock`` in tests).

    ``requests`` counts the API requests answered by ``"METHOD /route/{template}"``
    (e.g. ``"POST /v2/rooms/{roomId}/broadcast_event"``; control calls excluded);
    ``request_log`` keeps the latest 10,000.
    """

    faults: Faults

    def __init__(
        self,
        secrets: str | Iterable[str] = DEFAULT_SECRET,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        project_id: str = "emulator",
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = [secrets] if isinstance(secrets, str) else list(secrets)
        if not keys:
            raise ValueError("an emulated project needs at least one secret key")
        self._secrets = [tokens.check_secret(key) for key in keys]
        self.secrets = frozenset(self._secrets)
        if max_message_size <= 0:
            raise ValueError(f"max_message_size must be positive, got {max_message_size}")
        self.max_message_size = max_message_size
        self.project_id = project_id
        self.clock = clock
        self.signing_secret = _random.token_urlsafe(32)
        self.store = Store(clock, PERMISSIONS)
        self._init_records(Faults())
        self._app: ASGIApp | None = None

    @property
    def secret(self) -> str:
        """The first secret key: what to give the SDK or the library."""
        return self._secrets[0]

    # -- browsers in rooms --------------------------------------------------------------------

    def connect(
        self,
        room: str,
        user_id: str | None = None,
        info: dict[str, Any] | None = None,
        *,
        connection_id: int | None = None,
    ) -> int:
        """A browser enters ``room`` (creating it) as ``user_id`` (None: anonymous, as with a
        public key) with ``info`` (its token's userInfo); returns its connection id. Given the
        ``connection_id`` of a connection still there, its info is replaced instead."""
        if user_id is not None and not (isinstance(user_id, str) and 0 < len(user_id) <= 128):
            raise ValueError(f"user_id must be 1 to 128 characters, got {user_id!r}")
        if info is not None and not isinstance(info, dict):
            raise ValueError(f"info must be a JSON object, got {type(info).__name__}")
        if not isinstance(room, str) or not 0 < len(room) <= 128:
            raise ValueError(f"a room id is 1 to 128 characters, got {str(room)[:40]!r}")
        return self.store.connect(room, user_id, info, connection_id)

    def disconnect(
        self, room: str, *, connection_id: int | None = None, user_id: str | None = None
    ) -> int:
        """A browser leaves: one connection, or every connection of ``user_id``; how many."""
        if connection_id is None and user_id is None:
            raise ValueError("name the connection_id or the user_id that leaves")
        return self.store.disconnect(room, connection_id=connection_id, user_id=user_id)

    def active_users(self, room: str) -> list[Connection]:
        return list(self.store.connections(room))

    def received(self, room: str, connection_id: int) -> list[Received]:
        """What one connection received while in the room, oldest first."""
        for connection in self.store.connections(room):
            if connection.id == connection_id:
                return list(connection.received)
        raise ValueError(f"no connection {connection_id} in room {room!r}")

    def broadcasts(self, room: str | None = None) -> list[Broadcast]:
        """Accepted broadcasts, oldest first; those of ``room`` if given."""
        return [item for item in self.store.broadcasts if room is None or item.room == room]

    def rooms(self) -> list[str]:
        """Room ids, oldest first."""
        return list(self.store.rooms)

    # -- tokens ----------------------------------------------------------------------------

    def sign_access_token(self, body: object) -> str:
        return tokens.sign_access_token(
            body,
            secret=self.signing_secret,
            project=self.project_id,
            permissions=PERMISSIONS,
            now=self.clock(),
        )

    def sign_id_token(self, body: object) -> str:
        return tokens.sign_id_token(
            body, secret=self.signing_secret, project=self.project_id, now=self.clock()
        )

    def verify_token(self, token: str) -> dict[str, Any]:
        """The claims of a token this emulator signed and that has not expired (else ValueError),
        as Liveblocks checks a browser's token when it enters a room."""
        return tokens.verify(token, self.signing_secret, self.clock())

    # -- faults -------------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        path: str | None = None,
        applied: bool = False,
    ) -> None:
        """Answer the next ``times`` API requests with a Liveblocks-shaped error.

        ``code``: the ``error`` field (default by status, e.g. ``SERVICE_UNAVAILABLE``).
        ``retry_after``: seconds, sent as ``Retry-After``. ``path``: only requests whose
        path starts with it. ``applied``: the request still takes effect and only its
        answer is lost (a broadcast delivered, then a 503).
        """
        self.faults.fail_next(
            times,
            status,
            code=code,
            message=message,
            retry_after=retry_after,
            path=path,
            applied=applied,
        )

    # -- inspection -----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "rooms": self.rooms(),
            "broadcasts": len(self.store.broadcasts),
            "pending_faults": len(self.faults.pending),
            "latency": self.faults.latency,
            "requests": dict(self.requests),
        }

    def reset(self) -> None:
        """Forget rooms, connections, broadcasts, faults and the request log; keep the keys."""
        self.store.reset()
        self.faults.clear()
        self.forget_requests()

    # -- serving --------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI application (needs the ``emulator`` extra)."""
        if self._app is None:
            try:
                from .app import EmulatorApp
            except ModuleNotFoundError as exc:
                raise missing_extra(exc) from None
            self._app = EmulatorApp(self)
        return self._app
