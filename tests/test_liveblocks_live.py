"""The contract suite's Liveblocks tests against real Liveblocks: only with a URL to it set.

``test_the_contract_suite_passes_against_real_liveblocks`` (marked ``live``) runs
``pytest tests/test_contract.py -k liveblocks`` in a subprocess with
``REALTIME_BRIDGE_TEST_LIVEBLOCKS_URL`` as set here (``liveblocks://sk_...@`` for
Liveblocks' own API), which makes the ``liveblocks_adapter`` fixture
(``conftest_liveblocks.py``) talk to it instead of the emulator. Without the variable
it is skipped, naming it, and nothing touches the network.

Each test's adapter puts its rooms under a prefix of their own on the wire
(``rbtest-<random>-orders.1``; ``RoomNamespace``). The suite's broadcasts go to rooms
nobody entered, which Liveblocks answers ``ROOM_NOT_FOUND`` and the adapter counts as
sent, so a live run creates no rooms (none to count as monthly active rooms) and needs
only a secret key of a development project.

What live mode leaves out, and why: the tests that take the ``clients`` fixture (live
subscribers, members entering, connection counts, the payload at the limit reaching a
browser). Their browsers are the emulator's connections; a real one would be
``@liveblocks/client`` in a browser or Node, which this suite does not drive. In live
mode those tests are skipped, each saying why (in the subprocess's report).

``test_the_live_switch_runs_the_suite_against_a_server_in_another_process`` runs the
same subprocess against an emulator served by ``realtime-bridge emulate liveblocks``
in a process of its own, so the switch and the room prefixes are exercised on every
run, without the network.
"""

from __future__ import annotations

import contextlib
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from conftest_liveblocks import LIVE_URL_VARIABLE, live_liveblocks_url
from contract_subprocess import report_of, run_contract_suite, summary

#: The contract tests that take the ``clients`` fixture, for Liveblocks.
CLIENT_TESTS = 11


def run_liveblocks_contract_suite(url: str) -> subprocess.CompletedProcess[str]:
    """``pytest tests/test_contract.py -k liveblocks`` with the fixture pointed at ``url``."""
    return run_contract_suite("liveblocks", LIVE_URL_VARIABLE, url)


def check_report(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The run passed, and every test it skipped was one live mode leaves out."""
    report = report_of(result)
    assert result.returncode == 0, report
    counts = summary(result)
    assert counts.get("passed", 0) >= 10, report
    assert not {"failed", "error", "errors", "xpassed"} & set(counts), report
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("live Liveblocks: this test needs the emulator's view" in line for line in skips)
    return counts


@pytest.mark.live
def test_the_contract_suite_passes_against_real_liveblocks() -> None:
    url = live_liveblocks_url()
    if url is None:
        pytest.skip(
            f"{LIVE_URL_VARIABLE} is not set: set it to liveblocks://sk_...@ (a development "
            "project's secret key) to run the contract suite's Liveblocks tests against "
            "Liveblocks"
        )
    counts = check_report(run_liveblocks_contract_suite(url))
    assert counts.get("skipped", 0) <= CLIENT_TESTS


@contextlib.contextmanager
def emulator_process() -> Iterator[str]:
    """``realtime-bridge emulate liveblocks`` on a free port, in its own process; its base URL."""
    command = [sys.executable, "-m", "realtime_bridge.cli", "emulate", "liveblocks", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the emulator printed nothing"
        found = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
        assert found, "the emulator did not say where it listens"
        yield found[0]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_the_live_switch_runs_the_suite_against_a_server_in_another_process() -> None:
    with emulator_process() as base_url:
        port = base_url.rsplit(":", 1)[1]
        url = f"liveblocks://sk_emulator_secret@127.0.0.1:{port}?tls=false"
        counts = check_report(run_liveblocks_contract_suite(url))
        described = httpx.get(f"{base_url}/_emulator", timeout=10).json()
        log = httpx.get(f"{base_url}/_emulator/log", timeout=10).json()
    assert counts.get("skipped", 0) == CLIENT_TESTS
    # Every room the suite named went under a per-test prefix, one prefix per test; nobody
    # entered those rooms, so every broadcast was a ROOM_NOT_FOUND and no room was created.
    rooms = [entry["path"].split("/")[3] for entry in log if entry["path"].startswith("/v2/rooms/")]
    assert len(rooms) >= 100 and all(room.startswith("rbtest-") for room in rooms), rooms[:5]
    assert len({room[: len("rbtest-") + 12] for room in rooms}) >= 5
    assert {entry["status"] for entry in log if entry["route"].endswith("broadcast_event")} == {404}
    assert described["rooms"] == [] and described["broadcasts"] == 0
