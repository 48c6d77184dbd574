"""MkDocs hooks: pages may link to repository files outside docs/ (tests, BENCHMARKS.md).

Why: the pages are read on GitHub as well as on the site. On GitHub,
``../tests/test_failure_modes.py#test_vendor_outage_fails_over_then_recovers``
is the natural link to the test that rehearses a failure mode. On the site it
would point outside the site, and ``mkdocs build --strict`` rightly refuses
such links. So, at build time, each repository file that a page links to (and
``BENCHMARKS.md``, which the nav shows) becomes a generated page under
``source/``, and the link is pointed there. A Python file's page has a
heading for each top-level definition, so a ``#name`` fragment lands on the
test it names; a fragment that names nothing in that file is a warning, so
``--strict`` fails on a link to a test that was renamed. One Markdown source
serves both readers, and strict link checking stays on for everything.
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.source_pages")

ROOT = Path(__file__).resolve().parent
SOURCE_DIR = "source"
#: Generated whether or not a page links to them: the nav lists them.
ALWAYS = ("BENCHMARKS.md",)
LINK = re.compile(r"\]\((\.\./[^)#\s]+)(#[^)\s]*)?\)")
LANGUAGES = {".py": "python", ".toml": "toml", ".sql": "sql", ".js": "js", ".lua": "lua"}


def _docs_dir(config: Any) -> Path:
    return Path(config["docs_dir"]).resolve()


def _outside_target(config: Any, page_uri: str, url: str) -> str | None:
    """The repository-relative path a page's ``../`` link names, if it is a file outside docs/."""
    docs = _docs_dir(config)
    target = (docs / posixpath.dirname(page_uri) / url).resolve()
    if not target.is_file() or target.is_relative_to(docs) or not target.is_relative_to(ROOT):
        return None
    return target.relative_to(ROOT).as_posix()


def _generated_uri(path: str) -> str:
    return f"{SOURCE_DIR}/{path}" if path.endswith(".md") else f"{SOURCE_DIR}/{path}.md"


def _source_page(path: str) -> str:
    """Markdown for one repository file: Markdown as it is, anything else as numbered code."""
    text = (ROOT / path).read_text()
    if path.endswith(".md"):
        return text
    front = "---\nsearch:\n  exclude: true\n---\n\n"
    language = LANGUAGES.get(Path(path).suffix, "text")
    if language != "python":
        return f"{front}# `{path}`\n\n{_code(text, language, 1)}"
    lines = text.splitlines()
    parts = [f"{front}# `{path}`\n"]
    for name, first, last in _python_chunks(text):
        if name:
            parts.append(f"## `{name}` {{#{name}}}\n")
        parts.append(_code("\n".join(lines[first - 1 : last]), language, first))
    return "\n".join(parts)


def _code(text: str, language: str, first_line: int) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f'{fence}{language} linenums="{first_line}"\n{text.rstrip()}\n{fence}\n'


def _python_chunks(text: str) -> list[tuple[str | None, int, int]]:
    """(name, first line, last line) of the module's head and each top-level definition."""
    starts = [(node.name, _first_line(node)) for node in _definitions(text)]
    total = len(text.splitlines())
    chunks: list[tuple[str | None, int, int]] = []
    if not starts or starts[0][1] > 1:
        chunks.append((None, 1, (starts[0][1] - 1) if starts else total))
    for index, (name, first) in enumerate(starts):
        last = starts[index + 1][1] - 1 if index + 1 < len(starts) else total
        chunks.append((name, first, last))
    return chunks


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
DEFINES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _definitions(text: str) -> list[Definition]:
    return [node for node in ast.parse(text).body if isinstance(node, DEFINES)]


def _first_line(node: Definition) -> int:
    return min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])


def _linked_paths(config: Any, files: Files) -> set[str]:
    paths = set(ALWAYS)
    for file in files.documentation_pages():
        if file.abs_src_path is None:
            continue
        for match in LINK.finditer(Path(file.abs_src_path).read_text()):
            path = _outside_target(config, file.src_uri, match.group(1))
            if path is not None:
                paths.add(path)
    return paths


def on_files(files: Files, config: Any) -> Files:
    for path in sorted(_linked_paths(config, files)):
        files.append(File.generated(config, _generated_uri(path), content=_source_page(path)))
    return files


def _anchor(path: str, name: str) -> str | None:
    """The heading of the top-level definition in ``path`` that defines ``name``, if any."""
    for node in _definitions((ROOT / path).read_text()):
        if any(isinstance(n, DEFINES) and n.name == name for n in ast.walk(node)):
            return node.name
    return None


def _fragment(path: str, fragment: str, page_uri: str) -> str:
    if not fragment or not path.endswith(".py"):
        return fragment
    anchor = _anchor(path, fragment.removeprefix("#"))
    if anchor is None:
        log.warning("%s links to %s%s, which %s does not define", page_uri, path, fragment, path)
        return ""
    return f"#{anchor}"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    page_uri = page.file.src_uri

    def repoint(match: re.Match[str]) -> str:
        path = _outside_target(config, page_uri, match.group(1))
        if path is None:
            return match.group(0)
        url = posixpath.relpath(_generated_uri(path), posixpath.dirname(page_uri) or ".")
        return f"]({url}{_fragment(path, match.group(2) or '', page_uri)})"

    return LINK.sub(repoint, markdown)
