"""Ably's REST API over one pooled ``httpx.AsyncClient``: hosts, auth, errors, pages.

Kept apart from the adapter so the adapter reads as what it does (publish,
history, presence) and this module as how Ably is spoken to:

- **Hosts**: the default endpoint has five fallback hosts, tried in turn on a
  network error or a 500-504, as Ably's SDKs do; an explicit host (a local
  emulator, a dedicated cluster) has none.
- **Auth**: Basic with the key over TLS; over plain HTTP Ably refuses Basic
  (40103), so the key signs a TokenRequest and the token is used as Bearer,
  renewed when Ably says it expired (40140-40149).
- **Errors**: Ably's ``{"error": {code, statusCode, message}}`` mapped once,
  here, to the library's errors; never with the key's secret.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from ..errors import (
    AuthenticationFailed,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)
from . import ably_auth

__all__ = ["AblyHttp", "AblyTokenExpired", "error_for", "hosts_for", "mapped"]

PROTOCOL_VERSION = "5"
DEFAULT_ENDPOINT = "main"
_FALLBACK_LETTERS = "abcde"
_RETRY_ON_NEXT_HOST = frozenset({500, 501, 502, 503, 504})
_TOKEN_ERRORS = range(40140, 40150)
_TOKEN_TTL_MS = 3_600_000
_DETAIL_LIMIT = 300


def hosts_for(endpoint: str | None) -> tuple[str, tuple[str, ...]]:
    """The primary host of an Ably endpoint, and its fallback hosts (none for a host name)."""
    endpoint = endpoint or DEFAULT_ENDPOINT
    if "." in endpoint or ":" in endpoint or "localhost" in endpoint:
        return endpoint, ()
    fallbacks = tuple(
        f"{endpoint}.{letter}.fallback.ably-realtime.com" for letter in _FALLBACK_LETTERS
    )
    return f"{endpoint}.realtime.ably.net", fallbacks


def _error_of(response: httpx.Response) -> tuple[int, str]:
    """Ably's error ``code`` and ``message`` (from the body, else the headers)."""
    code, message = 0, ""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = int(error.get("code") or 0)
        message = str(error.get("message") or "")
    code = code or int(response.headers.get("x-ably-errorcode", "0") or 0)
    message = message or response.headers.get("x-ably-errormessage", "")
    return code, " ".join(message.split())[:_DETAIL_LIMIT]


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def mapped(response: httpx.Response, adapter: str) -> RealtimeBridgeError:
    """The library's error for an Ably error response."""
    code, message = _error_of(response)
    what = f"{response.request.method} {response.request.url.path} answered {response.status_code}"
    text = f"{what} (Ably error {code}: {message})" if code else f"{what}: {message}"
    return error_for(response.status_code, code, text, adapter, _retry_after(response))


def error_for(
    status: int, code: int, text: str, adapter: str, retry_after: float | None = None
) -> RealtimeBridgeError:
    """The library's error for Ably's ``statusCode`` and ``code``: one table, used for whole
    responses and for each refused spec of a batch alike."""
    if status == 429 or 42900 <= code < 43000:
        return RateLimited(text, adapter=adapter, retry_after=retry_after)
    if status >= 500 or code >= 50000:
        return VendorUnavailable(text, adapter=adapter)
    if code == 40112:  # the account's message limit: nothing goes until the limit resets
        return RateLimited(text, adapter=adapter, retry_after=retry_after)
    if status in (401, 403) or 40100 <= code < 40200:
        return AuthenticationFailed(text, adapter=adapter)
    return PublishRejected(text, adapter=adapter)


class AblyHttp:
    """Signed, authenticated requests to Ably, with fallback hosts and token renewal."""

    def __init__(
        self,
        *,
        key_name: str,
        key_secret: str,
        endpoint: str | None,
        port: int | None,
        tls: bool,
        token_auth: bool,
        timeout: float,
        adapter: str,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_name = key_name
        self._key_secret = key_secret
        self._primary, self._fallbacks = hosts_for(endpoint)
        self._scheme = "https" if tls else "http"
        self._port = port
        self._token_auth = token_auth
        self._timeout = timeout
        self._adapter = adapter
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._token: str | None = None
        self._token_expires_ms = 0.0
        self._token_lock = asyncio.Lock()

    # -- the client and its hosts -------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._transport,
                headers={"X-Ably-Version": PROTOCOL_VERSION, "Accept": "application/json"},
            )
        return self._client

    def _base(self, host: str) -> str:
        bracketed = f"[{host}]" if ":" in host else host
        port = f":{self._port}" if self._port else ""
        return f"{self._scheme}://{bracketed}{port}"

    def _hosts(self) -> list[str]:
        return [self._primary, *random.sample(self._fallbacks, len(self._fallbacks))]

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- auth ---------------------------------------------------------------------------

    async def _authorization(self) -> str:
        if not self._token_auth:
            raw = f"{self._key_name}:{self._key_secret}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        async with self._token_lock:
            if self._token is None or self._clock() * 1000 >= self._token_expires_ms - 30_000:
                await self._request_token()
        assert self._token is not None  # set by _request_token or it raised
        return "Bearer " + base64.b64encode(self._token.encode()).decode("ascii")

    async def _request_token(self) -> None:
        """Sign a TokenRequest with the key and exchange it: no Basic auth needed."""
        signed = ably_auth.token_request(
            self._key_name,
            self._key_secret,
            capability={"*": ["*"]},
            ttl_ms=_TOKEN_TTL_MS,
            timestamp_ms=int(self._clock() * 1000),
        )
        path = f"/keys/{self._key_name}/requestToken"
        try:
            response = await self._send("POST", path, json_body=signed, auth=False)
        except PublishRejected as exc:  # an unknown key, a malformed request: the key's fault
            raise AuthenticationFailed(
                f"Ably refused a token for key {self._key_name}: {exc}", adapter=self._adapter
            ) from exc
        details = response.json()
        self._token = str(details["token"])
        self._token_expires_ms = float(details.get("expires") or 0)

    # -- requests -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        accept: frozenset[int] | set[int] = frozenset(),
    ) -> httpx.Response:
        """A 2xx response (or one of ``accept``), or the library's error.

        An expired token is renewed once.
        """
        send = functools.partial(
            self._send, method, path, params=params, json_body=json_body, accept=accept
        )
        try:
            return await send()
        except AblyTokenExpired:
            self._token = None
            return await send()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        auth: bool = True,
        accept: frozenset[int] | set[int] = frozenset(),
    ) -> httpx.Response:
        headers = {}
        if auth:
            headers["Authorization"] = await self._authorization()
        failure: RealtimeBridgeError | None = None
        for host in self._hosts():
            url = self._base(host) + path
            try:
                response = await self._http().request(
                    method, url, params=params, json=json_body, headers=headers
                )
            except httpx.TransportError as exc:
                failure = VendorUnavailable(
                    f"{method} {path}: {type(exc).__name__}: {exc}", adapter=self._adapter
                )
                failure.__cause__ = exc
                continue
            if response.is_success or response.status_code in accept:
                return response
            if response.status_code in _RETRY_ON_NEXT_HOST:
                failure = mapped(response, self._adapter)
                continue
            code, _ = _error_of(response)
            if self._token_auth and auth and code in _TOKEN_ERRORS:
                raise AblyTokenExpired(adapter=self._adapter)
            raise mapped(response, self._adapter)
        assert failure is not None  # there is always at least one host
        raise failure

    async def pages(
        self, path: str, params: Mapping[str, str], *, most: int = 100
    ) -> AsyncIterator[Any]:
        """Every item of a paginated list, following ``Link: <...>; rel="next"``."""
        response = await self.request("GET", path, params=params)
        for _ in range(most):
            items = response.json()
            for item in items if isinstance(items, list) else []:
                yield item
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            target = response.url.join(following)
            response = await self.request("GET", target.path, params=dict(target.params))


class AblyTokenExpired(AuthenticationFailed):
    """Ably said the token expired or was revoked: request a new one and try again."""
