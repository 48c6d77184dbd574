"""Settings of the test project: an SQLite ``default`` and a PostgreSQL ``pg`` database.

``RB_DJANGO_SQLITE`` (a file path), ``RB_DJANGO_PG_NAME`` (a database on the
machine's PostgreSQL), ``RB_DJANGO_USING`` (the outbox's alias) and
``RB_DJANGO_BRIDGE_URL`` (the adapter) choose what a test runs against.
"""

from __future__ import annotations

import os

SECRET_KEY = "realtime_bridge tests only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["realtime_bridge.integrations.django_app", "django_site.shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("RB_DJANGO_SQLITE", "unused.sqlite3"),
    },
    "pg": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("RB_DJANGO_PG_NAME", "unused"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
}
REALTIME_BRIDGE = {
    "url": os.environ.get("RB_DJANGO_BRIDGE_URL", "memory://"),
    "using": os.environ.get("RB_DJANGO_USING", "default"),
}
