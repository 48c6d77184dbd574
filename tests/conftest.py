"""Shared fixtures: the real services this machine runs, and one adapter per kind.

A test that needs a service asks for its fixture. If the service does not
answer: in CI (``CI=true``) the test fails with a message naming the service,
because CI machines have it and a skip there would hide a broken setup;
elsewhere it is skipped with that same reason.

The ``adapter`` fixture runs a test once per adapter of the contract suite
(``CONTRACT_ADAPTERS``). A test marked ``@pytest.mark.needs(Capability.X, ...)``
is generated only for the adapters whose class declares every capability named:
the others get no item at all (not a skip), and what they lack is covered by
``test_capabilities_match_the_methods`` in ``test_contract.py``, which checks on
every adapter that each undeclared capability is refused before any I/O.

Where adapters that declare the same capability still differ in a way the contract
allows (history capped at N events or kept for a time; duplicates reported or
dropped silently), a test marked ``@pytest.mark.trait("name", ...)`` is likewise
generated only for the adapters that have every trait named (``ADAPTER_TRAITS``).
Traits are facts about these fixtures' adapters, kept here with the tests; they are
not capabilities of the package.

``KNOWN_ADAPTER_BUGS`` marks a contract test ``xfail(strict=True)`` for one adapter,
with the reason: it must keep failing until the adapter is fixed, then the entry goes.
"""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from realtime_bridge.adapters.base import Adapter, Capability
from realtime_bridge.adapters.memory import MemoryAdapter

if TYPE_CHECKING:
    from soketi_server import SoketiServer

# soketi (a Pusher-protocol server) for the pusher adapter: ``soketi``, ``fresh_soketi``...;
# the Ably emulator (or live Ably) for the ably adapter: ``ably_adapter``, ``serve_ably``...;
# the Supabase emulator (or a live project) for the supabase adapter: ``supabase_adapter``,
# ``serve_supabase``...; the Liveblocks emulator (or Liveblocks) for the liveblocks adapter:
# ``liveblocks_adapter``, ``serve_liveblocks``...; NATS JetStream (the machine's, or a
# private server) for the nats adapter: ``nats_adapter``, ``running_nats``... Loaded here,
# the rootdir-level conftest of the tests, so every module can use them.
pytest_plugins = [
    "conftest_pusher",
    "conftest_ably",
    "conftest_supabase",
    "conftest_liveblocks",
    "conftest_nats",
]

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


@pytest.fixture
async def pusher_adapter(soketi: SoketiServer) -> AsyncIterator[Adapter]:
    """The pusher adapter aimed at the session's soketi (plain HTTP on loopback)."""
    from realtime_bridge.adapters.pusher import PusherAdapter

    key, secret = quote(soketi.key, safe=""), quote(soketi.secret, safe="")
    adapter = PusherAdapter.from_url(
        f"pusher://{key}:{secret}@127.0.0.1:{soketi.port}/{soketi.app_id}?tls=false"
    )
    yield adapter
    await adapter.aclose()


#: The adapters of the contract suite: each name's fixture is ``{name}_adapter``.
#: A vendor adapter joins by adding its class here and that fixture above.
CONTRACT_ADAPTERS = {
    "memory": "realtime_bridge.adapters.memory:MemoryAdapter",
    "redis": "realtime_bridge.adapters.redis:RedisAdapter",
    "pusher": "realtime_bridge.adapters.pusher:PusherAdapter",
    "ably": "realtime_bridge.adapters.ably:AblyAdapter",  # fixture in conftest_ably
    "supabase": "realtime_bridge.adapters.supabase:SupabaseAdapter",  # in conftest_supabase
    "nats": "realtime_bridge.adapters.nats:NatsAdapter",  # fixture in conftest_nats
    "liveblocks": "realtime_bridge.adapters.liveblocks:LiveblocksAdapter",  # conftest_liveblocks
}

#: What a ``trait`` mark may name, and what it means.
TRAITS = {
    "capped_history": (
        "history keeps the newest N events of a channel (these fixtures build history=100) "
        "and forgets older ones; Ably keeps history for a time instead (test_ably_emulated)"
    ),
    "reports_duplicates": (
        "publish() reports the ids it dropped as duplicates (PublishResult.duplicates); "
        "Ably drops a duplicate silently, answering as for a new message"
    ),
    "counts_subscribers": (
        "occupancy() counts the connections subscribed to a channel (Occupancy.subscribers); "
        "Supabase shows a server only presence, so a listener that does not track is "
        "invisible and subscribers is None (test_supabase_emulated)"
    ),
}

#: The traits of each contract-suite adapter, as its fixture builds it.
ADAPTER_TRAITS: dict[str, frozenset[str]] = {
    "memory": frozenset({"capped_history", "reports_duplicates", "counts_subscribers"}),
    "redis": frozenset({"capped_history", "reports_duplicates", "counts_subscribers"}),
    "pusher": frozenset({"counts_subscribers"}),  # no history, not idempotent
    "ably": frozenset({"counts_subscribers"}),
    "supabase": frozenset(),  # no history, not idempotent, subscribers unknown
    # history capped per channel (max_msgs_per_subject), duplicates flagged in the acks,
    # subscribers are the JetStream consumers of the channel's subject
    "nats": frozenset({"capped_history", "reports_duplicates", "counts_subscribers"}),
    "liveblocks": frozenset({"counts_subscribers"}),  # no history, not idempotent
}

#: (adapter, test function) -> why that contract test fails on that adapter today.
KNOWN_ADAPTER_BUGS: dict[tuple[str, str], str] = {}


@pytest.fixture(params=list(CONTRACT_ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """Every adapter of the contract suite, or those a ``needs`` mark selects."""
    return request.getfixturevalue(f"{request.param}_adapter")  # type: ignore[no-any-return]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*capabilities): generate this test (which takes the adapter fixture) only "
        "for the contract-suite adapters whose class declares every one of these "
        "realtime_bridge Capability values; see tests/conftest.py",
    )
    config.addinivalue_line(
        "markers",
        "trait(*names): generate this test (which takes the adapter fixture) only for the "
        "contract-suite adapters that have every one of these traits (ADAPTER_TRAITS); "
        "see tests/conftest.py",
    )


def adapter_class(name: str) -> type[Adapter]:
    """The class of a contract-suite adapter, by its name in ``CONTRACT_ADAPTERS``."""
    module, _, attribute = CONTRACT_ADAPTERS[name].partition(":")
    found = getattr(importlib.import_module(module), attribute)
    assert isinstance(found, type) and issubclass(found, Adapter), CONTRACT_ADAPTERS[name]
    return found


def _needed(definition: pytest.Function) -> frozenset[Capability]:
    needed: set[Capability] = set()
    for mark in definition.iter_markers("needs"):
        if not mark.args or mark.kwargs:
            pytest.fail(f"{definition.nodeid}: write needs(Capability.X, ...)", pytrace=False)
        for capability in mark.args:
            if not isinstance(capability, Capability):
                pytest.fail(
                    f"{definition.nodeid}: needs() takes Capability values, got {capability!r}",
                    pytrace=False,
                )
            needed.add(capability)
    return frozenset(needed)


def _traits(definition: pytest.Function) -> frozenset[str]:
    wanted: set[str] = set()
    for mark in definition.iter_markers("trait"):
        if not mark.args or mark.kwargs:
            pytest.fail(f"{definition.nodeid}: write trait('name', ...)", pytrace=False)
        for name in mark.args:
            if name not in TRAITS:
                pytest.fail(
                    f"{definition.nodeid}: unknown trait {name!r} (known: {sorted(TRAITS)})",
                    pytrace=False,
                )
            wanted.add(name)
    return frozenset(wanted)


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise a ``needs``- or ``trait``-marked test over the adapters that have it.

    The test gets a ``parametrize("adapter", ..., indirect=True)`` mark, which takes
    precedence over the fixture's own params. This runs first (``tryfirst``) so
    that pytest's own hooks, which apply parametrize marks and fixture params, see it.
    """
    needed = _needed(metafunc.definition)
    traits = _traits(metafunc.definition)
    if not needed and not traits:
        return
    if "adapter" not in metafunc.fixturenames:
        pytest.fail(
            f"{metafunc.definition.nodeid}: needs() and trait() select adapters, so the test "
            "must take the adapter fixture",
            pytrace=False,
        )
    names = [
        name
        for name in CONTRACT_ADAPTERS
        if needed <= adapter_class(name).capabilities and traits <= ADAPTER_TRAITS[name]
    ]
    if not names:  # an empty parameter set would be a skip in disguise
        wanted = ", ".join(sorted(needed) + sorted(traits))
        pytest.fail(
            f"{metafunc.definition.nodeid}: no adapter of the suite has {wanted}",
            pytrace=False,
        )
    # Prepended, so the adapter comes first in the ids (test[memory-before]) as it did
    # when the fixture's params parametrised it.
    selected = pytest.mark.parametrize("adapter", names, indirect=True)
    metafunc.definition.add_marker(selected, append=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each contract test in ``KNOWN_ADAPTER_BUGS`` xfail(strict=True) on its adapter."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("adapter") if callspec is not None else None
        function = getattr(item, "originalname", None)
        reason = KNOWN_ADAPTER_BUGS.get((str(name), str(function)))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{name}: {reason}"))
