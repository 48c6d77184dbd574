"""An httpx transport that puts every channel (room) a request names under a prefix.

Live vendor runs of the contract suite reuse channel names from test to test,
and vendors keep history and rooms across runs: each test's adapter gets a
fresh prefix, so it sees only its own. Only the request is rewritten (the path
under ``root``, and whatever ``rewrite_body`` changes); the adapter, its
envelopes and what it makes of the answers are untouched.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

__all__ = ["NamespacingTransport"]


class NamespacingTransport(httpx.AsyncBaseTransport):
    """httpx's network transport, with paths under ``root`` prefixed by ``prefix``."""

    def __init__(
        self, prefix: str, *, root: bytes, inner: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.prefix = prefix
        self.root = root
        self.inner = inner or httpx.AsyncHTTPTransport()

    def named(self, channel: str) -> str:
        return self.prefix + channel

    def rewrite_body(self, method: str, path: bytes, content: bytes) -> bytes:
        """A body naming channels, rewritten; by default unchanged."""
        return content

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw_path, _, query = request.url.raw_path.partition(b"?")
        content = self.rewrite_body(request.method, raw_path, await request.aread())
        if raw_path.startswith(self.root):
            prefix = quote(self.prefix, safe="").encode()
            raw_path = self.root + prefix + raw_path[len(self.root) :]
        url = request.url.copy_with(raw_path=raw_path + (b"?" + query if query else b""))
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
        rewritten = httpx.Request(
            request.method, url, headers=headers, content=content, extensions=request.extensions
        )
        return await self.inner.handle_async_request(rewritten)

    async def aclose(self) -> None:
        await self.inner.aclose()
