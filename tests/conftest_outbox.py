"""Fixtures for the outbox tests: real databases, fast and disposable.

PostgreSQL: one template database per test session, migrated once with
``Outbox.migrate()``; each test gets ``CREATE DATABASE rbtest_<random> TEMPLATE
<template>`` (a file copy, much faster than migrating) and drops it afterwards,
terminating any connection a failed test left behind. The template's name has
a random suffix, so two test sessions on this machine never share one (a
database being copied must have no other connection). SQLite: a file in
``tmp_path``.

A test module loads these with ``pytest_plugins = ["conftest_outbox"]``; the
helpers they use live in ``outbox_fixtures``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from outbox_fixtures import (
    create_database,
    drop_database,
    migrate,
    random_database_name,
    run_async,
    sqlite_url_of,
)


@pytest.fixture(scope="session")
def pg_template(postgres_server: str) -> Iterator[str]:
    """The name of this session's migrated template database."""
    name = random_database_name("template_")
    url = create_database(postgres_server, name)
    try:
        applied = run_async(lambda: migrate(url))
        assert applied, "a fresh template database must have had migrations applied"
        yield name
    finally:
        drop_database(postgres_server, name)


@pytest.fixture
def pg_url(postgres_server: str, pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    with _scratch_database(postgres_server, template=pg_template) as url:
        yield url


@pytest.fixture
def pg_empty_url(postgres_server: str) -> Iterator[str]:
    """An empty PostgreSQL database (no outbox schema), dropped afterwards."""
    with _scratch_database(postgres_server) as url:
        yield url


@pytest.fixture
def pg_empty_url_2(postgres_server: str) -> Iterator[str]:
    """A second empty database, for comparing two ways of building one."""
    with _scratch_database(postgres_server) as url:
        yield url


@contextlib.contextmanager
def _scratch_database(postgres_server: str, *, template: str | None = None) -> Iterator[str]:
    """A database with a random name (a copy of ``template`` if given), dropped on exit."""
    name = random_database_name()
    url = create_database(postgres_server, name, template=template)
    try:
        yield url
    finally:
        drop_database(postgres_server, name)


# -- SQLite ------------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    """A path for a SQLite database file that does not exist yet."""
    return tmp_path / "outbox.db"


@pytest.fixture
def sqlite_url(sqlite_file: Path) -> str:
    """A migrated SQLite outbox database in ``tmp_path``."""
    url = sqlite_url_of(sqlite_file)
    assert run_async(lambda: migrate(url))
    return url


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("sqlite"),
    ]
)
def outbox_url(request: pytest.FixtureRequest) -> str:
    """A migrated outbox database of each dialect."""
    fixture = "pg_url" if request.param == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(fixture))
