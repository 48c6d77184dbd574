"""The pricing catalog's shape: figures with their date and source, plans, vendors.

Prices change and some were never confirmed, so no number stands alone: a
``Figure`` carries the date it was read (``as_of``), where (``source``), and
whether the source left it uncertain. ``value=None`` means the source gives
no figure ("unknown"): the report says so rather than guessing.

A plan is data, not code: a base ``price``, what is ``included`` each month,
hard ``limits``, and ``overage`` rates for what goes past the included amount.
One generic rule prices every vendor's plans (``plans.py``); only the counting
of usage differs per vendor (``usage.py``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "COUNTING_RULES",
    "UNITS",
    "CountingRule",
    "Figure",
    "Plan",
    "Rate",
    "VendorPricing",
]

#: Each unit's label in reports, and whether it grows with the traffic multiplier
#: (an event's size does not).
UNITS: dict[str, tuple[str, bool]] = {
    "messages_per_day": ("messages on the peak day", True),
    "messages_per_month": ("messages per month", True),
    "peak_connections": ("peak concurrent connections", True),
    "concurrent_channels": ("concurrent channels", True),
    "messages_per_second": ("messages per second at peak", True),
    "channel_messages_per_second": ("messages per second on the busiest channel", True),
    "channel_bytes_per_second": ("bytes per second on the busiest channel", True),
    "message_bytes": ("bytes of the largest event", False),
    "connection_minutes": ("connection-minutes per month", True),
    "channel_minutes": ("channel-minutes per month", True),
    "bandwidth_gib": ("GiB of bandwidth (Ably: past its allowance)", True),
    "collaboration_minutes": ("collaboration minutes per month", True),
}

CountingRule = Literal["pusher", "ably", "supabase", "liveblocks", "redis"]
COUNTING_RULES: tuple[str, ...] = ("pusher", "ably", "supabase", "liveblocks", "redis")

_STRICT = ConfigDict(frozen=True, extra="forbid")


def _known_units(table: Any) -> Any:
    """Refuse a misspelt unit, naming the ones there are (a typo would be ignored otherwise)."""
    for unit in table if isinstance(table, dict) else ():
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; the units are: {', '.join(UNITS)}")
    return table


class Figure(BaseModel):
    """One number from a pricing source, with when and where it was read."""

    model_config = _STRICT

    value: float | None = Field(description="None: the source gives no figure (unknown).")
    as_of: date | None = Field(description="When the source was read; None if unknown.")
    source: str = Field(min_length=1, description="A URL, or where the figure came from.")
    uncertain: bool = False
    note: str | None = None

    @field_validator("value")
    @classmethod
    def _not_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError(f"must be 0 or more, got {value}")
        return value

    @property
    def flagged(self) -> bool:
        """Whether a reader should be told to double-check this figure."""
        return self.uncertain or self.value is None or self.as_of is None


class Rate(BaseModel):
    """An over-usage price: ``price`` per ``per`` units, in whole packages if ``package``."""

    model_config = _STRICT

    price: Figure
    per: float = Field(default=1.0, gt=0)
    package: bool = False


class Plan(BaseModel):
    """A vendor's plan: base price, monthly inclusions, hard limits, over-usage rates.

    A unit ``included`` without an ``overage`` rate is a quota the plan refuses to
    exceed; a unit in ``limits`` is a cap whatever the bill.
    """

    model_config = _STRICT

    name: str = Field(min_length=1)
    price: Figure
    included: dict[str, Figure] = Field(default_factory=dict)
    limits: dict[str, Figure] = Field(default_factory=dict)
    overage: dict[str, Rate] = Field(default_factory=dict)
    uncertain: bool = False
    note: str | None = None

    @field_validator("included", "limits", "overage", mode="before")
    @classmethod
    def _units_known(cls, table: Any) -> Any:
        return _known_units(table)


class VendorPricing(BaseModel):
    """Everything the report needs to price one vendor."""

    model_config = _STRICT

    vendor: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    counting: CountingRule
    uncertain: bool = False
    note: str | None = None
    notes: tuple[str, ...] = ()
    #: Limits of the platform, the same on every plan: exceeding them is a warning
    #: (events refused, publishes throttled), never a reason to change plans.
    limits: dict[str, Figure] = Field(default_factory=dict)
    plans: tuple[Plan, ...] = Field(min_length=1)

    @field_validator("limits", mode="before")
    @classmethod
    def _units_known(cls, table: Any) -> Any:
        return _known_units(table)

    @field_validator("plans")
    @classmethod
    def _unique_names(cls, plans: tuple[Plan, ...]) -> tuple[Plan, ...]:
        names = [plan.name for plan in plans]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"plan name {name!r} appears more than once")
        return plans
