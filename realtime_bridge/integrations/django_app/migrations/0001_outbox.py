"""Create the outbox tables with the outbox's own schema and migrations.

Not atomic: on PostgreSQL the outbox migrates over a connection of its own,
which must not wait for a lock held by the transaction of this migration.
Reversing it leaves the tables, and any events not yet published, in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation

from realtime_bridge.integrations.django import migrate_outbox


def create_outbox_tables(apps: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
    migrate_outbox(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False
    initial = True
    dependencies: ClassVar[Sequence[tuple[str, str]]] = ()
    operations: ClassVar[Sequence[Operation]] = (
        migrations.RunPython(create_outbox_tables, migrations.RunPython.noop),
    )
