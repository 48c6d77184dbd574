"""Django: enqueue inside ``transaction.atomic``, the app's migration and commands, settings.

Runs the test project in ``tests/django_site`` against real PostgreSQL (a
scratch database per test, through Django's psycopg backend) and SQLite (a
file per test): ``manage.py migrate`` creates the outbox tables; what commits
with the order is stored and ``realtime_relay`` publishes it to a real Redis
with per-channel seqs; a rolled-back block or savepoint stores nothing;
outside a transaction ``enqueue`` refuses; ``realtime_relay`` also runs as a
process until SIGTERM. Django is configured once for this process
(``settings.configure``), and each test points an alias at its own database.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from outbox_fixtures import run_async, sqlite_url_of, stored_rows

from realtime_bridge import Bridge, Event
from realtime_bridge.adapters.base import Limits
from realtime_bridge.adapters.memory import MemoryAdapter
from realtime_bridge.errors import ConfigurationError, PayloadTooLarge
from realtime_bridge.outbox import Outbox, sql

pytest_plugins = ["conftest_outbox"]

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs" / "integrations.md"


class Boom(Exception):
    """The application fails after writing: its transaction rolls back."""


@pytest.fixture(scope="module", autouse=True)
def django_configured(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Django configured from ``django_site.settings``, once for this process; an alias no
    test has pointed anywhere names a file in pytest's temporary directory."""
    import django
    from django.conf import settings

    if not settings.configured:
        from django_site import settings as site

        options = {name: getattr(site, name) for name in dir(site) if name.isupper()}
        unused = tmp_path_factory.mktemp("django") / "unused.sqlite3"
        options["DATABASES"]["default"]["NAME"] = str(unused)
        settings.configure(**options)
        django.setup()


@dataclass
class Site:
    """The test project pointed at one database: its alias, NAME, and outbox URL."""

    alias: str
    name: str
    url: str

    def rows(self) -> list[Any]:
        return run_async(lambda: stored_rows(self.url))

    def orders(self) -> list[str]:
        from django_site.shop.models import Order

        return list(Order.objects.using(self.alias).order_by("pk").values_list("status", flat=True))

    def add_order(self, status: str) -> Any:
        from django_site.shop.models import Order

        return Order.objects.using(self.alias).create(status=status)

    def atomic(self) -> AbstractContextManager[Any]:
        from django.db import transaction

        return transaction.atomic(using=self.alias)

    def configured(self, **options: Any) -> AbstractContextManager[Any]:
        """``REALTIME_BRIDGE`` using this alias (and a memory adapter unless told)."""
        from django.test import override_settings

        return override_settings(
            REALTIME_BRIDGE={"url": "memory://", "using": self.alias, **options}
        )

    def environment(self, bridge_url: str) -> dict[str, str]:
        """What a ``manage.py`` subprocess needs to run against this database."""
        database = {"RB_DJANGO_PG_NAME" if self.alias == "pg" else "RB_DJANGO_SQLITE": self.name}
        path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        return {
            **os.environ,
            **database,
            "PYTHONPATH": path,
            "DJANGO_SETTINGS_MODULE": "django_site.settings",
            "RB_DJANGO_USING": self.alias,
            "RB_DJANGO_BRIDGE_URL": bridge_url,
        }


@pytest.fixture(
    params=[
        pytest.param("default", id="sqlite"),
        pytest.param("pg", id="postgres", marks=pytest.mark.postgres),
    ]
)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """An alias pointed at a fresh database, migrated with ``manage.py migrate``."""
    from django.core.management import call_command
    from django.db import connections

    alias = request.param
    if alias == "pg":
        url = str(request.getfixturevalue("pg_empty_url"))  # no outbox tables yet
        name = url.rsplit("/", 1)[1]
    else:
        path = tmp_path / "app.sqlite3"
        url, name = sqlite_url_of(path), str(path)
    connection = connections[alias]
    connection.close()
    original = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = name
    site = Site(alias, name, url)
    try:
        with site.configured():
            call_command("migrate", database=alias, run_syncdb=True, verbosity=0)
            yield site
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


def event(n: int, channel: str = "orders.1") -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n})


def relay_output(**options: Any) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("realtime_relay", stdout=out, **options)
    return out.getvalue()


def redis_history(redis_url: str, channel: str) -> list[Event]:
    from realtime_bridge.adapters.redis import RedisAdapter

    async def read() -> list[Event]:
        adapter = RedisAdapter.from_url(redis_url)
        try:
            return list((await adapter.history(channel)).events)
        finally:
            await adapter.aclose()

    return run_async(read)


# -- the migration -----------------------------------------------------------------------------


def test_manage_py_migrate_created_the_outbox_tables(site: Site) -> None:
    from django.db import connections

    from realtime_bridge.integrations.django import migrate_outbox

    dialect = "postgres" if site.alias == "pg" else "sqlite"
    with connections[site.alias].cursor() as cursor:
        cursor.execute("SELECT name FROM realtime_outbox_migrations ORDER BY name")
        applied = [name for (name,) in cursor.fetchall()]
    assert applied == [name for name, _ in sql.migrations(dialect)]
    assert site.rows() == []
    assert migrate_outbox(connections[site.alias]) == []  # up to date: nothing to apply


def test_migrate_on_another_alias_leaves_it_alone(site: Site) -> None:
    from django.db import connections

    from realtime_bridge.integrations.django import migrate_outbox

    other = "default" if site.alias == "pg" else "pg"
    assert migrate_outbox(connections[other]) == []  # no connection made, nothing created


# -- enqueue in transaction.atomic --------------------------------------------------------------


def test_events_commit_with_the_order(site: Site) -> None:
    from realtime_bridge.integrations.django import enqueue

    first, second, third = event(1), event(2, "orders.2"), event(3)
    with site.atomic():
        site.add_order("paid")
        enqueue(first, second)  # several at once
        enqueue(third)  # one alone
        enqueue()  # nothing: a no-op
    rows = site.rows()
    assert [(r.event_id, r.channel, r.state) for r in rows] == [
        (first.id, "orders.1", "pending"),
        (second.id, "orders.2", "pending"),
        (third.id, "orders.1", "pending"),
    ]
    assert [json.loads(r.data) for r in rows] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert site.orders() == ["paid"]


def test_a_rolled_back_block_or_savepoint_stores_nothing(site: Site) -> None:
    from realtime_bridge.integrations.django import enqueue

    with pytest.raises(Boom), site.atomic():
        site.add_order("lost")
        enqueue(event(1))
        raise Boom
    kept, dropped = event(2), event(3)
    with site.atomic():
        site.add_order("kept")
        enqueue(kept)
        with pytest.raises(Boom), site.atomic():  # a savepoint
            site.add_order("dropped")
            enqueue(dropped)
            raise Boom
    assert [r.event_id for r in site.rows()] == [kept.id]
    assert site.orders() == ["kept"]


def test_the_same_event_is_stored_once(site: Site) -> None:
    from realtime_bridge.integrations.django import enqueue

    once = event(1)
    with site.atomic():
        enqueue(once, once)
    with site.atomic():
        enqueue(once, event(2))
    assert [r.event_id for r in site.rows()].count(once.id) == 1
    assert len(site.rows()) == 2


def test_enqueue_outside_a_transaction_is_refused(site: Site) -> None:
    from realtime_bridge.integrations.django import enqueue

    with pytest.raises(ConfigurationError) as raised:
        enqueue(event(1))
    assert f"transaction.atomic(using={site.alias!r})" in str(raised.value)
    assert site.rows() == []


def test_an_event_over_a_limit_raises_before_any_insert(site: Site) -> None:
    from realtime_bridge.integrations.django import enqueue

    small = Bridge(MemoryAdapter(limits=Limits(max_payload_bytes=100, max_events_per_batch=10)))
    big = Event(channel="orders.1", type="order.updated", data={"note": "x" * 200})
    with site.atomic():
        site.add_order("paid")
        with pytest.raises(PayloadTooLarge, match="at most 100 bytes"):
            enqueue(big, outbox=Outbox(site.url, bridge=small))
        # The settings' adapter (Pusher: 10 KiB) is what enqueue checks by default.
        with (
            site.configured(url="pusher://KEY:SECRET@127.0.0.1:6001/1"),
            pytest.raises(PayloadTooLarge, match="at most 10240 bytes"),
        ):
            enqueue(Event(channel="orders.1", type="t", data={"note": "x" * 11_000}))
        enqueue(event(1))  # the transaction is untouched, and still usable
    assert site.orders() == ["paid"]
    assert [json.loads(r.data) for r in site.rows()] == [{"n": 1}]


# -- the commands ---------------------------------------------------------------------------


def test_realtime_relay_drains_to_redis_in_commit_order(
    site: Site, redis_server: str, redis_prefix: str
) -> None:
    from realtime_bridge.integrations.django import enqueue

    redis_url = f"{redis_server}?prefix={redis_prefix}"
    with site.atomic():
        enqueue(event(1), event(2, "orders.2"))
    with site.atomic():
        enqueue(event(3))
    with site.configured(url=redis_url):
        assert relay_output(drain=True) == "drained: 3 event(s) published\n"
    assert [(e.seq, e.data["n"]) for e in redis_history(redis_url, "orders.1")] == [(1, 1), (2, 3)]
    assert [(e.seq, e.data["n"]) for e in redis_history(redis_url, "orders.2")] == [(1, 2)]
    assert {r.state for r in site.rows()} == {"sent"}


def test_realtime_relay_reports_a_bad_setup_in_one_line_without_the_secret(site: Site) -> None:
    from django.core.management.base import CommandError

    bad = "pusher://KEY:SECRET@127.0.0.1:6001/not-a-number"
    with site.configured(url=bad), pytest.raises(CommandError) as raised:
        relay_output(drain=True)
    assert "Pusher app id must be numeric" in str(raised.value)
    assert "SECRET" not in str(raised.value)


def test_realtime_relay_runs_as_a_process_until_sigterm(
    site: Site, redis_server: str, redis_prefix: str
) -> None:
    from realtime_bridge.integrations.django import enqueue

    redis_url = f"{redis_server}?prefix={redis_prefix}"
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "realtime_relay", "--poll", "0.2"],
        env=site.environment(redis_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with site.atomic():  # written while the relay is already running
            site.add_order("paid")
            enqueue(event(1), event(2))
        deadline = time.monotonic() + 30  # a bound on a stuck relay, not a speed claim
        while {r.state for r in site.rows()} != {"sent"}:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate()
                pytest.fail(f"the relay did not publish; its stderr:\n{err.decode()}")
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert [(e.seq, e.data["n"]) for e in redis_history(redis_url, "orders.1")] == [(1, 1), (2, 2)]


def test_realtime_outbox_runs_the_cli_outbox_commands(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import call_command

    from realtime_bridge.integrations.django import enqueue

    before = os.environ.get("REALTIME_BRIDGE_DATABASE_URL")
    with site.atomic():
        enqueue(event(1), event(2))
    call_command("realtime_outbox", "status", "--json")
    assert json.loads(capsys.readouterr().out)["pending"] == 2
    with pytest.raises(SystemExit) as exited:
        call_command("realtime_outbox", "dead", "retry")  # names nothing to retry
    assert exited.value.code != 0
    assert "--channel" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        call_command("realtime_outbox")  # no command: a usage error...
    assert exited.value.code == 2
    assert site.name not in capsys.readouterr().err  # ...that does not show the database
    assert os.environ.get("REALTIME_BRIDGE_DATABASE_URL") == before  # lent for the call only


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("site", [pytest.param("pg", marks=pytest.mark.postgres)], indirect=True)
def test_settings_map_onto_bridge_settings_and_find_the_database(site: Site) -> None:
    from realtime_bridge.integrations.django import bridge_settings

    options = {"URL": "redis://127.0.0.1:6379/3", "retry_attempts": 2, "using": "pg"}
    with site.configured(**options):
        settings = bridge_settings()
    assert settings.url.get_secret_value() == "redis://127.0.0.1:6379/3"
    assert settings.retry_attempts == 2
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == site.url
    with site.configured(database_url="postgresql://elsewhere/outbox"):
        given = bridge_settings().database_url
    assert given is not None and given.get_secret_value() == "postgresql://elsewhere/outbox"


@pytest.mark.parametrize(
    ("config", "url"),
    [
        (
            {"USER": "app", "PASSWORD": "p@ss/word", "HOST": "db.internal", "PORT": 6432},
            "postgresql://app:p%40ss%2Fword@db.internal:6432/shop",
        ),
        ({"USER": "", "HOST": "/run/postgresql"}, "postgresql:///shop?host=%2Frun%2Fpostgresql"),
        (
            {"USER": "app", "HOST": "db", "OPTIONS": {"sslmode": "require"}},
            "postgresql://app@db/shop?sslmode=require",
        ),
    ],
)
def test_the_outbox_url_of_a_postgresql_alias(config: dict[str, Any], url: str) -> None:
    from django.db import connections

    from realtime_bridge.integrations.django import outbox_database_url

    settings_dict = connections["pg"].settings_dict
    saved = dict(settings_dict)
    settings_dict.update({"NAME": "shop", "USER": "", "PASSWORD": "", "PORT": "", "OPTIONS": {}})
    settings_dict.update(config)
    try:
        assert outbox_database_url("pg") == url
    finally:
        settings_dict.clear()
        settings_dict.update(saved)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ({"urls": "memory://"}, ["unknown key(s) ['urls']", "'url'", "'fallback_urls'"]),
        ({"using": "replica"}, ["'replica'", "DATABASES"]),
        ("memory://", ["must be a dict", "str"]),
        ({"retry_attempts": "often"}, ["retry_attempts", "valid integer"]),
    ],
)
def test_bad_settings_are_refused_naming_the_key(setting: Any, words: list[str]) -> None:
    from django.test import override_settings

    from realtime_bridge.integrations.django import bridge_settings, enqueue

    with override_settings(REALTIME_BRIDGE=setting):
        for call in (bridge_settings, lambda: enqueue(event(1))):
            with pytest.raises(ConfigurationError) as raised:
                call()
            assert all(word in str(raised.value) for word in words), raised.value
            assert "often" not in str(raised.value)  # values may be secrets: never shown


def test_an_in_memory_sqlite_database_cannot_hold_the_relays_outbox() -> None:
    from django.db import connections

    from realtime_bridge.integrations.django import outbox_database_url

    settings_dict = connections["default"].settings_dict
    saved = settings_dict["NAME"]
    settings_dict["NAME"] = ":memory:"
    try:
        with pytest.raises(ConfigurationError, match=r"in-memory \(or URI-named\) SQLite"):
            outbox_database_url("default")
    finally:
        settings_dict["NAME"] = saved


# -- the snippets of docs/integrations.md ------------------------------------------------------


def django_snippets() -> list[str]:
    """The ```python blocks of the Django section of docs/integrations.md, in order."""
    text = DOCS.read_text()
    section = text.split("\n## Django\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("site", ["default"], indirect=True)
def test_the_django_snippets_in_the_docs_work(site: Site) -> None:
    from realtime_bridge.integrations.django import bridge_settings

    snippets = django_snippets()
    assert len(snippets) >= 2
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for code in snippets:
        exec(compile(code, "<docs/integrations.md>", "exec", dont_inherit=True), namespace)
    documented = namespace["REALTIME_BRIDGE"]
    assert "realtime_bridge.integrations.django_app" in namespace["INSTALLED_APPS"]
    with site.configured(**{**documented, "url": "memory://"}):
        assert bridge_settings().database_url is not None  # the documented keys are real
        order = site.add_order("new")
        namespace["mark_paid"](order)
        assert relay_output(drain=True) == "drained: 1 event(s) published\n"
    [row] = site.rows()
    assert (row.channel, row.type, row.state) == (f"orders.{order.pk}", "order.updated", "sent")
    assert json.loads(row.data) == {"id": order.pk, "status": "paid"}
    assert site.orders() == ["paid"]
