"""The Django app of realtime_bridge: add it to ``INSTALLED_APPS`` for its migration and commands.

- a migration creating the outbox tables on the outbox's database alias
  (``manage.py migrate``, so test databases get them too);
- ``manage.py realtime_relay``: the relay, publishing committed events;
- ``manage.py realtime_outbox migrate|status|dead ...``: the ``realtime-bridge
  outbox`` commands, on the database Django's settings name.

The code lives in ``realtime_bridge.integrations.django``.
"""

from __future__ import annotations
