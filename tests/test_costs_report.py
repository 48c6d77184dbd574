"""The cost report end to end: golden JSON, the HTML chart, metering from real outboxes,
shadow measurements, and ``realtime-bridge costs``.

The golden file ``tests/data/costs/golden.json`` is the whole JSON report for the
fixed week in ``costs_sample.py``. A change to the pricing data, the counting rules
or the JSON keys changes it: review the difference, then regenerate it with

    REGENERATE_GOLDEN=1 .venv/bin/pytest tests/test_costs_report.py -k golden

and commit the new file with the change that explains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from costs_sample import GENERATED_AT, sample_traffic
from outbox_fixtures import dialect_of, enqueue_committed, execute, sqlite_url_of
from pusher_ws import PusherSocket
from soketi_server import SoketiServer, unique_name

from realtime_bridge import Bridge, Event
from realtime_bridge.cli import main
from realtime_bridge.costs import (
    REPORT_SCHEMA,
    CostReport,
    Period,
    Subscribers,
    Traffic,
    estimate,
    load_shadow_stats,
    record_shadow_stats,
    render_html,
    render_json,
    render_table,
    traffic_from_outbox,
    write_shadow_stats,
)
from realtime_bridge.costs.chart import _outliers as chart_outliers
from realtime_bridge.costs.chart import render_chart
from realtime_bridge.errors import ConfigurationError, PublishRejected
from realtime_bridge.outbox import Outbox
from realtime_bridge.testing import FakeAdapter, instant_retry

pytest_plugins = ["conftest_outbox"]

GOLDEN = Path(__file__).parent / "data" / "costs" / "golden.json"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def report() -> CostReport:
    return estimate(sample_traffic(), generated_at=GENERATED_AT)


@pytest.fixture(autouse=True)
def isolated_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No REALTIME_BRIDGE_* variable or realtime_bridge.toml from the shell leaks in."""
    for name in list(os.environ):
        if name.startswith("REALTIME_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# -- the JSON report -----------------------------------------------------------------------


def test_golden_json_report(report: CostReport) -> None:
    produced = json.loads(render_json(report))
    if os.environ.get("REGENERATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(render_json(report) + "\n")
    assert produced == json.loads(GOLDEN.read_text())


def test_the_json_answers_the_question_per_vendor(report: CostReport) -> None:
    document = report.to_dict()
    assert document["schema"] == REPORT_SCHEMA
    assert document["multipliers"] == [1.0, 10.0, 100.0]
    vendors = {v["vendor"]: v for v in document["vendors"]}
    assert list(vendors) == ["pusher", "ably", "supabase", "redis", "liveblocks"]
    for vendor in vendors.values():
        assert [e["multiplier"] for e in vendor["estimates"]] == [1.0, 10.0, 100.0]
        assert vendor["sources"], vendor["vendor"]
    # The sample holds 5 events over 10 KB: Pusher would refuse them, at every multiplier.
    codes = {w["code"] for w in vendors["pusher"]["estimates"][0]["warnings"]}
    assert "events_too_large" in codes
    assert vendors["pusher"]["breaks_first"]["unit"] == "message_bytes"
    # The busy "prices" channel bursts 6 events in a second: Ably's 50/s is passed at ~8x.
    assert vendors["ably"]["breaks_first"]["unit"] == "channel_messages_per_second"
    assert vendors["ably"]["breaks_first"]["at_multiplier"] == pytest.approx(50 / 6, rel=1e-3)
    # No infrastructure price was given for Redis: unknown, and said so, never a guess.
    assert {e["monthly_cost"] for e in vendors["redis"]["estimates"]} == {None}
    assert document["crossovers"], "the sample is built so Pusher and Ably cross"
    chart = document["chart"]
    assert len(chart["multipliers"]) == len(chart["monthly_cost"]["ably"])


def test_the_text_table_names_plans_costs_and_breaks(report: CostReport) -> None:
    text = render_table(report)
    assert "Pusher Channels" in text and "Startup $49 *" in text
    assert "What breaks first:" in text and "Crossovers" in text
    assert "Assumptions:" in text


# -- the HTML report and its chart --------------------------------------------------------------


def svg_of(page: str) -> ET.Element:
    return ET.fromstring(page[page.index("<svg") : page.index("</svg>") + len("</svg>")])


def ids(svg: ET.Element) -> set[str]:
    return {element.get("id", "") for element in svg.iter()}


def test_the_html_report_is_one_file_with_its_chart(report: CostReport) -> None:
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<link" not in page and "src=" not in page
    found = ids(svg_of(page))
    for vendor in ("pusher", "ably", "supabase", "liveblocks"):
        assert f"series-{vendor}" in found
    assert "series-redis" not in found  # no price: no line, and the legend says why
    assert "Self-hosted Redis + gateway: price unknown" in page
    crossovers = {i for i in found if i.startswith("crossover-")}
    assert crossovers == {f"crossover-{n}" for n in range(1, len(report.crossovers) + 1)}
    assert {"multiplier-1", "multiplier-10", "multiplier-100"} <= found
    assert page.count("becomes cheaper than") == len(report.crossovers)


def test_the_series_are_drawn_where_the_costs_are(report: CostReport) -> None:
    """Each vendor's line has one vertex per curve point with a known cost (a vendor too
    dear for the chart runs off its top, clipped, and the legend gives its cost)."""
    svg = svg_of(render_html(report))
    _, off_the_top = chart_outliers(report)
    assert list(off_the_top) == ["liveblocks"]
    for vendor, costs in report.curve.costs.items():
        if vendor in off_the_top:
            continue
        group = next((g for g in svg.iter(f"{SVG}g") if g.get("id") == f"series-{vendor}"), None)
        if all(c is None for c in costs):
            assert group is None
            continue
        assert group is not None
        path = next(group.iter(f"{SVG}path"))
        vertices = path.get("d", "").count("L") + path.get("d", "").count("M")
        assert vertices == sum(c is not None for c in costs)


def test_the_chart_renders_as_png_too(report: CostReport, tmp_path: Path) -> None:
    png = render_chart(report, format="png")
    assert png.startswith(b"\x89PNG")


def test_without_matplotlib_the_html_report_names_the_extra(
    report: CostReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'realtime-bridge\[costs\]'"):
        render_html(report)


# -- metering from a real outbox -----------------------------------------------------------------


def order(n: int, channel: str, pad: int = 0) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n, "pad": "x" * pad})


async def drain(outbox: Outbox) -> int:
    """Publish every committed row once, with a relay of its own (not running in the background)."""
    relay = outbox.relay()
    try:
        return await relay.drain()
    finally:
        await relay.aclose()


async def spread_over_hours(url: str) -> None:
    """Commit times 0, 1 and 2 hours back, by row, so the hourly counts have something."""
    await execute(
        url,
        "UPDATE realtime_outbox "
        "SET created_at = created_at - make_interval(hours => (pk % 3)::int)",
        "UPDATE realtime_outbox SET created_at = created_at - (pk % 3) * 3600.0",
    )


async def age_by_days(url: str, event_id: str, days: int) -> None:
    await execute(
        url,
        "UPDATE realtime_outbox SET created_at = created_at - make_interval(days => $2) "
        "WHERE event_id = $1",
        "UPDATE realtime_outbox SET created_at = created_at - ?2 * 86400.0 WHERE event_id = ?1",
        event_id,
        days,
    )


async def test_outbox_traffic_is_what_the_relay_published(outbox_url: str) -> None:
    """Count, bytes (the encoded envelope), channels, hours, sizes and peaks measured from
    the outbox's sent rows equal those of the events the adapter received."""
    adapter = FakeAdapter()
    events = [order(n, f"orders.{n % 4}", pad=(n * 97) % 3000) for n in range(60)]
    old, pending = order(100, "orders.1"), order(101, "orders.2")
    async with Outbox(outbox_url, bridge=Bridge(adapter, retry=instant_retry())) as outbox:
        await enqueue_committed(outbox_url, outbox, *events, old)
        await spread_over_hours(outbox_url)
        await age_by_days(outbox_url, old.id, 3)
        assert await drain(outbox) == 61
        await enqueue_committed(outbox_url, outbox, pending)  # never relayed: not counted

    now = datetime.now(UTC)
    period = Period(now - timedelta(days=1), now + timedelta(minutes=1))
    measured = await traffic_from_outbox(outbox_url, period, subscribers=Subscribers.assumed(2))
    published = [e for e in adapter.published if e.ts is not None and e.ts >= period.start]
    expected = Traffic.from_events(published, period=period, subscribers_per_channel=2)
    assert len(published) == 60 and old.id not in {e.id for e in published}
    assert measured == expected
    assert measured.bytes == sum(len(e.encode()) for e in published)
    assert len(measured.hourly) == 3
    assert dialect_of(outbox_url) in {"postgres", "sqlite"}


async def test_an_empty_outbox_measures_no_traffic(outbox_url: str) -> None:
    now = datetime.now(UTC)
    traffic = await traffic_from_outbox(outbox_url, Period.ending(now, timedelta(days=1)))
    assert traffic.events == 0 and not traffic.channels
    report = estimate(traffic)
    assert [n.code for n in report.warnings] == ["no_traffic"]
    assert report.vendor("pusher").at(1).cost == 0


# -- shadow measurements ---------------------------------------------------------------------------


async def test_shadow_stats_travel_from_a_staging_bridge_to_the_report(tmp_path: Path) -> None:
    primary = FakeAdapter(label="fake://primary")
    steady = FakeAdapter(label="pusher://key:***@127.0.0.1:1/1")
    refusing = FakeAdapter(label="ably://app.key:***@127.0.0.1")
    refusing.fail_next(2, PublishRejected("refused for the test", adapter=refusing.name))
    bridge = Bridge(primary, shadows=[steady, refusing], retry=instant_retry())
    async with bridge:
        for n in range(5):
            await bridge.publish(order(n, "orders.1"))
        await bridge.drain_shadows()
        path = tmp_path / "shadow.json"
        write_shadow_stats(bridge, path)

    measured = {m.vendor: m for m in load_shadow_stats(path)}
    assert measured["pusher"].rejected == 0 and measured["pusher"].events == 5
    assert measured["ably"].rejected == 2 and measured["ably"].failures == 2
    assert measured["ably"].error_rate == pytest.approx(2 / 5)
    assert measured["fake"].role == "primary" and measured["fake"].rejected is None
    assert measured["pusher"].latency_p50_ms is not None
    report = estimate(sample_traffic(), shadow=list(measured.values()), generated_at=GENERATED_AT)
    assert "Shadow comparison" in render_table(report)
    assert [s["rejected"] for s in report.to_dict()["shadow"]] == [None, 0, 2]


def test_a_bad_shadow_stats_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "shadow.json"
    path.write_text('{"schema": "something else"}')
    with pytest.raises(ConfigurationError, match="not written by write_shadow_stats"):
        load_shadow_stats(path)


# -- realtime-bridge costs -------------------------------------------------------------------------


@pytest.fixture
async def relayed_sqlite(tmp_path: Path) -> str:
    url = sqlite_url_of(tmp_path / "outbox.db")
    async with Outbox(url, bridge=Bridge(FakeAdapter(), retry=instant_retry())) as outbox:
        await outbox.migrate()
        await enqueue_committed(url, outbox, *(order(n, f"orders.{n % 3}") for n in range(30)))
        await drain(outbox)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_costs_command_prints_json_and_writes_the_html_report(
    relayed_sqlite: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pricing = tmp_path / "ours.toml"
    pricing.write_text(
        'as_of = 2026-09-01\nsource = "our bill"\n[redis]\n'
        '[[redis.plans]]\nname = "self-hosted"\nprice = 120\n'
    )
    shadow = tmp_path / "shadow.json"
    write_shadow_stats({"fake://": {"role": "primary", "calls": 3, "events": 30}}, shadow)
    html = tmp_path / "report.html"
    argv = ["costs", "--database", relayed_sqlite, "--days", "1", "--json"]
    argv += ["--subscribers-per-channel", "3", "--pricing", str(pricing)]
    argv += ["--shadow-stats", str(shadow), "--html", str(html), "--vendors", "pusher,redis"]
    code, out, err = await asyncio.to_thread(run, capsys, *argv)
    assert code == 0, err
    document = json.loads(out)
    assert document["traffic"]["events"] == 30
    assert document["traffic"]["subscribers"]["per_event"] == 3
    assert [v["vendor"] for v in document["vendors"]] == ["pusher", "redis"]
    redis = document["vendors"][1]
    assert redis["estimates"][0]["monthly_cost"] == 120
    assert redis["estimates"][0]["uncertain"] == []  # dated and sourced: nothing to flag
    assert {"source": "our bill", "as_of": "2026-09-01"} in redis["sources"]
    assert document["shadow"][0]["adapter"] == "fake://"
    assert "<svg" in html.read_text() and f"wrote the HTML report to {html}" in err


async def test_the_costs_command_reads_a_postgresql_outbox(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Outbox(pg_url, bridge=Bridge(FakeAdapter(), retry=instant_retry())) as outbox:
        await enqueue_committed(pg_url, outbox, *(order(n, "orders.1") for n in range(7)))
        await drain(outbox)
    code, out, err = await asyncio.to_thread(
        run, capsys, "costs", "--database", pg_url, "--since", "2020-01-01"
    )
    assert code == 0, err
    assert "Measured: 7 events" in out and "Pusher Channels" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pricing", "missing.toml"], "pricing file 'missing.toml' does not exist"),
        (["--vendors", "pubnub"], "unknown vendor(s) 'pubnub'"),
        (["--shadow-stats", "none.json"], "shadow stats file 'none.json' does not exist"),
        (["--database", "mysql://db/x"], "must start with postgresql:// or sqlite:///"),
    ],
)
def test_a_costs_error_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "costs", *argv)
    assert code == 2 and not out
    assert err.count("\n") == 1 and err.startswith("realtime-bridge: error: ")
    assert message in err and "Traceback" not in err


def test_html_without_matplotlib_is_one_line_naming_the_extra(
    relayed_sqlite: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    html = tmp_path / "report.html"
    code, _, err = run(capsys, "costs", "--database", relayed_sqlite, "--html", str(html))
    assert code == 2 and "pip install 'realtime-bridge[costs]'" in err
    assert not html.exists()


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "costs", "--since", "last tuesday")
    assert code == 2 and "must be an ISO 8601 date or time" in err
    code, _, err = run(capsys, "costs", "--subscribers-per-channel", "-1")
    assert code == 2 and "must be a number 0 or more" in err


# -- fan-out sampled from a real Pusher-protocol server ------------------------------------------


@pytest.fixture
async def subscribed(soketi: SoketiServer) -> Iterator[tuple[str, str]]:  # type: ignore[misc]
    """Two clients on one channel and one on another, subscribed on a real soketi."""
    busy, quiet = unique_name("orders."), unique_name("orders.")
    async with (
        PusherSocket.connect(soketi) as one,
        PusherSocket.connect(soketi) as two,
        PusherSocket.connect(soketi) as three,
    ):
        await one.subscribe(busy)
        await two.subscribe(busy)
        await three.subscribe(quiet)
        yield busy, quiet


async def test_sampled_occupancy_gives_the_fan_out(
    soketi: SoketiServer,
    subscribed: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    busy, quiet = subscribed
    url = f"pusher://{soketi.key}:{soketi.secret}@{soketi.host}:{soketi.port}/{soketi.app_id}"
    url += "?tls=false"
    database = sqlite_url_of(tmp_path / "outbox.db")
    async with Outbox(database, bridge=Bridge.from_url(url)) as outbox:
        await outbox.migrate()
        events = [order(n, busy) for n in range(4)] + [order(9, quiet)]
        await enqueue_committed(database, outbox, *events)
        assert await drain(outbox) == 5
    argv = ["costs", "--url", url, "--database", database, "--sample-occupancy", "--json"]
    code, out, err = await asyncio.to_thread(run, capsys, *argv)
    assert code == 0, err
    traffic = json.loads(out)["traffic"]
    assert traffic["subscribers"]["source"] == "sampled"
    assert {c["channel"]: c["subscribers"] for c in traffic["top_channels"]} == {
        busy: 2,
        quiet: 1,
    }
    assert traffic["subscribers"]["per_event"] == pytest.approx((4 * 2 + 1) / 5)


async def test_record_shadow_stats_keeps_the_file_fresh_and_writes_on_cancel(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shadow.json"
    primary = FakeAdapter(label="fake://primary")
    async with Bridge(primary, retry=instant_retry()) as bridge:
        task = asyncio.create_task(record_shadow_stats(bridge, path, every=3600))
        for _ in range(200):  # the first write happens at once; wait for it, boundedly
            if path.exists():
                break
            await asyncio.sleep(0.01)
        assert [m.events for m in load_shadow_stats(path)] == [0]
        await bridge.publish(order(1, "orders.1"))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [m.events for m in load_shadow_stats(path)] == [1]  # written once more on cancel
    assert [p.name for p in await asyncio.to_thread(tmp_path.iterdir)] == ["shadow.json"]
