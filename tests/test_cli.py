"""The ``realtime-bridge`` command line, against the real Redis and private redis-servers.

Commands run in-process through ``main([...])`` (fast, output captured by
``capsys``) and once through the installed console script, to prove the entry
point. The promise under test: an expected failure is exactly one stderr line
``realtime-bridge: error: ...``, no traceback, no secret, exit code 2 (1 for
``doctor``'s unreachable adapters).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_servers import RedisProcess, free_port, running_redis

from realtime_bridge import Member
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.cli import main

PASSWORD = "s3cret-cli-test-pw"
WRONG_PASSWORD = "wrong-cli-test-pw"
ROOM = "presence-room.7"


@pytest.fixture(autouse=True)
def isolated_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No REALTIME_BRIDGE_* variable or realtime_bridge.toml from the developer's shell leaks in."""
    for name in list(os.environ):
        if name.startswith("REALTIME_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """A password-protected redis-server of our own, stopped by pid afterwards."""
    with running_redis(password=PASSWORD) as server:
        yield server


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def the_error(err: str) -> str:
    """The single stderr line of a failed command, checked to be one clean line."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("realtime-bridge: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- doctor ---------------------------------------------------------------------


def test_doctor_reports_the_configured_redis_reachable(
    redis_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REALTIME_BRIDGE_URL", redis_server)
    code, out, err = run(capsys, "doctor")
    assert (code, err) == (0, "")
    row = out.splitlines()[2].split()
    assert row[:3] == ["primary", "redis://127.0.0.1:6379/0", "ok"]
    assert "presence" in out and "payload 1 MiB, batch 500" in out


def test_doctor_json_lists_every_role(
    redis_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REALTIME_BRIDGE_URL", redis_server)
    monkeypatch.setenv("REALTIME_BRIDGE_FALLBACK_URLS", "memory://")
    monkeypatch.setenv("REALTIME_BRIDGE_SHADOW_URLS", "memory://?history=10")
    code, out, _ = run(capsys, "doctor", "--json")
    checks = json.loads(out)
    assert code == 0
    assert [c["role"] for c in checks] == ["primary", "fallback", "shadow"]
    assert all(c["reachable"] and c["error"] is None for c in checks)
    assert checks[0]["limits"] == {"max_payload_bytes": 1024 * 1024, "max_events_per_batch": 500}
    assert "history" in checks[1]["capabilities"]


def test_doctor_reads_realtime_bridge_toml(
    redis_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "realtime_bridge.toml").write_text(
        f'[realtime_bridge]\nurl = "{redis_server}"\nfallback_urls = ["memory://"]\n'
    )
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    assert "redis://127.0.0.1:6379/0" in out and "fallback  memory://" in out


def test_installed_console_script_runs_doctor(redis_server: str, tmp_path: Path) -> None:
    script = shutil.which("realtime-bridge", path=str(Path(sys.executable).parent))
    assert script is not None, "the realtime-bridge console script is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_BRIDGE_")}
    env["REALTIME_BRIDGE_URL"] = redis_server
    done = subprocess.run(
        [script, "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "redis://127.0.0.1:6379/0" in done.stdout and " ok " in done.stdout


# -- bad configuration: one line, exit 2, no secret -----------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://:hunter2@example.com/0", "unknown adapter URL 'foo://:***@example.com/0'"),
        ("redis://127.0.0.1:notaport/0", "Port could not be cast to integer"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "bad Redis URL"),
        ("redis://127.0.0.1:6379/0?bogus=1", "unknown option(s) ['bogus']"),
    ],
)
@pytest.mark.parametrize("command", [["doctor"], ["publish", "orders.42", "order.updated"]])
def test_bad_url_is_one_line_without_secret(
    url: str,
    expected: str,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REALTIME_BRIDGE_URL", url)
    code, out, err = run(capsys, *command)
    assert (code, out) == (2, "")
    assert expected in the_error(err)
    assert "hunter2" not in err


def test_bad_url_in_a_fallback_names_its_role(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REALTIME_BRIDGE_FALLBACK_URLS", "memory://,nope://x")
    code, _, err = run(capsys, "doctor")
    assert code == 2
    assert "fallback adapter: unknown adapter URL 'nope://x'" in the_error(err)


def test_invalid_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REALTIME_BRIDGE_RETRY_ATTEMPTS", "0")
    code, _, err = run(capsys, "publish", "orders.42", "order.updated")
    assert code == 2
    assert "retry_attempts: Input should be greater than or equal to 1" in the_error(err)


def test_broken_toml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "realtime_bridge.toml").write_text("url = [\n")
    code, _, err = run(capsys, "doctor")
    assert code == 2
    assert "cannot read realtime_bridge.toml" in the_error(err)


# -- a wrong password, an unreachable server --------------------------------------


def test_wrong_password_doctor_names_adapter_not_password(
    private_redis: RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = private_redis.url(password=WRONG_PASSWORD)
    code, out, err = run(capsys, "doctor", "--url", url)
    assert code == 1
    line = the_error(err)
    assert f"redis://:***@127.0.0.1:{private_redis.port}/0" in line
    assert "refused the password" in line and "refused the password" in out
    assert WRONG_PASSWORD not in out + err and PASSWORD not in out + err


def test_wrong_password_publish_is_one_line_exit_2(
    private_redis: RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = private_redis.url(password=WRONG_PASSWORD)
    code, out, err = run(capsys, "publish", "--url", url, "orders.42", "order.updated")
    assert (code, out) == (2, "")
    line = the_error(err)
    assert f"redis://:***@127.0.0.1:{private_redis.port}/0" in line
    assert "refused the password" in line
    assert WRONG_PASSWORD not in err


def test_right_password_is_reachable(
    private_redis: RedisProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "doctor", "--url", private_redis.url())
    assert (code, err) == (0, "")
    assert f"redis://:***@127.0.0.1:{private_redis.port}/0" in out
    assert PASSWORD not in out


def test_unreachable_port_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, out, err = run(capsys, "doctor", "--url", url)
    assert code == 1
    assert "cannot reach Redis" in the_error(err)
    assert "cannot reach Redis" in out


def test_unreachable_port_publish_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?timeout=2"
    code, out, err = run(capsys, "--quiet", "publish", "--url", url, "orders.42", "x")
    assert (code, out) == (2, "")
    assert "every adapter failed" in the_error(err) and "cannot reach Redis" in err


def test_failover_warning_is_a_single_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = run(capsys, "publish", "--url", url, "orders.42", "x")
    assert code == 2
    lines = err.splitlines()
    assert lines, "expected the failover warning and the error"
    assert all(line.startswith("realtime-bridge: warning: ") for line in lines[:-1])
    assert lines[-1].startswith("realtime-bridge: error: every adapter failed")
    assert "Traceback" not in err


# -- bad arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["publish", "orders 42", "x"], "channel 'orders 42': has ' ' at position 6"),
        (["publish", "orders.42", "x", "{not json"], "DATA_JSON is not valid JSON"),
        (["publish", "orders.42", "x", "[1, 2]"], "data must be a JSON object"),
        (["publish", "orders.42", "x", "--id", "no spaces"], "id: must be 1 to 128"),
        (["history", "orders.42", "--limit", "0"], "history limit must be 1 to 1000, got 0"),
        (["history", "orders.42", "--before", "nope"], "event nope is not in the kept history"),
        (["schema", "no_such_module_here"], "cannot import module 'no_such_module_here'"),
        (["schema", "json"], "module 'json' declares no typed events"),
    ],
)
def test_bad_argument_is_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert expected in the_error(err)


def test_usage_errors_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "history", "orders.42", "--before", "a", "--after", "b")
    assert code == 2 and "not allowed with argument" in err
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("realtime-bridge ")


# -- round trip against the real Redis --------------------------------------------


@pytest.fixture
def redis_url(redis_server: str, redis_prefix: str) -> str:
    """The machine's Redis under a prefix of this test's own, deleted afterwards."""
    return f"{redis_server}?prefix={redis_prefix}"


def publish(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> dict[str, object]:
    code, out, err = run(capsys, "publish", "--url", url, "--json", *args)
    assert (code, err) == (0, ""), err
    receipt: dict[str, object] = json.loads(out)
    return receipt


def test_publish_then_history_round_trip(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in (1, 2, 3):
        receipt = publish(
            capsys, redis_url, "orders.42", "order.updated", f'{{"n": {n}}}', "--id", f"ev-{n}"
        )
        assert receipt["published"] == 1 and receipt["adapter"] == "redis://127.0.0.1:6379/0"

    code, out, _ = run(capsys, "history", "--url", redis_url, "orders.42", "--json")
    page = json.loads(out)
    assert code == 0 and not page["has_more"]
    assert [(e["id"], e["data"]) for e in page["events"]] == [
        ("ev-1", {"n": 1}),
        ("ev-2", {"n": 2}),
        ("ev-3", {"n": 3}),
    ]

    code, out, _ = run(
        capsys,
        "history",
        "--url",
        redis_url,
        "orders.42",
        "--before",
        "ev-3",
        "--limit",
        "1",
        "--json",
    )
    page = json.loads(out)
    assert [e["id"] for e in page["events"]] == ["ev-2"] and page["has_more"]

    code, out, _ = run(capsys, "history", "--url", redis_url, "orders.42", "--limit", "2")
    assert code == 0
    assert "ev-2" in out and "ev-3" in out and "ev-1" not in out
    assert "older events remain: --before ev-2" in out


def test_publish_same_id_twice_reports_the_duplicate(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = publish(capsys, redis_url, "orders.42", "order.updated", "--id", "same-1")
    again = publish(capsys, redis_url, "orders.42", "order.updated", "--id", "same-1")
    assert (first["published"], first["duplicates"]) == (1, [])
    assert (again["published"], again["duplicates"]) == (0, ["same-1"])
    code, out, _ = run(capsys, "publish", "--url", redis_url, "orders.42", "x", "--id", "same-1")
    assert code == 0 and out.startswith("duplicate same-1 dropped via redis://127.0.0.1:6379/0")


def test_presence_and_occupancy(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def enter() -> None:
        async with RedisAdapter.from_url(redis_url) as adapter:
            await adapter.enter_presence(ROOM, Member("alice", {"name": "Alice"}), ttl=60)
            await adapter.enter_presence(ROOM, Member("bob"), ttl=60)

    asyncio.run(enter())
    code, out, _ = run(capsys, "presence", "--url", redis_url, ROOM, "--json")
    assert code == 0
    assert json.loads(out)["members"] == [
        {"id": "alice", "info": {"name": "Alice"}},
        {"id": "bob", "info": {}},
    ]
    code, out, _ = run(capsys, "presence", "--url", redis_url, ROOM)
    assert out.startswith(f"{ROOM}: 2 members") and '"name": "Alice"' in out

    code, out, _ = run(capsys, "occupancy", "--url", redis_url, ROOM, "--json")
    assert json.loads(out) == {"channel": ROOM, "subscribers": 0, "members": 2}
    code, out, _ = run(capsys, "occupancy", "--url", redis_url, "orders.42")
    assert (code, out) == (0, "orders.42: 0 subscribers, 0 members\n")


# -- schema and demo ----------------------------------------------------------------


def test_schema_prints_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema", "sample_events")
    schema = json.loads(out)
    assert (code, err) == (0, "")
    assert schema["discriminator"]["mapping"] == {
        "order.cancelled": "#/$defs/OrderCancelled",
        "order.updated": "#/$defs/OrderUpdated",
    }
    assert schema["$defs"]["OrderUpdated"]["properties"]["type"]["const"] == "order.updated"
    assert "NotAnEvent" not in schema["$defs"]


def test_schema_imports_from_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cli_local_events.py").write_text(
        "from __future__ import annotations\n"
        "from typing import Literal\n"
        "from realtime_bridge import Event\n"
        "class Pinged(Event):\n"
        '    type: Literal["ping"] = "ping"\n'
    )
    try:
        code, out, _ = run(capsys, "schema", "cli_local_events")
    finally:
        sys.modules.pop("cli_local_events", None)
    assert code == 0 and "Pinged" in json.loads(out)["$defs"]
    assert str(tmp_path) not in sys.path


def test_demo_tour_walks_through_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--tour")
    assert (code, err) == (0, "")
    for heading in (
        "1. Declare a typed event",
        "2. Subscribe a live listener to orders.42",
        "3. Publish one event, then a batch of three",
        "4. The listener received them, in order",
        "5. Publish the same event again",
        "6. History, paged with a cursor",
        "7. Presence and occupancy",
        "8. An outage",
        "9. What the Bridge metered",
    ):
        assert heading in out
    assert "same ids, same order as published: True" in out
    assert "dropped duplicate(s)" in out and "history still holds 4 events" in out
    assert "placed, paid (has_more=False)" in out
    assert "occupancy(presence-room.7): 0 subscriber(s), 2 member(s)" in out
    assert "published 1 via memory:// (failed over)" in out
    assert "after the outage  -> published 1 via fake://primary" in out
    assert "fake://primary: injected failure" in out
