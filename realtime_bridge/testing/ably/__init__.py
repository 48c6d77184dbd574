"""An emulator of the part of Ably's REST API that realtime_bridge uses, held to Ably's SDK.

No Ably server can run locally, so tests and benchmarks talk to this
instead. It answers as Ably's REST API reference says Ably answers — the
routes, auth, error codes and limits below — and the official ``ably`` SDK's
publish, history, presence, status and token calls work against it (the
tests hold it to the SDK)::

    from realtime_bridge.testing.ably import AblyEmulator, serve

    emulator = AblyEmulator()                      # key "emulator.key:secret"
    async with serve(emulator) as base_url:        # "http://127.0.0.1:<free port>"
        ably = AblyRest(key=emulator.key, endpoint="127.0.0.1", port=port, tls=False,
                        use_binary_protocol=False, use_token_auth=True)
        ...
    emulator.messages("orders.42")                 # what was stored

Routes: ``POST /channels/{ch}/messages`` (one message or an atomic array;
``?enveloped=false``), ``GET /channels/{ch}/messages`` (history: ``start``,
``end``, ``limit``, ``direction``; ``Link`` pagination), ``GET
/channels/{ch}/messages/{serial}`` (and ``.../versions``), ``GET
/channels/{ch}/presence`` (``clientId``, ``connectionId``, ``limit``), ``GET
/channels/{ch}/presence/history``, ``GET /channels/{ch}`` (status and
occupancy), ``POST /messages`` (batch publish), ``GET /presence`` (batch
presence), ``POST /keys/{keyName}/requestToken``, ``GET /time``. Auth: Basic
(refused over plain HTTP with 40103, as Ably refuses it, unless
``allow_basic_over_http``), tokens from ``requestToken``, and Ably JWTs.

Presence is entered by realtime clients, which the emulator does not speak,
so members are added with ``enter_presence``; subscriber counts are set with
``set_subscribers``. ``fail_next`` and ``latency`` inject failures; the
control API under ``/_emulator/`` does the same over HTTP for a served
emulator (``realtime-bridge emulate ably``).

Needs the ``emulator`` extra (starlette and uvicorn), imported only when the
app is built or served. Modules: ``store`` (channels, messages, presence,
idempotency, retention), ``auth`` (keys, capabilities, tokens, JWTs),
``app`` (routes), ``wire`` (bodies, parameters, ``Link``), ``faults``,
``control`` (``/_emulator/``), ``server`` (``serve``, uvicorn).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._faults import FaultsAndRequests
from .auth import ApiKey, Authenticator, canonical, intersect, parse_capability
from .errors import AblyError
from .faults import Faults, LoggedRequest
from .server import missing_extra, serve
from .store import PresenceMember, Store, StoredMessage

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = [
    "DEFAULT_KEY",
    "AblyEmulator",
    "AblyError",
    "LoggedRequest",
    "ManualClock",
    "PresenceMember",
    "StoredMessage",
    "serve",
]

DEFAULT_KEY = "emulator.key:secret"
DEFAULT_MAX_MESSAGE_SIZE = 65_536  # Ably's limit on the Free and Standard plans
DEFAULT_RETENTION = 72 * 3600.0  # seconds; Ably's default on paid plans
IDEMPOTENCY_WINDOW = 120.0  # seconds


class ManualClock:
    """A clock that moves only when told: ``AblyEmulator(clock=clock)``, then ``advance``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds} seconds")
        self.now += seconds


class AblyEmulator(FaultsAndRequests):
    """One emulated Ably app: its keys, channels, presence, tokens and injected faults.

    ``keys``: key strings ``appId.keyId:secret`` (each with every capability),
    or a mapping of key string to capability (``{"*": ["*"]}`` form, or its
    JSON text). ``allow_basic_over_http``: accept Basic auth over plain HTTP,
    which Ably refuses (40103). ``max_message_size``: bytes of name + clientId
    + data + extras per publish (40009 beyond). ``retention``: seconds history
    is kept. ``idempotency_window``: seconds a message id is remembered.
    ``clock``: seconds since the epoch (``time.time``; a ``ManualClock`` ages
    messages and tokens in tests).

    ``requests`` counts the API requests answered by ``"METHOD /route/{template}"``
    (e.g. ``"POST /channels/{channel}/messages"``; control calls excluded);
    ``request_log`` keeps the latest 10,000 (method, path, route, status, fault).
    """

    faults: Faults

    def __init__(
        self,
        keys: str | Iterable[str] | Mapping[str, object] = DEFAULT_KEY,
        *,
        allow_basic_over_http: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        retention: float = DEFAULT_RETENTION,
        idempotency_window: float = IDEMPOTENCY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_message_size <= 0 or retention <= 0 or idempotency_window < 0:
            raise ValueError(
                "max_message_size and retention must be positive, idempotency_window 0 or more"
            )
        self.clock = clock
        self.auth = Authenticator(clock, allow_basic_over_http=allow_basic_over_http)
        self.store = Store(
            clock,
            max_message_size=max_message_size,
            retention_ms=int(retention * 1000),
            idempotency_window_ms=int(idempotency_window * 1000),
        )
        self._init_records(Faults())
        self._app: ASGIApp | None = None
        entries = {keys: None} if isinstance(keys, str) else keys
        if isinstance(entries, Mapping):
            for key, capability in entries.items():
                self.add_key(key, capability)
        else:
            for key in entries:
                self.add_key(key)
        if not self.auth.keys:
            raise ValueError("an emulated app needs at least one key")

    # -- keys and tokens ---------------------------------------------------------------

    def add_key(self, key: str, capability: object = None) -> None:
        """Add an API key ``appId.keyId:secret``; ``capability`` defaults to everything."""
        self.auth.add_key(ApiKey.parse(key, capability))

    @property
    def key(self) -> str:
        """The first key, ``appId.keyId:secret``: what to give the SDK or the library."""
        return str(next(iter(self.auth.keys.values())))

    @property
    def key_name(self) -> str:
        return next(iter(self.auth.keys))

    def create_token(
        self,
        *,
        capability: object = None,
        client_id: str | None = None,
        ttl: float = 3600.0,
        key: str | None = None,
    ) -> str:
        """Issue a token as ``requestToken`` would (``ttl`` in seconds); send it base64-encoded
        as ``Authorization: Bearer ...``, or give it to the SDK as ``token=``."""
        api_key = self.auth.keys.get((key or self.key).partition(":")[0])
        if api_key is None:
            raise ValueError(f"no key {key!r} in this emulator (keys: {sorted(self.auth.keys)})")
        allowed = api_key.capability
        if capability is not None:  # narrowed to the key's, as requestToken narrows it
            allowed = intersect(parse_capability(capability), api_key.capability)
            if not allowed:
                raise ValueError(f"capability {capability!r} is not within the key's")
        return self.auth.issue(api_key, allowed, client_id, int(ttl * 1000)).token

    # -- presence and occupancy ---------------------------------------------------------

    def enter_presence(
        self,
        channel: str,
        client_id: str,
        data: object = None,
        connection_id: str | None = None,
    ) -> str:
        """Enter (or update) ``client_id`` on ``channel``; returns the member's connection id.

        Each call without ``connection_id`` is a new connection. ``data``: str,
        bytes, dict, list or None (dicts and lists are sent with ``encoding: json``).
        """
        try:
            return self.store.enter(channel, client_id, data, connection_id).connection_id
        except AblyError as exc:
            raise ValueError(exc.message) from None

    def leave_presence(self, channel: str, client_id: str, connection_id: str | None = None) -> int:
        """Remove ``client_id`` (on every connection, or one); returns how many left."""
        return self.store.leave(channel, client_id, connection_id)

    def presence_members(self, channel: str) -> list[PresenceMember]:
        return self.store.members(channel)

    def set_subscribers(
        self, channel: str, subscribers: int, *, publishers: int | None = None
    ) -> None:
        """The occupancy ``GET /channels/{channel}`` reports (realtime attachments)."""
        if subscribers < 0 or (publishers is not None and publishers < 0):
            raise ValueError("subscribers and publishers are counts, 0 or more")
        state = self.store.channel(channel)
        state.subscribers = subscribers
        if publishers is not None:
            state.publishers = publishers

    # -- faults -------------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        code: int | None = None,
        message: str | None = None,
        path: str | None = None,
        applied: bool = False,
    ) -> None:
        """Answer the next ``times`` API requests with an Ably-shaped error.

        ``status``: 503 (code 50003), 500 (50000), 429 (42910) or any 4xx/5xx;
        ``code`` overrides the Ably code. ``retry_after``: seconds, sent as
        ``Retry-After``. ``path``: only requests whose path starts with it.
        ``applied``: the request still takes effect and only its answer is
        lost, as when a response is lost after Ably acted on it.
        """
        self.faults.fail_next(
            times,
            status,
            retry_after=retry_after,
            code=code,
            message=message,
            path=path,
            applied=applied,
        )

    # -- inspection ------------------------------------------------------------------------

    def messages(self, channel: str) -> list[StoredMessage]:
        """What ``channel`` holds (within retention), oldest first."""
        return list(self.store.channel(channel).messages) if channel in self.store.channels else []

    def channels(self) -> list[str]:
        """Channels that hold messages, presence members or occupancy."""
        return sorted(
            name
            for name, state in self.store.channels.items()
            if state.messages or state.members or state.subscribers or state.publishers
        )

    def describe(self) -> dict[str, Any]:
        return {
            "keys": {name: canonical(key.capability) for name, key in self.auth.keys.items()},
            "channels": self.channels(),
            "pending_faults": len(self.faults.pending),
            "latency": self.faults.latency,
            "requests": dict(self.requests),
        }

    def reset(self) -> None:
        """Forget messages, presence, occupancy, tokens, faults and the request log; keep keys."""
        self.store.reset()
        self.auth.tokens.clear()
        self.faults.clear()
        self.forget_requests()

    # -- serving ----------------------------------------------------------------------------

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
