"""An emulator of the part of Supabase Realtime that realtime_bridge uses, held to realtime-py.

No Supabase Realtime server can run here, so tests talk to this instead.
It answers as Supabase's docs and its server source (``supabase/realtime``)
say the server answers, and Supabase's own Python client (``realtime``,
``AsyncRealtimeClient``) works against it: join, broadcast, presence,
``http_send`` (the tests hold it to that client)::

    from realtime import AsyncRealtimeClient
    from realtime_bridge.testing.supabase import SupabaseEmulator, serve

    emulator = SupabaseEmulator()                 # its own JWT secret, anon and service keys
    async with serve(emulator) as base_url:       # "http://127.0.0.1:<free port>"
        client = AsyncRealtimeClient(f"{base_url}/realtime/v1", token=emulator.anon_key)
        ...
    emulator.broadcasts("room-1")                 # what was accepted, in order

REST: ``POST /realtime/v1/api/broadcast`` (batch, ``{"messages": [{topic, event,
payload, private, id}]}``, 202) and ``POST
/realtime/v1/api/broadcast/{topic}/events/{event}[?private=true]`` (one
message, what realtime-py's ``http_send`` calls). Auth: ``Authorization:
Bearer`` or ``apikey``, a JWT signed with the project's secret (HS256/384/512;
401 ``{"message":"Unauthorized"}``). Limits: the payload's size (422), the
messages-per-second quota (429 with ``x-rate-*`` headers), ``suspended`` (403).

WebSocket: ``/realtime/v1/websocket?apikey=...&vsn=1.0.0``, Phoenix channels:
``phx_join`` on ``realtime:{topic}``, broadcasts (with the ``self`` and
``ack`` options), presence (``presence_state``, ``presence_diff``, track and
untrack), ``access_token``, ``heartbeat``, ``phx_leave``.

Private channels are authorized by RLS on ``realtime.messages``, declared
here with ``allow``. As on Supabase, a private batch message its sender may
not INSERT is dropped without a word (the request is still 202): see
``dropped``.

Needs the ``emulator`` extra (starlette and uvicorn), imported only when the
app is built or served. Modules: ``tokens`` (JWTs), ``policies`` (RLS),
``store`` (channels, presence, broadcasts), ``channel`` (the Phoenix
protocol), ``rest`` (the broadcast endpoints), ``app`` (ASGI), ``control``
(``/_emulator/``), ``faults``, ``server`` (``serve``, uvicorn).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .._faults import FaultsAndRequests
from ..ably import ManualClock
from . import tokens
from .faults import Faults, LoggedRequest
from .policies import Extension, Policy, allowed
from .server import missing_extra, serve
from .store import Broadcast, Dropped, RateWindow, Topics
from .tokens import JwtError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from .channel import Session

__all__ = [
    "DEFAULT_JWT_SECRET",
    "Broadcast",
    "Dropped",
    "JwtError",
    "LoggedRequest",
    "ManualClock",
    "Policy",
    "SupabaseEmulator",
    "serve",
]

DEFAULT_JWT_SECRET = "emulator-jwt-secret-at-least-32-bytes-long"
# The default keys' iat and exp: fixed, so a secret always gives the same keys
KEY_ISSUED = 1_700_000_000  # 2023-11-14
KEY_EXPIRES = 4_102_444_800  # 2100-01-01
PAYLOAD_PADDING = 500  # bytes the server adds to max_payload_size_in_kb * 1000


class SupabaseEmulator(FaultsAndRequests):
    """One emulated Supabase project's Realtime: its keys, RLS policies, channels and faults.

    ``jwt_secret``: the project's JWT secret (at least 32 characters, as
    Supabase requires); ``anon_key`` and ``service_key`` default to JWTs
    signed with it (roles ``anon`` and ``service_role``, ``iss`` "supabase",
    expiring in 2100: the same secret always gives the same keys).
    ``max_payload_kb``: the tenant's limit (256 on Free, 3,000 on Pro);
    a payload is measured as its compact JSON in bytes, standing in for the
    Erlang external term size the server measures, against ``max_payload_kb
    * 1000 + 500``. ``messages_per_second``: the tenant's quota (100 on Free),
    counted in whole seconds of ``clock`` (sends and deliveries both count,
    as on the server). ``clock``: seconds since the epoch; a ``ManualClock``
    expires tokens and resets the quota without sleeping.

    Set ``suspended`` to refuse everything (403), ``private_only`` to refuse
    joins of public channels (the "Allow public access" setting turned off).
    """

    faults: Faults

    def __init__(
        self,
        jwt_secret: str = DEFAULT_JWT_SECRET,
        *,
        anon_key: str | None = None,
        service_key: str | None = None,
        max_payload_kb: int = 256,
        messages_per_second: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(jwt_secret) < 32:
            raise ValueError("the JWT secret must be at least 32 characters, as Supabase requires")
        if max_payload_kb <= 0 or messages_per_second <= 0:
            raise ValueError("max_payload_kb and messages_per_second must be positive")
        self.jwt_secret = jwt_secret
        self.clock = clock
        self.max_payload_kb = max_payload_kb
        self.messages_per_second = messages_per_second
        self.suspended = False
        self.private_only = False
        self.policies: list[Policy] = []
        self.rate = RateWindow(clock)
        self.topics = Topics(self.rate.add)
        self.dropped: list[Dropped] = []
        self._init_records(Faults())
        self.sessions: set[Session] = set()  # open WebSocket connections
        self._broadcasts: list[Broadcast] = []
        self._app: ASGIApp | None = None
        self._anon_key = self._key(anon_key, "anon")
        self._service_key = self._key(service_key, "service_role")

    # -- keys and tokens ---------------------------------------------------------------------

    def _key(self, given: str | None, role: str) -> str:
        if given is None:
            claims = {"iss": "supabase", "ref": "emulator", "role": role, "iat": KEY_ISSUED}
            return self.token({**claims, "exp": max(KEY_EXPIRES, int(self.clock()) + 3600)})
        try:
            self.verify(given)
        except JwtError as error:
            if error.reason in ("token_malformed", "signature_error", "error_generating_signer"):
                raise ValueError(f"the {role} key is not a JWT signed with jwt_secret") from None
        return given

    @property
    def anon_key(self) -> str:
        """The project's anon key: what browsers (and ``AsyncRealtimeClient``) use."""
        return self._anon_key

    @property
    def service_key(self) -> str:
        """The service_role key: bypasses RLS; what a server, and realtime_bridge, use."""
        return self._service_key

    def token(self, claims: dict[str, Any], algorithm: str = "HS256") -> str:
        """A JWT of exactly ``claims``, signed with the project's secret."""
        return tokens.encode(claims, self.jwt_secret, algorithm)

    def user_token(
        self,
        sub: str,
        role: str = "authenticated",
        *,
        exp: float | None = None,
        **claims: Any,
    ) -> str:
        """A user's access token as Supabase Auth issues it (``exp``: default an hour on)."""
        now = int(self.clock())
        expires = now + 3600 if exp is None else int(exp)
        base = {"sub": sub, "role": role, "aud": "authenticated", "iss": "supabase"}
        return self.token({**base, "iat": now, "exp": expires, **claims})

    def verify(self, token: object) -> dict[str, Any]:
        """The claims of ``token`` as the server checks them now; raises ``JwtError``."""
        return tokens.verify(token, self.jwt_secret, self.clock())

    # -- RLS -------------------------------------------------------------------------------

    def allow(
        self,
        topic: str,
        *,
        role: str | None = None,
        sub: str | None = None,
        insert: bool = True,
        select: bool = True,
        extension: Extension | None = None,
    ) -> Policy:
        """Declare an RLS policy on ``realtime.messages`` for private channels.

        ``topic``: a glob (``"room-*"``); ``role`` and ``sub``: the JWT claims
        it is for (None: any); ``select`` lets clients join and receive,
        ``insert`` lets them send broadcasts and track presence; ``extension``:
        ``"broadcast"``, ``"presence"`` or None for both. Without a matching
        policy nothing is allowed; the ``service_role`` needs none.
        """
        policy = Policy(topic, role, sub, insert, select, extension)
        self.policies.append(policy)
        return policy

    def can(
        self,
        action: Literal["select", "insert"],
        extension: Extension,
        topic: str,
        claims: Mapping[str, Any],
    ) -> bool:
        return allowed(self.policies, action, extension, topic, claims)

    # -- limits ----------------------------------------------------------------------------

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_kb * 1000 + PAYLOAD_PADDING

    def oversize(self, payload: object) -> bool:
        """Whether ``payload`` is over the tenant's limit (its compact JSON, in bytes)."""
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        return len(text.encode()) > self.max_payload_bytes

    # -- broadcasting and presence ---------------------------------------------------------

    def send(
        self,
        topic: str,
        event: str,
        payload: dict[str, Any],
        *,
        private: bool = False,
        id: str | None = None,
    ) -> int:
        """Broadcast as the database does (``realtime.send``); returns the sockets reached."""
        message: dict[str, Any] = {"payload": payload, "event": event, "type": "broadcast"}
        if id is not None:
            message["meta"] = {"id": id}
        self.rate.add()
        delivered = self.topics.deliver(private, topic, message)
        self.record(Broadcast(topic, event, payload, private, "emulator", id, delivered))
        return delivered

    def record(self, broadcast: Broadcast) -> None:
        self._broadcasts.append(broadcast)

    def drop(self, dropped: Dropped) -> None:
        self.dropped.append(dropped)

    def broadcasts(
        self, topic: str | None = None, *, private: bool | None = None
    ) -> list[Broadcast]:
        """Accepted broadcasts (REST, WebSocket, ``send``), oldest first; by topic if given."""
        return [
            item
            for item in self._broadcasts
            if (topic is None or item.topic == topic) and private in (None, item.private)
        ]

    def presence(self, topic: str, *, private: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Who is tracked on ``topic``: presence key -> the tracked payloads."""
        state = self.topics.presence_state(private, topic)
        return {
            key: [
                {k: v for k, v in meta.items() if k not in ("phx_ref", "phx_ref_prev")}
                for meta in entry["metas"]
            ]
            for key, entry in state.items()
        }

    def subscribers(self, topic: str, *, private: bool | None = None) -> int:
        """How many sockets have joined ``topic`` (public, private, or both)."""
        return sum(1 for _ in self.topics.joined(topic, private))

    @property
    def connections(self) -> int:
        """Open WebSocket connections."""
        return len(self.sessions)

    def check_tokens(self) -> int:
        """Shut down channels whose access token has expired, as the server's periodic check
        does (a ``system`` error, then ``phx_close``); returns how many were shut down."""
        closed = 0
        for session in list(self.sessions):
            for member in list(session.channels.values()):
                closed += not session.confirm_token(member)
        return closed

    def disconnect_all(self, code: int = 1001) -> int:
        """Close every WebSocket (e.g. 1001, a server going away); returns how many."""
        sessions = list(self.sessions)
        for session in sessions:
            session.outbox.close(code)
        return len(sessions)

    # -- faults ----------------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        *,
        message: str | None = None,
        retry_after: float | None = None,
        path: str | None = None,
        applied: bool = False,
    ) -> None:
        """Answer the next ``times`` REST requests with ``status`` and ``{"message": ...}``.

        A 429 carries the ``x-rate-*`` headers; ``retry_after`` (seconds) adds
        ``Retry-After``. ``path``: only requests whose path starts with it.
        ``applied``: the request takes effect and only its answer is lost.
        """
        self.faults.fail_next(
            times, status, message=message, retry_after=retry_after, path=path, applied=applied
        )

    # -- inspection ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget broadcasts, drops, faults, the quota's count and the request log.

        Keeps the keys, the policies and the open connections.
        """
        self._broadcasts.clear()
        self.dropped.clear()
        self.faults.clear()
        self.forget_requests()
        self.rate.reset()

    # -- serving ---------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI application, REST and WebSocket (needs the ``emulator`` extra)."""
        if self._app is None:
            try:
                from .app import EmulatorApp
            except ModuleNotFoundError as exc:
                raise missing_extra(exc) from None
            self._app = EmulatorApp(self)
        return self._app
