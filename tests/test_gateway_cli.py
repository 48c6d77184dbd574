"""``realtime-bridge gateway``: served for real in a subprocess, refused in one clean line.

Also: the optional extra stays optional (issuing tokens needs neither
starlette nor uvicorn; serving without them is a one-line error naming the extra).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_gateway_clients import SECRET

from realtime_bridge.cli import main


@pytest.fixture(autouse=True)
def isolated_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No REALTIME_BRIDGE_* variable from the developer's shell leaks in."""
    for name in list(os.environ):
        if name.startswith("REALTIME_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def the_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("realtime-bridge: error: "), err
    return lines[0]


def test_gateway_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--redis URL", "--secret", "--host", "--port", "--heartbeat", "--cors-origin"):
        assert option in out


def test_gateway_serves_until_sigterm(redis_server: str, redis_prefix: str) -> None:
    environment = {**os.environ, "REALTIME_BRIDGE_GATEWAY_SECRET": SECRET}
    command = [
        sys.executable,
        "-m",
        "realtime_bridge.cli",
        "gateway",
        "--redis",
        f"{redis_server}?prefix={redis_prefix}",
        "--port",
        "0",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the gateway printed nothing"
        first = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url, first
        assert f"prefix {redis_prefix!r}" in first and SECRET not in first
        health = httpx.get(url[0] + "/healthz", timeout=10)
        assert (health.status_code, health.json()["status"]) == (200, "ok")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert err == "gateway stopped\n", err


def test_gateway_without_a_secret_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--redis", "redis://127.0.0.1:6379/0", "--port", "0"]) == 2
    assert "--secret" in the_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--redis", "redis://127.0.0.1:6379/0?cluster=true"], "not Redis Cluster"),
        (["--redis", "redis://127.0.0.1:6379/0?histroy=1"], "unknown option"),
        (["--secret", "short"], "at least 32 bytes"),
        (["--port", "70000"], "port"),
    ],
)
def test_gateway_refuses_bad_configuration_in_one_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["gateway", "--port", "0", "--secret", SECRET, *arguments]
    assert main(argv) == 2
    error = the_error(capsys.readouterr().err)
    assert message in error
    assert SECRET not in error and "'short'" not in error


def test_gateway_without_the_extra_is_one_line_naming_it() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from realtime_bridge.cli import main\n"
        f"raise SystemExit(main(['gateway', '--secret', {SECRET!r}, '--port', '0']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert the_error(done.stderr).endswith("pip install 'realtime-bridge[gateway]'")


def test_issuing_tokens_needs_neither_starlette_nor_uvicorn() -> None:
    code = (
        "import sys\n"
        "from realtime_bridge import Bridge\n"
        f"bridge = Bridge.from_url('redis://127.0.0.1:6379/0?gateway_secret={SECRET}')\n"
        "assert bridge.authorize('orders.1')['token']\n"
        "assert not {'starlette', 'uvicorn'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
