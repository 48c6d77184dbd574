"""The outbox's SQL, shipped as package data: one folder per database.

``schema.sql`` is the whole current schema, for an empty database;
``migrations/NNNN_name.sql`` bring an existing database up to date, applied in
order and recorded in ``realtime_outbox_migrations``. A test builds one
database each way and checks they are the same.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["DIALECTS", "migrations", "schema"]

DIALECTS = ("postgres", "sqlite")


def _folder(dialect: str) -> resources.abc.Traversable:
    if dialect not in DIALECTS:
        raise ValueError(f"no outbox SQL for {dialect!r}; known: {DIALECTS}")
    return resources.files(__package__).joinpath(dialect)


def schema(dialect: str) -> str:
    """The whole current schema of ``dialect``."""
    return _folder(dialect).joinpath("schema.sql").read_text("utf-8")


def migrations(dialect: str) -> list[tuple[str, str]]:
    """``(name, sql)`` of every migration of ``dialect``, in the order to apply them."""
    folder = _folder(dialect).joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text("utf-8")) for f in files]
