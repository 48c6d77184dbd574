"""Ably's wire conventions: bodies in and out, query parameters, ``Link`` pagination.

Responses are JSON, or MessagePack when the ``Accept`` header (else the
``format`` parameter) asks for it and ``msgpack`` is installed; request
bodies are JSON, MessagePack or form-encoded, per ``Content-Type``.
Paginated answers carry ``Link: <./resource?...>; rel="first"|"current"|"next"``
with every default resolved, so ``first`` repeats the query exactly.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from .errors import AblyError

__all__ = [
    "JSON",
    "MSGPACK",
    "Window",
    "decode",
    "error_response",
    "int_param",
    "limit_param",
    "links",
    "raw_path",
    "read_body",
    "render",
    "unenveloped",
    "wants_msgpack",
]

JSON, MSGPACK = "application/json", "application/x-msgpack"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def msgpack_module() -> Any:
    try:
        return importlib.import_module("msgpack")
    except ImportError:
        return None


def raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


def wants_msgpack(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    if MSGPACK in accept:
        wanted = True
    elif JSON in accept:
        wanted = False
    else:
        wanted = request.query_params.get("format") == "msgpack"
    return wanted and msgpack_module() is not None


async def read_body(request: Request) -> Any:
    return decode(await request.body(), request.headers.get("content-type", ""))


def decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        raise AblyError(40001, "invalid request body: empty")
    media = content_type.split(";")[0].strip().lower()
    if media == MSGPACK:
        msgpack = msgpack_module()
        if msgpack is None:
            raise AblyError(40000, "MessagePack bodies need msgpack installed; send JSON")
        try:
            return msgpack.unpackb(raw, raw=False)
        except Exception as exc:
            raise AblyError(40001, f"invalid request body: not MessagePack ({exc})") from None
    try:
        if media == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AblyError(40001, f"invalid request body: not JSON ({exc})") from None


async def unenveloped(request: Request) -> dict[str, Any]:
    """``?enveloped=false``: the body is the data; the other fields come from headers."""
    raw = await request.body()
    headers, query = request.headers, request.query_params
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    encoding = headers.get("x-ably-encoding") or query.get("encoding")
    data: str | bytes = raw
    try:
        if media == JSON:
            data, encoding = raw.decode(), encoding or "json"
        elif media.startswith("text/"):
            data = raw.decode()
    except UnicodeDecodeError:
        raise AblyError(40013, "Invalid message data or encoding: not UTF-8 text") from None
    client_id = query.get("clientId")
    if headers.get("x-ably-clientid"):
        try:
            client_id = base64.b64decode(headers["x-ably-clientid"], validate=True).decode()
        except (binascii.Error, ValueError):
            raise AblyError(40012, "Invalid X-Ably-ClientId header: not base64") from None
    return {
        "name": headers.get("x-ably-name") or query.get("name"),
        "id": headers.get("x-ably-messageid") or query.get("messageId"),
        "data": data,
        "encoding": encoding,
        "clientId": client_id,
    }


def int_param(query: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise AblyError(40003, f"Invalid {name} param: {raw!r}") from None


def limit_param(query: Mapping[str, str]) -> int:
    limit = int_param(query, "limit", DEFAULT_LIMIT)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise AblyError(40003, f"Invalid limit param: {limit} (1 to {MAX_LIMIT})")
    return limit


@dataclass(frozen=True)
class Window:
    """The query of a history request: interval, page size, direction, where the last page ended."""

    start: int
    end: int
    limit: int
    forwards: bool
    after: int | None

    @classmethod
    def parse(cls, query: Mapping[str, str], now: int) -> Window:
        direction = query.get("direction") or "backwards"
        if direction not in ("backwards", "forwards"):
            raise AblyError(40003, f"Invalid direction param: {direction!r}")
        start = int_param(query, "start", 0) or 0
        end = int_param(query, "end", now)
        end = now if end is None else end
        if start > end:
            raise AblyError(40003, f"Invalid params: start ({start}) is after end ({end})")
        after = int_param(query, "cursor", None)
        return cls(start, end, limit_param(query), direction == "forwards", after)

    def params(self, query: Mapping[str, str]) -> dict[str, str | None]:
        """The query with every default resolved, so the ``first`` link is repeatable."""
        return {
            "start": str(self.start),
            "end": str(self.end),
            "limit": str(self.limit),
            "direction": "forwards" if self.forwards else "backwards",
            "format": query.get("format"),
        }


def links(
    resource: str,
    params: Mapping[str, str | None],
    after: int | None,
    page: Sequence[Any],
    more: bool,
) -> list[tuple[str, str]]:
    """``first``, ``current`` and (unless this is the last page) ``next``, as ``./resource?..``."""

    def url(cursor: int | None) -> str:
        query = {key: value for key, value in params.items() if value is not None}
        if cursor is not None:
            query["cursor"] = str(cursor)
        return f"./{resource}?{urlencode(query)}"

    result = [(url(None), "first"), (url(after), "current")]
    if more and page:
        result.append((url(page[-1].order), "next"))
    return result


def render(
    body: Any, status: int, binary: bool, *, links: Sequence[tuple[str, str]] = ()
) -> Response:
    msgpack = msgpack_module() if binary else None
    if msgpack is not None:
        content, media = msgpack.packb(body, use_bin_type=True), MSGPACK
    else:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        content, media = text.encode(), JSON
    response = Response(content, status_code=status, media_type=media)
    for url, rel in links:
        response.raw_headers.append((b"link", f'<{url}>; rel="{rel}"'.encode()))
    return response


def error_response(error: AblyError, binary: bool) -> Response:
    response = render(error.body(), error.status, binary)
    for name, value in error.response_headers().items():
        response.headers[name] = value
    return response
