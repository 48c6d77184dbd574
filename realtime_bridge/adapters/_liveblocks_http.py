"""Liveblocks' REST API over one pooled ``httpx.AsyncClient``: requests, and errors mapped once.

Kept apart from the adapter so the adapter reads as what it does (broadcast,
active users, tokens) and this module as how Liveblocks is spoken to:

- **Auth**: ``Authorization: Bearer sk_...`` on every request, set once on the
  client; the secret is in no URL, so no error text built here can carry it
  (and what the network layer says is scrubbed of it anyway).
- **Errors**: Liveblocks answers ``{"error": CODE, "message", "suggestion",
  "docs"}``. ``refusal`` maps a response to the library's error, once, here;
  the adapter only decides what a 404 ``ROOM_NOT_FOUND`` means where it asks.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx

from .. import __version__
from ..errors import (
    AuthenticationFailed,
    ConfigurationError,
    PublishRejected,
    RateLimited,
    RealtimeBridgeError,
    VendorUnavailable,
)

__all__ = ["ROOM_NOT_FOUND", "LiveblocksHttp", "error_of", "refusal", "retry_after"]

ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
_DETAIL_LIMIT = 300


def error_of(response: httpx.Response) -> tuple[str, str]:
    """Liveblocks' error ``code`` and what it said (message and suggestion), or the raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return "", " ".join(response.text.split())[:_DETAIL_LIMIT]
    code = body.get("error")
    said = " ".join(str(body[key]) for key in ("message", "suggestion") if body.get(key))
    return (code if isinstance(code, str) else ""), " ".join(said.split())[:_DETAIL_LIMIT]


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds, from a number or an HTTP date; None when absent or unreadable."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def refusal(response: httpx.Response, adapter: str, *, base_url: str) -> RealtimeBridgeError:
    """The library's error for an error answer; transient only where waiting can help.

    A 404 here is not a missing room (the adapter handles ``ROOM_NOT_FOUND`` where
    it asks about a room): it means the base URL is not Liveblocks' API.
    """
    status = response.status_code
    code, said = error_of(response)
    request = response.request
    what = f"{request.method} {request.url.path} answered {status}"
    text = f"{what} ({code}: {said})" if code else (f"{what}: {said}" if said else what)
    if status == 429:
        return RateLimited(text, adapter=adapter, retry_after=retry_after(response.headers))
    if status == 408 or status >= 500:
        return VendorUnavailable(text, adapter=adapter)
    if status in (401, 403):
        return AuthenticationFailed(
            f"{text}; check the secret key (sk_...) and the project", adapter=adapter
        )
    if status == 404 and code != ROOM_NOT_FOUND:
        return ConfigurationError(f"{text}; is {base_url} Liveblocks' API?", adapter=adapter)
    return PublishRejected(text, adapter=adapter)


class LiveblocksHttp:
    """Authenticated requests to Liveblocks through one pooled client, made on first use."""

    def __init__(
        self,
        *,
        secret: str,
        base_url: str,
        timeout: float,
        adapter: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._secret = secret
        self.base_url = base_url
        self._timeout = timeout
        self._adapter = adapter
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self._timeout,
                transport=self._transport,
                headers={
                    "Authorization": f"Bearer {self._secret}",
                    "Accept": "application/json",
                    "User-Agent": f"realtime-bridge/{__version__}",
                },
            )
        return self._client

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Any answer Liveblocks gives; a network failure or timeout is ``VendorUnavailable``."""
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            return await self._http().request(
                method, path, content=content, json=json_body, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise VendorUnavailable(
                f"{method} {path} timed out after {self._timeout:g}s ({type(exc).__name__})",
                adapter=self._adapter,
            ) from exc
        except httpx.HTTPError as exc:
            detail = str(exc).replace(self._secret, "***")
            raise VendorUnavailable(
                f"{method} {path} failed: {type(exc).__name__}: {detail}", adapter=self._adapter
            ) from exc

    def refusal(self, response: httpx.Response) -> RealtimeBridgeError:
        return refusal(response, self._adapter, base_url=self.base_url)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
