"""Shared fixtures: the real services this machine runs, and one adapter per kind.

A test that needs a service asks for its fixture. If the service does not
answer: in CI (``CI=true``) the test fails with a message naming the service,
because CI machines have it and a skip there would hide a broken setup;
elsewhere it is skipped with that same reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from realtime_bridge.adapters.base import Adapter
from realtime_bridge.adapters.memory import MemoryAdapter

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432


def service_missing(name: str, host: str, port: int) -> None:
    """Fail in CI, skip elsewhere, naming the service that did not answer."""
    reason = f"{name} at {host}:{port} is not answering (start it: see scripts/services)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI has {name}, but: {reason}", pytrace=False)
    pytest.skip(reason)


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def redis_answers(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of the machine's Redis; fails in CI and skips elsewhere if it is down."""
    if not redis_answers():
        service_missing("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The DSN of the machine's PostgreSQL; fails in CI and skips elsewhere if it is down."""
    if not port_answers(POSTGRES_HOST, POSTGRES_PORT):
        service_missing("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    import redis

    prefix = f"rbtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def redis_adapter(redis_server: str, redis_prefix: str) -> AsyncIterator[Adapter]:
    from realtime_bridge.adapters.redis import RedisAdapter

    adapter = RedisAdapter.from_url(f"{redis_server}?prefix={redis_prefix}&history=100")
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def memory_adapter() -> AsyncIterator[Adapter]:
    adapter = MemoryAdapter(history=100)
    yield adapter
    await adapter.aclose()


@pytest.fixture(params=["memory", "redis"])
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """Every adapter that joins the contract suite; later adapters add their name here."""
    return request.getfixturevalue(f"{request.param}_adapter")  # type: ignore[no-any-return]
