"""The documentation site: it builds strictly and offline, and its pages cannot drift from the code.

- ``mkdocs build --strict`` succeeds (broken links, anchors, pages left out of
  the nav, API reference that no longer resolves: each fails it), and the
  built pages load nothing from the network;
- the capability matrix in docs/capabilities.md is generated from the
  adapters' declared ``capabilities`` and ``limits``; the page must equal what
  the code says (``REGENERATE_DOCS=1`` rewrites it after a deliberate change);
- every test docs/failure-modes.md links to exists, and every failure mode
  there links to at least one;
- every public name is in the API reference;
- the quickstart's FastAPI app (examples/quickstart_fastapi.py, shown whole on
  the page) publishes database-first on every adapter, chosen by
  ``REALTIME_BRIDGE_URL`` alone.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

import realtime_bridge
from realtime_bridge import Adapter, Bridge, Capability, adapter_from_url
from realtime_bridge.outbox import Outbox

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CAPABILITIES_PAGE = DOCS / "capabilities.md"
FAILURE_MODES_PAGE = DOCS / "failure-modes.md"
QUICKSTART_PAGE = DOCS / "quickstart.md"
QUICKSTART_APP = ROOT / "examples" / "quickstart_fastapi.py"
PATIENCE = 15.0  # seconds a condition may take before the test gives up (never asserted)


# -- the build ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``mkdocs build --strict``."""
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr}"
    return site


def test_the_site_builds_strictly_with_every_nav_page(built_site: Path) -> None:
    for page in nav_pages():
        assert (built_site / page).with_suffix(".html").is_file(), page


def test_the_built_pages_load_nothing_from_the_network(built_site: Path) -> None:
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    pages = list(built_site.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        found = remote.search(page.read_text())
        assert found is None, f"{page.relative_to(built_site)} loads {found and found.group(0)}"


def mkdocs_config() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def nav_pages() -> list[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    return list(walk(mkdocs_config()["nav"]))


def test_the_nav_lists_every_page_in_docs() -> None:
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    missing = sorted(pages - set(nav_pages()))
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"


def test_the_config_is_strict_and_fetches_nothing() -> None:
    config = mkdocs_config()
    assert config["strict"] is True
    assert config["theme"]["name"] == "material"
    assert config["theme"]["font"] is False  # no Google Fonts
    plugins = [next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]]
    # Not social (fetches fonts and images), privacy, optimize or anything else that downloads.
    assert plugins == ["search", "mkdocstrings"]
    python = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    assert "inventories" not in python  # remote object inventories would be downloaded
    assert "analytics" not in config.get("extra", {})


# -- the capability matrix ------------------------------------------------------------------

#: Each column is built from the adapter's URL with every option at its default.
MATRIX_URLS = {
    "memory": "memory://",
    "redis": "redis://127.0.0.1:6379/0",
    "pusher": "pusher://key:secret@api-eu.pusher.com/1",
    "ably": "ably://app.key:secret@",
    "supabase": "supabase://KEY@project.supabase.co",
    "liveblocks": "liveblocks://sk_prod_secret@",
    "nats": "nats://127.0.0.1:4222",
}
#: URL options that may switch on a capability the adapter class declares.
ENABLING_OPTIONS = ("gateway_secret", "jwt_secret")
ROW_NAMES = {
    Capability.PUBLISH: "publish",
    Capability.BATCH: "batch",
    Capability.PRESENCE: "presence",
    Capability.HISTORY: "history",
    Capability.OCCUPANCY: "occupancy",
    Capability.IDEMPOTENT: "idempotent",
    Capability.CLIENT_AUTH: "client auth",
    Capability.WEBHOOKS: "webhooks",
}
BEGIN = (
    "<!-- BEGIN capability matrix: generated by tests/test_docs_site.py from each adapter's "
    "declared capabilities and limits; REGENERATE_DOCS=1 rewrites it -->"
)
END = "<!-- END capability matrix -->"


def enabling_option(name: str, capability: Capability) -> str:
    """The URL option that switches ``capability`` on for adapter ``name``."""
    secret = "s" * 40
    for option in ENABLING_OPTIONS:
        separator = "&" if "?" in MATRIX_URLS[name] else "?"
        try:
            adapter = adapter_from_url(f"{MATRIX_URLS[name]}{separator}{option}={secret}")
        except realtime_bridge.ConfigurationError:
            continue  # not an option of this adapter
        if adapter.supports(capability):
            return option
    raise AssertionError(f"{name} declares {capability}; none of {ENABLING_OPTIONS} switches it on")


def cell(name: str, adapter: Adapter, capability: Capability) -> str:
    if adapter.supports(capability):
        return "yes"
    if capability in type(adapter).capabilities:
        return f"with `?{enabling_option(name, capability)}=`"
    if capability is Capability.HISTORY:
        bridge = Bridge(adapter)
        outbox = Outbox("sqlite:///unused.db", bridge=bridge)  # touches no database
        assert bridge.history_source is outbox, f"nothing fills in history for {name}"
        return "outbox"
    if capability is Capability.IDEMPOTENT:
        return "clients, by `id`"
    return "no"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


async def capability_matrix() -> str:
    adapters = {name: adapter_from_url(url) for name, url in MATRIX_URLS.items()}
    try:
        names = list(adapters)
        header = ["", *names]
        rows = [
            [label, *(cell(name, adapters[name], capability) for name in names)]
            for capability, label in ROW_NAMES.items()
        ]
        limits = [adapters[name].limits for name in names]
        rows += [
            ["payload, bytes", *(f"{limit.max_payload_bytes:,}" for limit in limits)],
            ["events per batch", *(f"{limit.max_events_per_batch:,}" for limit in limits)],
            ["channels per publish", *(f"{lim.max_channels_per_publish:,}" for lim in limits)],
        ]
        measures = [[f"`{name}`", adapters[name].limits.payload_measure] for name in names]
        lines = [BEGIN, "", *table(header, rows), ""]
        lines += ["What each adapter's payload limit measures:", ""]
        lines += [*table(["adapter", "bytes of"], measures), "", END]
        return "\n".join(lines)
    finally:
        for adapter in adapters.values():
            await adapter.aclose()


def test_every_adapter_of_the_settings_is_in_the_matrix() -> None:
    from realtime_bridge.settings import ADAPTERS

    schemes = {scheme for scheme in ADAPTERS if scheme != "rediss"}  # rediss: redis over TLS
    assert schemes == set(MATRIX_URLS)


async def test_the_capability_matrix_is_what_the_adapters_declare() -> None:
    generated = await capability_matrix()
    page = CAPABILITIES_PAGE.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    assert pattern.search(page), f"{CAPABILITIES_PAGE.name} has no generated matrix markers"
    if os.environ.get("REGENERATE_DOCS"):
        CAPABILITIES_PAGE.write_text(pattern.sub(lambda _: generated, page))
        page = CAPABILITIES_PAGE.read_text()
    found = pattern.search(page)
    assert found is not None and found.group(0) == generated, (
        "docs/capabilities.md no longer matches the adapters' capabilities and limits; "
        "after a deliberate change run: "
        "REGENERATE_DOCS=1 .venv/bin/pytest tests/test_docs_site.py -k capability_matrix"
    )


# -- failure modes --------------------------------------------------------------------------

TEST_LINK = re.compile(r"\]\(\.\./tests/([\w/]+\.py)#(\w+)\)")
#: The failure modes the page must cover (DESIGN.md and issue 10), matched in its headings.
REQUIRED_MODES = (
    "reconnection storm",
    "clock skew",
    "silent",
    "slow consumer",
    "duplicate",
    "vendor outage",
    "relay killed",
    "redis restart",
    "gateway restart",
    "token expir",
)


@functools.cache
def defined_tests(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, functions) and node.name.startswith("test_")
    )


def sections(page: str) -> dict[str, str]:
    """``## heading`` -> the text under it, up to the next ``## ``."""
    parts = re.split(r"^## (.+)$", page, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_test_the_failure_modes_page_names_exists() -> None:
    links = TEST_LINK.findall(FAILURE_MODES_PAGE.read_text())
    assert len(links) >= 20
    missing = [
        f"tests/{file}::{name}"
        for file, name in links
        if not (ROOT / "tests" / file).is_file() or name not in defined_tests(ROOT / "tests" / file)
    ]
    assert not missing, f"docs/failure-modes.md links to tests that do not exist: {missing}"


def test_every_failure_mode_links_to_the_tests_that_rehearse_it() -> None:
    found = sections(FAILURE_MODES_PAGE.read_text())
    modes = {heading: text for heading, text in found.items() if heading != "Running them"}
    unlinked = [heading for heading, text in modes.items() if not TEST_LINK.search(text)]
    assert not unlinked, f"failure modes without a test link: {unlinked}"
    headings = " | ".join(modes).lower()
    uncovered = [mode for mode in REQUIRED_MODES if mode not in headings]
    assert not uncovered, f"docs/failure-modes.md has no section for: {uncovered}"


# -- the API reference ----------------------------------------------------------------------


def test_every_public_name_is_in_the_api_reference() -> None:
    directives = {
        line.removeprefix(":::").strip()
        for page in (DOCS / "reference").glob("*.md")
        for line in page.read_text().splitlines()
        if line.startswith(":::")
    }
    documented_modules = {name for name in directives if name.count(".") == 1}
    for module in ("realtime_bridge.outbox", "realtime_bridge.gateway", "realtime_bridge.costs"):
        assert module in documented_modules
    assert "realtime_bridge.testing" in documented_modules
    missing = []
    for name in realtime_bridge.__all__:
        if name == "__version__" or f"realtime_bridge.{name}" in directives:
            continue
        if getattr(getattr(realtime_bridge, name), "__module__", None) not in documented_modules:
            missing.append(name)
    assert not missing, f"public names missing from docs/reference/: {missing}"


# -- the quickstart app, on every adapter ---------------------------------------------------


def test_the_quickstart_page_shows_the_example_app_whole() -> None:
    source = QUICKSTART_APP.read_text()
    assert f"```python\n{source}```" in QUICKSTART_PAGE.read_text()


def load_quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_fastapi", QUICKSTART_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def vendor_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``REALTIME_BRIDGE_URL`` for the adapter named by the test's parameter."""
    name = request.param
    if name == "memory":
        yield "memory://"
    elif name == "redis":
        prefix = request.getfixturevalue("redis_prefix")  # its keys are deleted afterwards
        yield f"{request.getfixturevalue('redis_server')}?prefix={prefix}"
    elif name == "pusher":
        soketi = request.getfixturevalue("soketi")
        key, secret = quote(soketi.key, safe=""), quote(soketi.secret, safe="")
        yield f"pusher://{key}:{secret}@127.0.0.1:{soketi.port}/{soketi.app_id}?tls=false"
    elif name == "nats":
        from conftest_nats import adapter_url, delete_streams, unique_names

        server, names = request.getfixturevalue("nats_server"), unique_names()
        try:
            yield adapter_url(server, names)
        finally:
            await delete_streams(server, names)
    else:
        async with emulated(name) as url:
            yield url


@contextlib.asynccontextmanager
async def emulated(name: str) -> AsyncIterator[str]:
    """A vendor emulator served on a free port, and the adapter URL that reaches it."""
    if name == "ably":
        from realtime_bridge.testing import ably

        emulator = ably.AblyEmulator()
        async with ably.serve(emulator) as base:
            yield f"ably://{emulator.key}@{base.removeprefix('http://')}?tls=false"
    elif name == "supabase":
        from realtime_bridge.testing import supabase

        emulator = supabase.SupabaseEmulator()
        async with supabase.serve(emulator) as base:
            yield f"supabase://{emulator.service_key}@{base.removeprefix('http://')}?tls=false"
    else:
        from realtime_bridge.testing import liveblocks

        blocks = liveblocks.LiveblocksEmulator()
        async with liveblocks.serve(blocks) as base:
            yield f"liveblocks://{blocks.secret}@{base.removeprefix('http://')}?tls=false"


async def until_events(client: httpx.AsyncClient, path: str, count: int) -> list[dict[str, Any]]:
    """The channel's events once ``count`` are there (the relay publishes after the commit)."""
    give_up = time.monotonic() + PATIENCE
    while len(events := (await client.get(path)).json()) < count:
        assert time.monotonic() < give_up, f"{path}: {len(events)} of {count} events published"
        await asyncio.sleep(0.05)
    return list(events)


@pytest.mark.parametrize("vendor_url", list(MATRIX_URLS), indirect=True)
async def test_the_quickstart_app_publishes_database_first_on_every_adapter(
    vendor_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no realtime_bridge.toml here: the environment decides
    monkeypatch.setenv("REALTIME_BRIDGE_URL", vendor_url)
    monkeypatch.setenv("REALTIME_BRIDGE_DATABASE_URL", f"sqlite:///{tmp_path}/app.db")
    app = load_quickstart().create_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as client,
    ):
        sent = []
        for status in ("paid", "shipped"):
            answer = await client.put("/orders/42", json={"status": status})
            assert answer.status_code == 200, answer.text
            sent.append(answer.json()["event_id"])
        events = await until_events(client, "/orders/42/events", 2)
    assert [event["id"] for event in events] == sent
    assert [(e["seq"], e["data"]["status"]) for e in events] == [(1, "paid"), (2, "shipped")]

    # The adapter REALTIME_BRIDGE_URL named is the one that acknowledged them ...
    primary = app.state.outbox.bridge.primary
    assert primary.scheme == vendor_url.split("://", 1)[0]
    assert app.state.outbox.bridge.stats()[primary.name]["events"] == 2
    # ... and a vendor that keeps history has them, read by a Bridge of its own.
    if primary.supports(Capability.HISTORY) and primary.scheme != "memory":
        async with Bridge.from_url(vendor_url) as reader:
            assert [event.id for event in await reader.history("orders.42")] == sent
