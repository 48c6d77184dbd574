"""The app's configuration: its label is ``realtime_bridge``."""

from __future__ import annotations

from django.apps import AppConfig


class RealtimeBridgeConfig(AppConfig):
    name = "realtime_bridge.integrations.django_app"
    label = "realtime_bridge"
    verbose_name = "realtime_bridge"
