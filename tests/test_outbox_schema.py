"""The outbox schema: ``schema.sql`` and the migrations build the same database.

A fresh database gets ``schema.sql``; an existing one is brought up to date by
``migrations/*.sql`` in order. Both paths must end in the same catalog, or a
user who upgrades has a different database from one who installs today. On
PostgreSQL the catalog is dumped from the system tables (columns with types,
defaults, nullability and generated expressions; indexes; constraints;
triggers; function bodies); on SQLite, ``sqlite_master`` and the table pragmas.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from outbox_fixtures import migrate, pg_connection, sqlite_url_of

from realtime_bridge.outbox import sql

pytest_plugins = ["conftest_outbox"]

MIGRATIONS_TABLE = "realtime_outbox_migrations"
TABLES = ("realtime_outbox", "realtime_outbox_channels")
PG_INDEXES = (
    "realtime_outbox_pending",
    "realtime_outbox_waiting",
    "realtime_outbox_history",
    "realtime_outbox_sent_at",
    "realtime_outbox_dead",
    "realtime_outbox_event_id_key",
)


# -- migration files ----------------------------------------------------------------------


@pytest.mark.parametrize("dialect", sql.DIALECTS)
def test_migration_names_sort_in_the_order_they_must_be_applied(dialect: str) -> None:
    folder = resources.files(sql.__name__).joinpath(dialect, "migrations")
    files = sorted(f.name for f in folder.iterdir() if f.name != "__pycache__")
    # Every file is a migration: a typo in the suffix must not be skipped silently.
    assert files and all(name.endswith(".sql") for name in files), files
    names = [name.removesuffix(".sql") for name in files]
    pattern = re.compile(r"(\d{4})_[a-z0-9_]+")
    numbers = []
    for name in names:
        match = pattern.fullmatch(name)
        assert match, f"{name}: migrations are named NNNN_lowercase_words.sql"
        numbers.append(int(match.group(1)))
    # Zero-padded, numbered 1..n without gaps or repeats: name order is number order.
    assert numbers == list(range(1, len(names) + 1)), names
    assert [name for name, _ in sql.migrations(dialect)] == names


# -- PostgreSQL ---------------------------------------------------------------------------

_PG_CATALOG: dict[str, str] = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text, a.attidentity::text,
               row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0
          AND NOT a.attisdropped AND c.relname <> $1
        ORDER BY c.relname, a.attnum""",
    "tables": """
        SELECT c.relname, c.relkind::text, c.relpersistence::text FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relname NOT LIKE $1 || '%'
        ORDER BY c.relname""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> $1 ORDER BY indexname""",
    "constraints": """
        SELECT r.relname, c.conname, c.contype::text, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = 'public' AND r.relname <> $1 ORDER BY r.relname, c.conname""",
    "triggers": """
        SELECT r.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
        FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal AND r.relname <> $1
        ORDER BY r.relname, t.tgname""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND $1::text IS NOT NULL ORDER BY p.proname, 2""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, max_value, cycle
        FROM pg_sequences WHERE schemaname = 'public'
          AND sequencename NOT LIKE $1 || '%' ORDER BY sequencename""",
}


async def pg_catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The outbox's part of the catalog (the migrations ledger aside), as plain tuples."""
    async with pg_connection(url) as conn:
        return {
            part: [tuple(row) for row in await conn.fetch(query, MIGRATIONS_TABLE)]
            for part, query in _PG_CATALOG.items()
        }


async def pg_applied(url: str) -> list[str]:
    async with pg_connection(url) as conn:
        return [r["name"] for r in await conn.fetch(f"SELECT name FROM {MIGRATIONS_TABLE}")]


async def pg_apply_migrations(url: str, *, record: bool) -> None:
    """Build a database the way an old installation got it: each migration file, in order."""
    async with pg_connection(url) as conn:
        if record:
            await conn.execute(
                f"CREATE TABLE {MIGRATIONS_TABLE} ("
                "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for name, text in sql.migrations("postgres"):
            async with conn.transaction():
                await conn.execute(text)
                if record:
                    await conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES ($1)", name)


def assert_pg_catalog_is_the_outbox(catalog: dict[str, list[tuple[Any, ...]]]) -> None:
    """The dump holds the outbox, so two empty databases cannot pass as equal."""
    tables = {row[0] for row in catalog["tables"]}
    assert set(TABLES) <= tables, tables
    indexes = {row[0] for row in catalog["indexes"]}
    assert set(PG_INDEXES) <= indexes, indexes
    columns = {(row[0], row[1]) for row in catalog["columns"]}
    assert ("realtime_outbox", "partition") in columns
    generated = [row for row in catalog["columns"] if row[1] == "partition"]
    assert generated[0][5] == "s" and "hashtext" in generated[0][4], generated
    assert any(row[1] == "realtime_outbox_notify" for row in catalog["triggers"])
    functions = {row[0] for row in catalog["functions"]}
    assert {"realtime_outbox_claim_v2", "realtime_outbox_notify_v1"} <= functions
    assert any("CHECK" in row[3] for row in catalog["constraints"])


@pytest.mark.postgres
async def test_postgres_migrate_is_idempotent(pg_empty_url: str) -> None:
    first = await migrate(pg_empty_url)
    assert first == [name for name, _ in sql.migrations("postgres")]
    catalog = await pg_catalog(pg_empty_url)
    assert await migrate(pg_empty_url) == []
    assert await pg_catalog(pg_empty_url) == catalog
    assert await pg_applied(pg_empty_url) == first


@pytest.mark.postgres
async def test_postgres_schema_equals_migrations_in_order(
    pg_empty_url: str, pg_empty_url_2: str
) -> None:
    from_schema, from_migrations = pg_empty_url, pg_empty_url_2
    await migrate(from_schema)  # an empty database: schema.sql
    await pg_apply_migrations(from_migrations, record=True)

    schema_catalog = await pg_catalog(from_schema)
    assert_pg_catalog_is_the_outbox(schema_catalog)
    migrated_catalog = await pg_catalog(from_migrations)
    for part in _PG_CATALOG:
        assert migrated_catalog[part] == schema_catalog[part], part
    # The old database is up to date: migrate finds nothing left to apply.
    assert await migrate(from_migrations) == []
    assert await pg_applied(from_migrations) == await pg_applied(from_schema)


@pytest.mark.postgres
async def test_postgres_migrate_over_unrecorded_tables_reaches_the_same_schema(
    pg_empty_url: str, pg_empty_url_2: str
) -> None:
    """Tables exist but no migration is recorded: migrate runs every migration over them."""
    await migrate(pg_empty_url)
    await pg_apply_migrations(pg_empty_url_2, record=False)
    applied = await migrate(pg_empty_url_2)
    assert applied == [name for name, _ in sql.migrations("postgres")]
    assert await pg_catalog(pg_empty_url_2) == await pg_catalog(pg_empty_url)


# -- SQLite -------------------------------------------------------------------------------


def _normalised(statement: str | None) -> str | None:
    """SQL text without comments or layout: SQLite stores a CREATE as it was written."""
    if statement is None:
        return None
    without_comments = re.sub(r"--[^\n]*", "", statement)
    return " ".join(without_comments.split())


def sqlite_catalog(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        master = [
            (kind, name, table, _normalised(text))
            for kind, name, table, text in conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE tbl_name <> ? ORDER BY type, name",
                (MIGRATIONS_TABLE,),
            )
        ]
        tables = [row[1] for row in master if row[0] == "table"]
        columns = [
            (table, *column)
            for table in tables
            for column in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))
        ]
        indexes = [
            (table, *index)
            for table in tables
            for index in conn.execute("SELECT * FROM pragma_index_list(?)", (table,))
        ]
        return {"master": master, "columns": columns, "indexes": indexes}
    finally:
        conn.close()


def sqlite_applied(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")]
    finally:
        conn.close()


def sqlite_apply_migrations(path: Path, *, record: bool) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if record:
            conn.execute(
                f"CREATE TABLE {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at REAL "
                "NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))"
            )
        for name, text in sql.migrations("sqlite"):
            conn.executescript(text)
            if record:
                conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (?)", (name,))
    finally:
        conn.close()


def assert_sqlite_catalog_is_the_outbox(catalog: dict[str, list[tuple[Any, ...]]]) -> None:
    names = {row[1] for row in catalog["master"]}
    assert {*TABLES, *PG_INDEXES[:-1]} <= names, names
    outbox_sql = next(row[3] for row in catalog["master"] if row[1] == "realtime_outbox")
    assert "CHECK (state IN ('pending', 'sent', 'dead'))" in outbox_sql
    assert any(row[:3] == ("realtime_outbox", 1, "event_id") for row in catalog["columns"])


async def test_sqlite_migrate_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = await migrate(sqlite_url_of(path))
    assert first == [name for name, _ in sql.migrations("sqlite")]
    catalog = sqlite_catalog(path)
    assert await migrate(sqlite_url_of(path)) == []
    assert sqlite_catalog(path) == catalog
    assert sqlite_applied(path) == first


async def test_sqlite_schema_equals_migrations_in_order(tmp_path: Path) -> None:
    from_schema, from_migrations = tmp_path / "schema.db", tmp_path / "migrations.db"
    await migrate(sqlite_url_of(from_schema))
    sqlite_apply_migrations(from_migrations, record=True)

    schema_catalog = sqlite_catalog(from_schema)
    assert_sqlite_catalog_is_the_outbox(schema_catalog)
    migrated_catalog = sqlite_catalog(from_migrations)
    for part, rows in schema_catalog.items():
        assert migrated_catalog[part] == rows, part
    assert await migrate(sqlite_url_of(from_migrations)) == []
    assert sqlite_applied(from_migrations) == sqlite_applied(from_schema)


async def test_sqlite_migrate_over_unrecorded_tables_reaches_the_same_schema(
    tmp_path: Path,
) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    await migrate(sqlite_url_of(fresh))
    sqlite_apply_migrations(old, record=False)
    applied = await migrate(sqlite_url_of(old))
    assert applied == [name for name, _ in sql.migrations("sqlite")]
    assert sqlite_catalog(old) == sqlite_catalog(fresh)
