"""Every ```python block in the README and docs/ runs, as written, and passes its asserts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets() -> Iterator[object]:
    for path in DOCS:
        for number, match in enumerate(BLOCK.finditer(path.read_text()), start=1):
            yield pytest.param(match.group(1), id=f"{path.relative_to(ROOT)}#{number}")


@pytest.fixture
def clean_docs_keys(redis_server: str) -> Iterator[None]:
    """Snippets that use Redis write under the prefix ``rbdocs``; remove it afterwards."""
    import redis

    yield
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match="rbdocs:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_docs_have_snippets() -> None:
    assert len(list(snippets())) >= 8


@pytest.mark.parametrize("code", list(snippets()))
def test_snippet_runs(code: str, request: pytest.FixtureRequest) -> None:
    if "redis://" in code:
        request.getfixturevalue("clean_docs_keys")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(code, "<snippet>", "exec", dont_inherit=True), namespace)
