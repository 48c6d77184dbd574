"""Fixtures for tests against a real Pusher-protocol server (soketi) and its webhooks.

* ``soketi``: one server for the whole session; tests share it, so each uses its
  own channel names (``soketi_server.unique_name``).
* ``fresh_soketi``: a private server for one test, free to be killed or restarted.
* ``soketi_factory``: start private servers with other options (webhook batching,
  a short sign-in timeout, ``debug``); all are stopped after the test.
* ``webhook_receiver`` and ``soketi_with_webhooks``: a private server whose
  webhooks (every kind, one POST each) go to a recording HTTP server.

soketi is installed by ``scripts/install-soketi`` (``scripts/test`` runs it). If it
is missing or does not start, the test fails in CI (``CI=true``), where it must
work, and is skipped elsewhere: the policy of ``service_missing`` in conftest.py.

A test module loads these with ``pytest_plugins = ["conftest_pusher"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from soketi_server import (
    INSTALL_HINT,
    SoketiServer,
    SoketiUnavailable,
    WebhookReceiver,
    start_soketi,
)


def soketi_missing(error: SoketiUnavailable) -> NoReturn:
    """Fail in CI, skip elsewhere, saying why soketi is unavailable and how to install it."""
    reason = str(error) if INSTALL_HINT in str(error) else f"{error}\n({INSTALL_HINT})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI has soketi, but: {reason}", pytrace=False)
    pytest.skip(reason)


def _start(directory: Path, **options: Any) -> SoketiServer:
    try:
        return start_soketi(directory=directory, **options)
    except SoketiUnavailable as error:
        soketi_missing(error)


@pytest.fixture(scope="session")
def soketi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoketiServer]:
    """The session's shared soketi (its log is under pytest's temporary directory)."""
    server = _start(tmp_path_factory.mktemp("soketi"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def soketi_factory(tmp_path: Path) -> Iterator[Callable[..., SoketiServer]]:
    """``start(**options)``: a private soketi (see ``start_soketi``), stopped after the test."""
    started: list[SoketiServer] = []

    def start(**options: Any) -> SoketiServer:
        server = _start(tmp_path / f"soketi-{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def fresh_soketi(soketi_factory: Callable[..., SoketiServer]) -> SoketiServer:
    """A private soketi for tests that stop, kill or restart it."""
    return soketi_factory()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A recording HTTP server on 127.0.0.1 for webhooks; ``await receiver.event(...)``."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def soketi_with_webhooks(
    soketi_factory: Callable[..., SoketiServer], webhook_receiver: WebhookReceiver
) -> SoketiServer:
    """A private soketi sending every kind of webhook, unbatched, to ``webhook_receiver``."""
    return soketi_factory(webhook_url=webhook_receiver.url)
