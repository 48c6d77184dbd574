"""Test helpers for applications that publish through realtime_bridge.

``FakeAdapter`` is the memory adapter with a recorder and failure injection:
point the Bridge at it in your tests and assert what your code published,
or make it fail to rehearse how your code behaves in an outage::

    from realtime_bridge import Bridge
    from realtime_bridge.testing import FakeAdapter

    fake = FakeAdapter()
    bridge = Bridge(fake)
    ...  # run the code under test
    fake.assert_published(type="order.updated", channel="orders.42")

The pytest fixtures ``fake_adapter`` and ``fake_bridge`` come from
``realtime_bridge.testing.pytest_plugin``; enable them with
``pytest_plugins = ["realtime_bridge.testing.pytest_plugin"]`` in your conftest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..adapters.base import PublishResult
from ..adapters.memory import MemoryAdapter
from ..errors import RealtimeBridgeError, VendorUnavailable
from ..events import Event
from ..retry import RetryPolicy

__all__ = ["FakeAdapter", "instant_retry"]


async def _no_sleep(_: float) -> None:
    return None


def instant_retry(attempts: int = 3) -> RetryPolicy:
    """A retry policy that never actually waits, for tests."""
    return RetryPolicy(attempts=attempts, sleep=_no_sleep)


class FakeAdapter(MemoryAdapter):
    """A memory adapter that records every call and fails on demand."""

    scheme = "fake"

    def __init__(self, *, label: str = "fake://", **options: Any) -> None:
        super().__init__(**options)
        self._label = label
        self.published: list[Event] = []
        self.calls: list[list[Event]] = []
        self._failures: list[RealtimeBridgeError] = []

    @property
    def name(self) -> str:
        return self._label

    def fail_next(self, times: int = 1, error: RealtimeBridgeError | None = None) -> None:
        """Make the next ``times`` publish calls raise ``error`` (a transient outage by default)."""
        failure = error or VendorUnavailable("injected failure", adapter=self.name)
        self._failures.extend([failure] * times)

    def reset(self) -> None:
        """Forget what was published and any pending injected failures."""
        self.published.clear()
        self.calls.clear()
        self._failures.clear()

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        self.calls.append(list(events))
        if self._failures:
            raise self._failures.pop(0)
        seen_before = {event.id for event in events if event.id in self._seen}
        result = await super().publish(events)
        accepted: set[str] = set()
        for event in events:
            if event.id not in seen_before and event.id not in accepted:
                accepted.add(event.id)
                self.published.append(event)
        return result

    def find(self, *, type: str | None = None, channel: str | None = None) -> list[Event]:
        """Published events matching ``type`` and ``channel`` (either may be omitted)."""
        return [
            event
            for event in self.published
            if (type is None or event.type == type)
            and (channel is None or event.channel == channel)
        ]

    def assert_published(
        self,
        *,
        type: str | None = None,
        channel: str | None = None,
        count: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Assert matching events were published (``data``: a subset their data must contain)."""
        matches = [
            event
            for event in self.find(type=type, channel=channel)
            if data is None or _contains(event.model_dump(mode="json")["data"], data)
        ]
        wanted = f"type={type!r} channel={channel!r} data={data!r}"
        if count is None and not matches:
            raise AssertionError(f"no event published with {wanted}; published: {self._summary()}")
        if count is not None and len(matches) != count:
            raise AssertionError(
                f"expected {count} event(s) with {wanted}, found {len(matches)}; "
                f"published: {self._summary()}"
            )
        return matches

    def assert_nothing_published(self) -> None:
        if self.published:
            raise AssertionError(f"expected no events; published: {self._summary()}")

    def _summary(self) -> str:
        shown = [f"{event.type}@{event.channel}" for event in self.published[:20]]
        more = len(self.published) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "") or "nothing"


def _contains(actual: Any, expected: dict[str, Any]) -> bool:
    return isinstance(actual, dict) and all(
        key in actual and actual[key] == value for key, value in expected.items()
    )
