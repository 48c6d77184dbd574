"""Adapters, one module per vendor or server; each imported only when its URL is used."""

from __future__ import annotations

from .base import Adapter, Capability, HistoryPage, Limits, Member, Occupancy, PublishResult

__all__ = ["Adapter", "Capability", "HistoryPage", "Limits", "Member", "Occupancy", "PublishResult"]
