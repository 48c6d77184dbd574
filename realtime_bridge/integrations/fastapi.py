"""FastAPI integration: the client-auth and webhook endpoints as an ``APIRouter``.

The endpoints are the Starlette ones (``integrations.starlette``); this layer
only puts them on an ``APIRouter``, so ``app.include_router(router, prefix=...,
dependencies=[...])`` works as for any router, and finds the user the FastAPI
way: ``get_user`` is a *dependency*, resolved by FastAPI for each request, so
an app passes the one its other routes already use (one that raises its own
401 works too)::

    app = FastAPI(lifespan=realtime_lifespan(outbox))
    app.include_router(
        realtime_router(outbox.bridge, channels=channels, get_user=current_user)
    )

Needs FastAPI: ``pip install 'realtime-bridge[fastapi]'``. The lifespan helper
is the Starlette one, re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from ..bridge import Bridge
from .channels import ChannelAuth
from .credentials import check_client_auth
from .starlette import (
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_WEBHOOK_BYTES,
    Endpoint,
    OnWebhook,
    answer_client_auth,
    realtime_lifespan,
    webhook_endpoint,
)

__all__ = ["realtime_lifespan", "realtime_router"]


def realtime_router(
    bridge: Bridge,
    *,
    channels: ChannelAuth | None = None,
    get_user: Callable[..., Any] | None = None,
    on_webhook: OnWebhook | None = None,
    auth_path: str = "/realtime/auth",
    webhook_path: str = "/realtime/webhooks",
    max_channels: int = DEFAULT_MAX_CHANNELS,
    max_webhook_bytes: int = DEFAULT_MAX_WEBHOOK_BYTES,
    **router_options: Any,
) -> APIRouter:
    """An ``APIRouter`` with the client-auth route (``channels`` and the ``get_user``
    dependency) and the webhook route (``on_webhook``); ``router_options`` go to
    ``APIRouter`` (``tags``, ``dependencies``...)."""
    if (channels is None) != (get_user is None):
        raise TypeError("channels= and get_user= go together: the callbacks need the user")
    if channels is None and on_webhook is None:
        raise TypeError("nothing to route: give channels= and get_user=, on_webhook=, or both")
    router = APIRouter(**router_options)
    if channels is not None and get_user is not None:
        endpoint = _auth_endpoint(bridge, channels, get_user, max_channels)
        for method in ("GET", "POST"):  # one route each: one OpenAPI operation id each
            router.add_api_route(
                auth_path, endpoint, methods=[method], response_model=None, name="realtime_auth"
            )
    if on_webhook is not None:
        hook = webhook_endpoint(bridge, on_webhook, max_body=max_webhook_bytes)
        router.add_api_route(
            webhook_path, hook, methods=["POST"], response_model=None, name="realtime_webhooks"
        )
    return router


def _auth_endpoint(
    bridge: Bridge, channels: ChannelAuth, get_user: Callable[..., Any], max_channels: int
) -> Endpoint:
    """The Starlette answer behind a signature FastAPI can inject the user into."""
    check_client_auth(bridge)

    async def realtime_auth(request: Request, user: Any = Depends(get_user)) -> Response:  # noqa: B008
        """Credentials for the channels asked for, in the configured vendor's format."""
        return await answer_client_auth(
            request, user, bridge=bridge, channels=channels, max_channels=max_channels
        )

    return realtime_auth
