"""The helpers users import to test their own code: FakeAdapter and the pytest plugin."""

from __future__ import annotations

import pytest

from realtime_bridge import AuthenticationFailed, Bridge, Event
from realtime_bridge.testing import FakeAdapter, instant_retry

pytest_plugins = ["pytester"]


def order(status: str, order_id: int = 42) -> Event:
    return Event(channel=f"orders.{order_id}", type="order.updated", data={"status": status})


async def test_records_published_events_in_order() -> None:
    fake = FakeAdapter()
    async with Bridge(fake, retry=instant_retry()) as bridge:
        await bridge.publish_many([order("paid"), order("shipped")])
    assert [event.data["status"] for event in fake.published] == ["paid", "shipped"]
    fake.assert_published(type="order.updated", channel="orders.42", count=2)
    fake.assert_published(data={"status": "shipped"}, count=1)


async def test_assertions_fail_with_what_was_published() -> None:
    fake = FakeAdapter()
    await Bridge(fake).publish(order("paid"))
    with pytest.raises(AssertionError, match=r"found 1; published: order.updated@orders.42"):
        fake.assert_published(type="order.updated", count=2)
    with pytest.raises(AssertionError, match="no event published"):
        fake.assert_published(channel="orders.7")
    with pytest.raises(AssertionError, match="expected no events"):
        fake.assert_nothing_published()


async def test_injected_failures_are_retried_then_succeed() -> None:
    fake = FakeAdapter()
    fake.fail_next(2)
    async with Bridge(fake, retry=instant_retry(attempts=3)) as bridge:
        receipt = await bridge.publish(order("paid"))
    assert receipt.published == 1
    assert len(fake.calls) == 3
    assert len(fake.published) == 1


async def test_injected_permanent_failure_is_raised_and_nothing_published() -> None:
    fake = FakeAdapter()
    fake.fail_next(error=AuthenticationFailed("bad key", adapter=fake.name))
    with pytest.raises(AuthenticationFailed, match="fake://: bad key"):
        await Bridge(fake, retry=instant_retry()).publish(order("paid"))
    fake.assert_nothing_published()


async def test_duplicates_are_not_recorded_twice() -> None:
    fake = FakeAdapter()
    event = order("paid")
    receipt = await Bridge(fake).publish_many([event, event])
    assert receipt.duplicates == (event.id,)
    assert fake.published == [event]
    fake.reset()
    assert fake.published == [] and fake.calls == []


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["realtime_bridge.testing.pytest_plugin"]')
    pytester.makepyfile(
        """
        from realtime_bridge import Event

        async def test_publish(fake_bridge, fake_adapter):
            await fake_bridge.publish(Event(channel="orders.1", type="order.updated"))
            fake_adapter.assert_published(channel="orders.1", count=1)
        """
    )
    result = pytester.runpytest(
        "-p",
        "asyncio",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=1)
