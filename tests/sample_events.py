"""Typed events for the CLI's ``schema`` test: what an application's events module looks like."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from realtime_bridge import Event


class Order(BaseModel):
    id: int
    status: str


class OrderUpdated(Event):
    """An order changed; ``data`` is its whole new state."""

    type: Literal["order.updated"] = "order.updated"
    data: Order


class OrderCancelled(Event):
    """An order was cancelled, and why."""

    type: Literal["order.cancelled"] = "order.cancelled"
    data: dict[str, str]


class NotAnEvent(BaseModel):
    """Ignored by the catalog: not an Event subclass."""

    name: str
