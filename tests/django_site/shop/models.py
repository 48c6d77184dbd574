"""An order, the domain row written next to its events."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    status = models.CharField(max_length=20)

    class Meta:
        app_label = "shop"
