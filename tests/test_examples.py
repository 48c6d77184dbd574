"""The scripts under examples/ run and say what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart() -> None:
    out = run("quickstart.py")
    assert "published 3 via memory://" in out
    assert "live: order.updated paid" in out
    assert "latest two: ['packed', 'shipped']" in out


def test_redis_with_fallback_uses_redis(redis_server: str, redis_prefix: str) -> None:
    out = run("redis_with_fallback.py", f"{redis_server}?prefix={redis_prefix}")
    assert "delivered by redis://127.0.0.1:6379/0 (failed over: False)" in out


def test_redis_with_fallback_fails_over_when_redis_is_down() -> None:
    out = run("redis_with_fallback.py", "redis://127.0.0.1:1/0")
    assert "delivered by memory:// (failed over: True)" in out
    assert "redis://127.0.0.1:1/0: 0 events, 2 failures" in out
