"""The contract suite's Supabase tests against a real project: only with its URL and key set.

``test_the_contract_suite_passes_against_a_real_supabase_project`` (marked ``live``) runs
``pytest tests/test_contract.py -k supabase`` in a subprocess with
``REALTIME_BRIDGE_TEST_SUPABASE_URL=supabase://<SUPABASE_SERVICE_KEY>@<host of SUPABASE_URL>``,
which makes the ``supabase_adapter`` fixture (``conftest_supabase.py``) talk to that project
(TLS, its REST broadcast endpoint and its Realtime WebSocket) instead of the emulator.
Without both variables it is skipped, naming them, and nothing touches the network.

In live mode the browsers of the suite (``SupabaseClients``: Supabase's own realtime
client, subscribing and tracking presence) open with the project's key too, since the
project has none of the emulator's policies: the service_role key passes RLS on the
``private-`` and ``presence-`` channels. So nothing is skipped live: every test the
emulator runs, the project runs. The channel names are not namespaced per test as Ably's
are: Supabase keeps no history and drops a connection's presence when it closes, so the
suite's tests cannot see each other's channels; only another run on the same project at
the same moment could.

What the suite leaves out for Supabase, and why: the history and idempotency tests
(``needs``: Supabase declares neither) and the tests of a subscriber count
(``trait("counts_subscribers")``: a server sees only presence). One test is marked
``xfail(strict=True)`` in ``KNOWN_ADAPTER_BUGS``, live as against the emulator.

``test_the_live_switch_runs_the_suite_against_a_server_in_another_process`` runs the
same subprocess against an emulator served by ``realtime-bridge emulate supabase`` in a
process of its own, so the switch is exercised on every run, without the network.
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
from urllib.parse import quote, urlsplit

import httpx
import pytest
from conftest import KNOWN_ADAPTER_BUGS
from conftest_supabase import LIVE_URL_VARIABLE
from contract_subprocess import report_of, run_contract_suite, summary

#: The suite's tests marked xfail(strict=True) for Supabase, which must fail there too.
XFAILED = sum(1 for adapter, _ in KNOWN_ADAPTER_BUGS if adapter == "supabase")


def supabase_url(base_url: str, key: str) -> str:
    """The ``supabase://`` URL of a project at ``base_url`` (``https://abc.supabase.co``)."""
    parts = urlsplit(base_url)
    assert parts.scheme in ("http", "https") and parts.hostname, base_url
    path = "/" + parts.path.strip("/") if parts.path.strip("/") else ""
    tls = "" if parts.scheme == "https" else "?tls=false"
    return f"supabase://{quote(key, safe='')}@{parts.netloc}{path}{tls}"


def run_supabase_contract_suite(url: str) -> subprocess.CompletedProcess[str]:
    """``pytest tests/test_contract.py -k supabase`` with the fixture pointed at ``url``."""
    return run_contract_suite("supabase", LIVE_URL_VARIABLE, url)


def check_report(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The run passed whole: nothing failed, nothing skipped, nothing xfailed."""
    report = report_of(result)
    assert result.returncode == 0, report
    counts = summary(result)
    assert counts.get("passed", 0) >= 15, report
    assert counts.get("xfailed", 0) == XFAILED, report
    assert not {"failed", "error", "errors", "xpassed", "skipped"} & set(counts), report
    return counts


@pytest.mark.live
def test_the_contract_suite_passes_against_a_real_supabase_project() -> None:
    base_url = os.environ.get("SUPABASE_URL", "")
    key = os.environ.get("SUPABASE_SERVICE_KEY", "")
    if not (base_url and key):
        pytest.skip(
            "SUPABASE_URL and SUPABASE_SERVICE_KEY are not both set: set them to a project's "
            "URL (https://<ref>.supabase.co) and its service_role key to run the contract "
            "suite's Supabase tests against it"
        )
    check_report(run_supabase_contract_suite(supabase_url(base_url, key)))


@contextlib.contextmanager
def emulator_process() -> Iterator[tuple[str, str]]:
    """``realtime-bridge emulate supabase`` on a free port, in its own process: its base URL
    and its service key (read from what it prints).

    ``--messages-per-second`` is raised: the emulator counts the quota in whole seconds
    (Supabase averages it over about a minute), and the suite's tests follow each other
    within one, with no reset between them in live mode.
    """
    command = [
        *(sys.executable, "-m", "realtime_bridge.cli", "emulate", "supabase"),
        *("--port", "0", "--messages-per-second", "100000"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        pipe = process.stdout.fileno()  # read unbuffered: select() sees only what is unread
        raw = b""
        while b"Ctrl-C stops it." not in raw:
            ready, _, _ = select.select([pipe], [], [], 20)
            chunk = os.read(pipe, 65536) if ready else b""
            assert chunk, f"the emulator stopped printing its instructions: {raw!r}"
            raw += chunk
        printed = raw.decode()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", printed)
        key = re.search(r"service key\s+(\S+)", printed)
        assert found and key, f"the emulator did not say where it listens: {printed!r}"
        yield found[1], key[1]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_the_live_switch_runs_the_suite_against_a_server_in_another_process() -> None:
    with emulator_process() as (base_url, service_key):
        counts = check_report(run_supabase_contract_suite(supabase_url(base_url, service_key)))
        control = f"{base_url}/_emulator"
        requests = httpx.get(f"{control}/requests", timeout=10).json()
        broadcasts = httpx.get(f"{control}/broadcasts", timeout=10).json()
    assert counts["passed"] >= 15
    # The suite's adapters and browsers all went to that process: REST and WebSockets.
    assert requests.get("POST /api/broadcast", 0) >= 10, requests
    assert requests.get("GET /websocket", 0) >= 10, requests
    topics = {broadcast["topic"] for broadcast in broadcasts}
    assert {"orders.1", "orders.7", "room.0", "big.1"} <= topics, topics
