"""The services the suite relies on answer, as scripts/services promises."""

from __future__ import annotations

import shutil
import subprocess


def test_redis_answers_ping(redis_server: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_postgres_accepts_connections(postgres_server: str) -> None:
    pg_isready = shutil.which("pg_isready")
    assert pg_isready, "pg_isready (PostgreSQL client) is not installed"
    done = subprocess.run(
        [pg_isready, "-h", "127.0.0.1", "-p", "5432"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
