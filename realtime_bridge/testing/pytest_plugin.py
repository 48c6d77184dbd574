"""pytest fixtures for applications: ``fake_adapter`` and ``fake_bridge``.

Enable with ``pytest_plugins = ["realtime_bridge.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..bridge import Bridge
from . import FakeAdapter, instant_retry

__all__ = ["fake_adapter", "fake_bridge"]


@pytest.fixture
def fake_adapter() -> FakeAdapter:
    """A fresh ``FakeAdapter`` per test."""
    return FakeAdapter()


@pytest.fixture
async def fake_bridge(fake_adapter: FakeAdapter) -> AsyncIterator[Bridge]:
    """A Bridge publishing to ``fake_adapter``, retrying without waiting."""
    async with Bridge(fake_adapter, retry=instant_retry()) as bridge:
        yield bridge
