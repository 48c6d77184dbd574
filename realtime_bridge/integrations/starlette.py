"""Starlette (and FastAPI) integration: client-auth and webhook endpoints, and the relay lifespan.

::

    channels = ChannelAuth()

    @channels.channel("orders.{order_id:int}")
    async def order_channel(user, order_id): ...

    outbox = Outbox.from_settings()
    app = Starlette(
        routes=realtime_routes(
            outbox.bridge, channels=channels, get_user=current_user, on_webhook=on_webhook
        ),
        lifespan=realtime_lifespan(outbox),
    )

- ``auth_endpoint``: a browser asks for the channels it wants to join (Pusher's
  form-encoded ``socket_id`` + ``channel_name``, Ably's ``authUrl`` query,
  Liveblocks' JSON ``room``, or ``channel`` from any client); the user comes
  from ``get_user(request)`` (401 when ``None``), each channel goes to its
  callback (403 unless granted), and the answer is the configured vendor's
  credential (see ``credentials``). Refusals are JSON ``{"error", "message"}``,
  as the gateway's are.
- ``webhook_endpoint``: verifies the vendor's signature on the raw body and
  hands each normalised ``WebhookEvent`` to ``on_event``; a bad signature is
  a 401 and nothing is handed on.
- ``realtime_lifespan``: the outbox, its Bridge and an in-process relay, open
  for the app's lifetime, around the app's own lifespan if it has one.

Application callbacks may be ``def`` or ``async def``; plain ones run in a
worker thread, as Starlette runs plain endpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..adapters.base import Capability
from ..bridge import Bridge
from ..errors import InvalidWebhook, RateLimited, TransientError
from ..outbox import Outbox
from ..webhooks import WebhookEvent
from ._calls import call
from .channels import ChannelAuth, ClientAuthRefused
from .credentials import check_client_auth, client_credentials

__all__ = [
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_MAX_WEBHOOK_BYTES",
    "answer_client_auth",
    "auth_endpoint",
    "realtime_lifespan",
    "realtime_routes",
    "webhook_endpoint",
]

logger = logging.getLogger("realtime_bridge")

#: Channels one auth request may ask for (the gateway's default cap per connection).
DEFAULT_MAX_CHANNELS = 100
#: Bytes of webhook body read before refusing (413): the signature needs the whole body.
DEFAULT_MAX_WEBHOOK_BYTES = 4 * 1024 * 1024
#: Bytes of an auth request's body: a few channel names.
MAX_AUTH_BYTES = 64 * 1024
#: Where a channel name may come from: Pusher, Liveblocks, and everyone else.
CHANNEL_FIELDS = ("channel_name", "room", "channel", "channels")
NO_STORE = {"Cache-Control": "no-store"}

Endpoint = Callable[[Request], Awaitable[Response]]
GetUser = Callable[[Request], Any]
OnWebhook = Callable[[WebhookEvent], Any]
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class _Problem(Exception):
    """A request this module answers with an error before any application code runs."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": reason, "message": message}, status_code=status, headers=headers or NO_STORE
    )


# -- client auth ----------------------------------------------------------------------------


def auth_endpoint(
    bridge: Bridge,
    channels: ChannelAuth,
    *,
    get_user: GetUser,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> Endpoint:
    """The endpoint a browser's SDK asks for channel credentials (GET or POST).

    Raises ``CapabilityNotSupported`` now if the Bridge's primary adapter
    cannot authorise browsers, so a misconfigured app fails at startup.
    """
    check_client_auth(bridge)

    async def endpoint(request: Request) -> Response:
        user = await call(get_user, request)
        return await answer_client_auth(
            request, user, bridge=bridge, channels=channels, max_channels=max_channels
        )

    return endpoint


async def answer_client_auth(
    request: Request,
    user: Any,
    *,
    bridge: Bridge,
    channels: ChannelAuth,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> Response:
    """The response to one auth request once the user is known (``None``: 401)."""
    if user is None:
        return _error(401, "unauthenticated", "no signed-in user: sign in, then ask again")
    try:
        asked = await _AuthRequest.read(request, max_channels=max_channels)
        grants = await channels.grant_all(user, asked.channels)
        body = await client_credentials(bridge, grants, socket_id=asked.socket_id)
    except _Problem as exc:
        return _error(exc.status, exc.reason, str(exc))
    except ClientAuthRefused as exc:
        logger.debug("client auth refused (%s %s): %s", exc.status, exc.reason, exc)
        return _error(exc.status, exc.reason, str(exc))
    except TransientError as exc:  # a vendor that signs tokens itself did not answer
        return _error(503, "vendor_unavailable", str(exc), _retry_headers(exc))
    return JSONResponse(body, headers=NO_STORE)


def _retry_headers(exc: TransientError) -> dict[str, str]:
    """``Retry-After`` when the vendor said how long to wait."""
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return {**NO_STORE, "Retry-After": str(math.ceil(exc.retry_after))}
    return NO_STORE


@dataclass(frozen=True)
class _AuthRequest:
    """The channels a browser asked for, and Pusher's ``socket_id`` if it sent one."""

    channels: list[str]
    socket_id: str | None

    @classmethod
    async def read(cls, request: Request, *, max_channels: int) -> _AuthRequest:
        fields = [*request.query_params.multi_items(), *await _body_fields(request)]
        channels: list[str] = []
        socket_ids: list[str] = []
        for name, value in fields:
            if name in CHANNEL_FIELDS:
                channels.extend(_strings(name, value))
            elif name == "socket_id":
                socket_ids.extend(_strings(name, value))
        channels = list(dict.fromkeys(channels))
        if not channels:
            raise _Problem(
                400,
                "bad_request",
                "name a channel: channel_name (Pusher), room (Liveblocks) or channel",
            )
        if len(channels) > max_channels:
            raise _Problem(
                400, "bad_request", f"{len(channels)} channels asked for; at most {max_channels}"
            )
        if len(set(socket_ids)) > 1:
            raise _Problem(400, "bad_request", "socket_id was given twice, differently")
        return cls(channels, socket_ids[0] if socket_ids else None)


def _strings(name: str, value: object) -> list[str]:
    """A field's value as a list of strings: JSON may send a list, forms repeat the field."""
    items = value if isinstance(value, list) else [value]
    strings = [item for item in items if isinstance(item, str)]
    if len(strings) != len(items):
        raise _Problem(400, "bad_request", f"field {name!r} must be a string or a list of strings")
    return strings


async def _body_fields(request: Request) -> list[tuple[str, object]]:
    """The fields of a form-encoded or JSON body (none for an empty body)."""
    body = await _read_body(request, MAX_AUTH_BYTES)
    if not body:
        return []
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            return list(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise _Problem(400, "bad_request", "the form body is not UTF-8") from None
    if media_type == "application/json" or media_type.endswith("+json"):
        return _json_fields(body)
    raise _Problem(
        415,
        "unsupported_media_type",
        f"send the fields as application/x-www-form-urlencoded or application/json, "
        f"not {media_type or 'no content type'!s}",
    )


def _json_fields(body: bytes) -> list[tuple[str, object]]:
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        raise _Problem(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise _Problem(400, "bad_request", "the JSON body must be an object")
    return list(fields.items())


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Problem(413, "too_large", f"the body is {declared} bytes; at most {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Problem(413, "too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# -- webhooks ---------------------------------------------------------------------------------


def webhook_endpoint(
    bridge: Bridge, on_event: OnWebhook, *, max_body: int = DEFAULT_MAX_WEBHOOK_BYTES
) -> Endpoint:
    """The endpoint a vendor POSTs webhooks to; each verified event goes to ``on_event``.

    ``on_event`` gets the events of one delivery in order. If it raises, the
    answer is a 500 and the vendor delivers again, so handle events
    idempotently. Raises ``CapabilityNotSupported`` now if the primary adapter
    verifies no webhooks (Supabase, Redis).
    """
    bridge.primary.require(Capability.WEBHOOKS)

    async def endpoint(request: Request) -> Response:
        try:
            body = await _read_body(request, max_body)
        except _Problem as exc:
            return _error(exc.status, exc.reason, str(exc))
        try:
            events = bridge.verify_webhook(request.headers, body)
        except InvalidWebhook as exc:
            logger.warning("webhook refused: %s", exc)
            return _error(401, "invalid_webhook", str(exc))
        for event in events:
            await call(on_event, event)
        return JSONResponse({"received": len(events)})

    return endpoint


# -- routes and lifespan ------------------------------------------------------------------


def realtime_routes(
    bridge: Bridge,
    *,
    channels: ChannelAuth | None = None,
    get_user: GetUser | None = None,
    on_webhook: OnWebhook | None = None,
    auth_path: str = "/realtime/auth",
    webhook_path: str = "/realtime/webhooks",
    max_channels: int = DEFAULT_MAX_CHANNELS,
    max_webhook_bytes: int = DEFAULT_MAX_WEBHOOK_BYTES,
) -> list[Route]:
    """The client-auth route (with ``channels`` and ``get_user``) and the webhook route
    (with ``on_webhook``), for ``Starlette(routes=...)`` or ``app.routes.extend(...)``."""
    if (channels is None) != (get_user is None):
        raise TypeError("channels= and get_user= go together: the callbacks need the user")
    if channels is None and on_webhook is None:
        raise TypeError("nothing to route: give channels= and get_user=, on_webhook=, or both")
    routes: list[Route] = []
    if channels is not None and get_user is not None:
        endpoint = auth_endpoint(bridge, channels, get_user=get_user, max_channels=max_channels)
        routes.append(Route(auth_path, endpoint, methods=["GET", "POST"], name="realtime_auth"))
    if on_webhook is not None:
        hook = webhook_endpoint(bridge, on_webhook, max_body=max_webhook_bytes)
        routes.append(Route(webhook_path, hook, methods=["POST"], name="realtime_webhooks"))
    return routes


def realtime_lifespan(
    outbox: Outbox,
    *,
    lifespan: Lifespan | None = None,
    migrate: bool = False,
    relay: bool = True,
    **relay_options: Any,
) -> Lifespan:
    """A lifespan: the outbox and its Bridge open, and a relay running, while the app runs.

    On startup: ``outbox.migrate()`` if ``migrate`` (handy with SQLite; run
    ``realtime-bridge outbox migrate`` in production), then ``outbox.relay()``
    as a background task unless ``relay=False`` (a relay runs elsewhere), then
    the app's own ``lifespan``, whose state is passed through. On shutdown, in
    reverse: the app's lifespan ends, the relay finishes the batch in hand,
    and the outbox's connection and the Bridge's adapters close.
    ``relay_options`` go to ``outbox.relay()`` (``poll_interval``, ``batch_size``...).
    """
    if relay_options and not relay:
        raise TypeError(f"relay options {sorted(relay_options)} given with relay=False")

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(outbox)  # closes the outbox and its Bridge
            if migrate:
                await outbox.migrate()
            if relay:
                await stack.enter_async_context(outbox.relay(**relay_options))
            if lifespan is None:
                yield None
                return
            async with lifespan(app) as state:
                yield state

    return run
