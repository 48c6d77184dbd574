"""The demos: a live page fed database-first (``realtime-bridge demo``) and a narrated tour.

``live``  the shop writes orders and their events in one transaction each; an
          in-process relay publishes them; the gateway streams them to a page
``shop``  the demo's domain and its typed events (``Order``, ``OrderUpdated``)
``tour``  ``realtime-bridge demo --tour``: every feature once, printed, in a second

``realtime-bridge schema realtime_bridge.demo`` prints the catalog of the
demo's typed events.
"""

from __future__ import annotations

from .shop import Order, OrderUpdated

__all__ = ["Order", "OrderUpdated"]
