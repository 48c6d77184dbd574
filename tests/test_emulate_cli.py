"""``realtime-bridge emulate ably|supabase|liveblocks``: what every emulator's command shares.

Each emulator imports without its serving side, refuses a missing extra with
one line, documents its options, refuses a bad secret in one line, and serves
in the foreground until Ctrl-C, printing how to point clients at it. Each
vendor's own probe of the running server (its SDK's or its REST API's call)
stays beside the others here, through one ``running_emulator`` helper.
"""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from liveblocks import Liveblocks
from test_supabase_emulator import batch, message

from realtime_bridge.cli import main
from realtime_bridge.errors import ConfigurationError
from realtime_bridge.testing import ably, liveblocks, supabase


@dataclass(frozen=True)
class Case:
    vendor: str
    make: Callable[[], Any]
    serve: Callable[[Any], Any]
    #: Python that builds the emulator and uses it without serving (no starlette, no uvicorn).
    offline_use: str
    help_option: str
    bad_option: tuple[str, str]
    bad_says: str


CASES = [
    Case(
        "ably",
        ably.AblyEmulator,
        ably.serve,
        "ably.AblyEmulator().enter_presence('r', 'a')",
        "--key NAME:SECRET",
        ("--key", "nope"),
        "appId.keyId:secret",
    ),
    Case(
        "supabase",
        supabase.SupabaseEmulator,
        supabase.serve,
        "e = supabase.SupabaseEmulator(); e.allow('r'); e.verify(e.anon_key)",
        "--jwt-secret SECRET",
        ("--jwt-secret", "short"),
        "32 characters",
    ),
    Case(
        "liveblocks",
        liveblocks.LiveblocksEmulator,
        liveblocks.serve,
        "liveblocks.LiveblocksEmulator().connect('r', 'a')",
        "--secret SK",
        ("--secret", "nope"),
        "starts with 'sk_'",
    ),
]
by_vendor = pytest.mark.parametrize("case", CASES, ids=[case.vendor for case in CASES])


@by_vendor
def test_importing_needs_no_extra(case: Case) -> None:
    code = (
        "import sys; import realtime_bridge.cli; "
        f"from realtime_bridge.testing import {case.vendor}; {case.offline_use}; "
        "assert not {'starlette', 'uvicorn'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@by_vendor
async def test_a_missing_extra_is_a_one_line_configuration_error(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_module = f"realtime_bridge.testing.{case.vendor}.app"
    monkeypatch.delitem(sys.modules, app_module, raising=False)
    monkeypatch.setitem(sys.modules, "starlette.requests", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'realtime-bridge\[emulator\]'"):
        case.make().app  # noqa: B018
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ConfigurationError, match="uvicorn"):
        async with case.serve(case.make()):
            pass


@by_vendor
def test_cli_emulate_help(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", case.vendor, "--help"]) == 0
    assert case.help_option in capsys.readouterr().out


@by_vendor
def test_cli_emulate_refuses_a_bad_secret_in_one_line(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulate", case.vendor, *case.bad_option, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("realtime-bridge: error: ")
    assert case.bad_says in err


@by_vendor
def test_cli_emulate_without_the_extra(
    case: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["emulate", case.vendor, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "realtime-bridge[emulator]" in err


# -- serving in the foreground ---------------------------------------------------------------


@dataclass
class Running:
    url: str
    #: What the command printed before and after it was interrupted.
    printed: str


@contextmanager
def running_emulator(vendor: str, banner_lines: int) -> Iterator[Running]:
    """``realtime-bridge emulate VENDOR --port 0`` in a subprocess, until the block ends with
    Ctrl-C; then it must have exited 0, said it stopped, and shown no traceback."""
    command = [sys.executable, "-m", "realtime_bridge.cli", "emulate", vendor, "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the emulator printed nothing"
        printed = "".join(process.stdout.readline() for _ in range(banner_lines))
        url = re.search(r"http://127\.0\.0\.1:\d+", printed)
        assert url, printed
        running = Running(url[0], printed)
        yield running
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        running.printed += out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_ably_emulator_serves_until_interrupted() -> None:
    with running_emulator("ably", banner_lines=3) as running:
        assert httpx.get(running.url + "/time", timeout=10).status_code == 200
    assert "REALTIME_BRIDGE_URL='ably://emulator.key:secret@127.0.0.1:" in running.printed


def test_supabase_emulator_serves_until_interrupted() -> None:
    with running_emulator("supabase", banner_lines=6) as running:
        line = re.search(
            r"REALTIME_BRIDGE_URL='supabase://([\w.-]+)@127\.0\.0\.1:(\d+)\?tls=false'",
            running.printed,
        )
        assert line and running.url.endswith(f":{line[2]}"), running.printed
        response = httpx.post(
            running.url + "/realtime/v1/api/broadcast",
            json=batch(message()),
            headers={"apikey": line[1]},
        )
        assert response.status_code == 202
    assert "AsyncRealtimeClient(" in running.printed


def test_liveblocks_emulator_serves_until_interrupted() -> None:
    secret = liveblocks.DEFAULT_SECRET
    with (
        running_emulator("liveblocks", banner_lines=3) as running,
        Liveblocks(secret=secret, base_url=running.url) as client,
    ):
        assert client.get_rooms().data == []
    assert f"REALTIME_BRIDGE_URL='liveblocks://{secret}@127.0.0.1:" in running.printed
