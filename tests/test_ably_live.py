"""The contract suite's Ably tests against real Ably: only with ``ABLY_API_KEY`` set.

``test_the_contract_suite_passes_against_real_ably`` (marked ``live``) runs
``pytest tests/test_contract.py -k ably`` in a subprocess with
``REALTIME_BRIDGE_TEST_ABLY_URL=ably://<ABLY_API_KEY>@``, which makes the
``ably_adapter`` fixture (``conftest_ably.py``) talk to Ably's own endpoint (TLS,
Basic auth, fallback hosts) instead of the emulator. Without ``ABLY_API_KEY`` it is
skipped, naming the variable, and nothing touches the network.

Each test's adapter puts its channels under a namespace of their own on the wire
(``rbtest:<random>-orders.1``; ``ChannelNamespace``): real Ably keeps history and
presence across runs, and the suite reuses channel names from test to test. The
key needs ``publish``, ``subscribe``, ``history``, ``presence`` and
``channel-metadata`` on ``rbtest:*`` (or ``*``). A channel rule on the ``rbtest``
namespace is not needed: Ably keeps two minutes of history without persistence,
more than the suite takes.

What live mode leaves out, and why:

* The tests that take the ``clients`` fixture (live subscribers, presence entered
  by clients, subscriber counts, the payload at the limit reaching subscribers):
  ``AblyClients`` reads the emulator's store and drives its presence set, which real
  Ably has no equivalent of from a REST key. The ``ably`` SDK's realtime client could
  subscribe and enter presence, but Ably's presence set and occupancy metrics are
  eventually consistent across its regions while these tests assert them at once,
  and that client path cannot be exercised on a machine without Ably; so in live
  mode these tests are skipped, each saying why (in the subprocess's report).
* As against the emulator, the tests of a capped history (Ably keeps history for a
  time) and of ``PublishResult.duplicates`` (Ably drops duplicates silently) are not
  generated for Ably at all (``trait`` marks, ``tests/conftest.py``).

``test_the_live_switch_runs_the_suite_against_a_server_in_another_process`` runs
the same subprocess against an emulator served by ``realtime-bridge emulate ably``
in a process of its own, so the switch and the namespacing are exercised on every
run, without the network.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from conftest_ably import LIVE_URL_VARIABLE
from contract_subprocess import report_of, run_contract_suite, summary


def run_ably_contract_suite(url: str) -> subprocess.CompletedProcess[str]:
    """``pytest tests/test_contract.py -k ably`` with the fixture pointed at ``url``."""
    return run_contract_suite("ably", LIVE_URL_VARIABLE, url)


def check_report(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The run passed, and every test it skipped was one live mode leaves out."""
    report = report_of(result)
    assert result.returncode == 0, report
    counts = summary(result)
    assert counts.get("passed", 0) >= 20, report
    assert not {"failed", "error", "errors", "xpassed"} & set(counts), report
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("live Ably: this test needs the emulator's view" in line for line in skips)
    return counts


@pytest.mark.live
def test_the_contract_suite_passes_against_real_ably() -> None:
    key = os.environ.get("ABLY_API_KEY", "")
    if not key:
        pytest.skip(
            "ABLY_API_KEY is not set: set it to an Ably API key (appId.keyId:secret) to run "
            "the contract suite's Ably tests against real Ably"
        )
    name, _, secret = key.partition(":")
    counts = check_report(run_ably_contract_suite(f"ably://{quote(name)}:{quote(secret, '')}@"))
    assert counts.get("skipped", 0) <= 12  # the tests that take the clients fixture


@contextlib.contextmanager
def emulator_process() -> Iterator[str]:
    """``realtime-bridge emulate ably`` on a free port, in its own process; its base URL."""
    command = [sys.executable, "-m", "realtime_bridge.cli", "emulate", "ably", "--port", "0"]
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
        result = run_ably_contract_suite(f"ably://emulator.key:secret@127.0.0.1:{port}?tls=false")
        counts = check_report(result)
        described = httpx.get(f"{base_url}/_emulator", timeout=10).json()
    assert counts.get("skipped", 0) == 12  # the tests that take the clients fixture
    # Every channel the suite used was namespaced, one namespace per test.
    channels = described["channels"]
    assert channels and all(channel.startswith("rbtest:") for channel in channels), channels
    assert "rbtest:" not in "".join(channel.partition("-")[2] for channel in channels)
    assert len({channel.partition("-")[0] for channel in channels}) >= 10
