"""``GET /channels/{channel}/events?after=<id>&limit=N``: history as JSON, for clients that poll.

It is served from the same stream the SSE and WebSocket endpoints resume
from, with the same cursors (stream entry ids), so a client can poll, then
switch to a live connection at ``next``, or the other way round. The body is
``{"channel", "next", "has_more", "events": [{"id", "event"}...]}``, events
oldest first. Without ``after`` it holds the newest ``limit`` events. Poll
again with ``after=<next>``.

Cheap and cacheable: the stored envelopes are spliced into the body unparsed.
The ``ETag`` is a hash of the body, so a poll that finds nothing new gets a
bodiless 304. The cache lifetime depends on the page:

- a *full* page after a cursor (``limit`` events) can never change, because
  streams only grow at the end. It is ``private, max-age=3600, immutable``;
- the newest page can grow, so it is cached for ``catchup_max_age`` seconds.

A cursor older than the kept history answers 410 Gone
(``{"error": "cursor_too_old", "next": ...}``): re-fetch the state from the
API, then poll after ``next``. It is the same signal as ``reset`` on a live
connection.
"""

from __future__ import annotations

import hashlib
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidEvent, VendorUnavailable
from ..events import validate_channel
from .auth import authenticate, problem_response
from .entries import Page
from .errors import problem_of
from .service import Gateway
from .tokens import TokenRejected

__all__ = ["CatchUpEndpoint"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Seconds a full page (``limit`` events after a cursor, which never changes) may be cached.
FULL_PAGE_MAX_AGE = 3600


class CatchUpEndpoint:
    """The request handler behind ``GET /channels/{channel}/events``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, request: Request) -> Response:
        try:
            channel = validate_channel(request.path_params["channel"])
            authenticate(self.gateway, request).check(channel)
            after = request.query_params.get("after") or None
            limit = _limit(request.query_params.get("limit"))
            reader = self.gateway.reader
            page = (
                await reader.after(channel, after, limit)
                if after is not None
                else await reader.latest(channel, limit)
            )
        except (TokenRejected, VendorUnavailable, InvalidEvent, ValueError) as exc:
            return problem_response(problem_of(exc))
        self.gateway.count("catchup_requests")
        if page.gap:
            return JSONResponse(
                {
                    "error": "cursor_too_old",
                    "message": "the cursor is older than the kept history: re-fetch the state, "
                    "then poll after next",
                    "next": page.position,
                },
                status_code=410,
                headers={"Cache-Control": "no-store"},
            )
        body = _body(channel, page)
        full = after is not None and len(page.entries) == limit
        return _cached(request, body, FULL_PAGE_MAX_AGE if full else self._max_age())

    def _max_age(self) -> int:
        return self.gateway.settings.catchup_max_age


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw[:20]!r}")
    return value


def _body(channel: str, page: Page) -> bytes:
    """The page as JSON bytes, the stored envelopes spliced in unparsed."""
    head = json.dumps(
        {"channel": channel, "next": page.position, "has_more": page.has_more},
        separators=(",", ":"),
    )
    events = b",".join(entry.page_json for entry in page.entries)
    return head[:-1].encode() + b',"events":[' + events + b"]}"


def _cached(request: Request, body: bytes, max_age: int) -> Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    cache = f"private, max-age={max_age}" + (", immutable" if max_age == FULL_PAGE_MAX_AGE else "")
    headers = {"ETag": etag, "Cache-Control": cache, "Vary": "Authorization"}
    matches = request.headers.get("if-none-match", "")
    if etag in (tag.strip().removeprefix("W/") for tag in matches.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
