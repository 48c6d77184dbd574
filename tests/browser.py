"""A real browser for the tests: Debian's Chromium, headless, driven by Playwright for Python.

Playwright never downloads a browser here: it starts ``/usr/bin/chromium``
(``scripts/install-chromium`` installs it; ``scripts/test`` runs that) with the
flags this machine needs. Without the background-networking ones, Chromium
keeps dialling Google's hosts, which the closed network refuses. Each launch
gets a new, empty profile: Playwright passes a fresh ``--user-data-dir``
under the temporary directory and deletes it when the browser closes.

Use the ``chromium`` fixture (import it into the test module), or
``launch_chromium()`` anywhere else::

    from browser import chromium, console_of  # noqa: F401 (chromium is a fixture)

    async def test_page(chromium: Browser) -> None:
        page = await chromium.new_page()
        ...

There is no skip: the tests need the browser, and a machine without it
fails with the command that installs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

__all__ = ["CHROMIUM", "FLAGS", "chromium", "chromium_missing", "console_of", "launch_chromium"]

CHROMIUM = "/usr/bin/chromium"
#: How this machine runs Chromium (see /work/.library/env/machines/python-svc.md).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_missing() -> str | None:
    """Why Chromium cannot run here (with the fix), or None when it can."""
    if os.access(CHROMIUM, os.X_OK):
        return None
    return f"{CHROMIUM} is missing: run scripts/install-chromium (Debian's chromium package)"


@asynccontextmanager
async def launch_chromium(**options: Any) -> AsyncIterator[Browser]:
    """Start headless Chromium from ``/usr/bin/chromium``; close it when the block ends.

    ``options`` go to Playwright's ``chromium.launch`` (``slow_mo``, ``env``, ...).
    Raises ``RuntimeError`` naming ``scripts/install-chromium`` if it is missing.
    """
    missing = chromium_missing()
    if missing is not None:
        raise RuntimeError(missing)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(FLAGS), **options
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium of this test's own (a fresh profile, closed afterwards)."""
    missing = chromium_missing()
    if missing is not None:
        pytest.fail(missing, pytrace=False)  # CI has it; a skip would hide a broken setup
    async with launch_chromium() as browser:
        yield browser


def console_of(page: Page) -> list[str]:
    """What ``page`` logs from now on: console messages and uncaught errors, one line each.

    Tests print it in their failure messages; a page's view of a failure is
    often the only one.
    """
    lines: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        lines.append(f"console.{message.type}: {message.text}")

    def on_error(error: Error) -> None:
        lines.append(f"uncaught: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    return lines
