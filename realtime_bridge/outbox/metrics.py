"""Prometheus metrics for a relay (the ``metrics`` extra: ``prometheus-client``).

Nothing is counted twice and nothing on the publish path changes: a
collector reads the relay's counters, the Bridge's per-adapter meter and the
last backlog snapshot when Prometheus scrapes. ``realtime-bridge relay
--metrics-port 9108`` serves them.
"""

from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from .relay import Relay

__all__ = ["RelayCollector", "serve_metrics"]


class RelayCollector(Collector):
    """Exports one relay's work, the outbox backlog and each adapter's outcomes."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self._relay_counters()
        yield from self._backlog()
        yield from self._adapters()

    def _relay_counters(self) -> Iterator[CounterMetricFamily]:
        stats = self.relay.stats
        for name, value, text in (
            ("published", stats.published, "events published and marked sent"),
            ("retried", stats.retried, "events put back for a retry"),
            ("dead", stats.dead, "events dead-lettered"),
            ("database_errors", stats.database_errors, "times the database was unreachable"),
        ):
            yield CounterMetricFamily(f"realtime_bridge_relay_{name}", text, value=value)

    def _backlog(self) -> Iterator[GaugeMetricFamily]:
        status = self.relay.last_status
        if status is None:
            return
        yield GaugeMetricFamily(
            "realtime_bridge_outbox_pending", "events waiting to be published", value=status.pending
        )
        yield GaugeMetricFamily(
            "realtime_bridge_outbox_dead", "dead-lettered events", value=status.dead
        )
        lag = status.oldest_pending_seconds or 0.0
        yield GaugeMetricFamily(
            "realtime_bridge_outbox_lag_seconds", "age of the oldest pending event", value=lag
        )

    def _adapters(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        calls = CounterMetricFamily(
            "realtime_bridge_adapter_calls", "publish calls per adapter", labels=["adapter", "role"]
        )
        failures = CounterMetricFamily(
            "realtime_bridge_adapter_failures",
            "failed calls per adapter",
            labels=["adapter", "role"],
        )
        latency = GaugeMetricFamily(
            "realtime_bridge_adapter_latency_seconds",
            "publish latency per adapter over the recent window",
            labels=["adapter", "role", "quantile"],
        )
        for name, stats in self.relay.bridge.meter.items():
            labels = [name, stats.role]
            calls.add_metric(labels, stats.calls)
            failures.add_metric(labels, stats.failures)
            for quantile in (50, 99):
                value = stats.latency_percentile(quantile)
                if value is not None:
                    latency.add_metric([*labels, f"0.{quantile}"], value)
        yield from (calls, failures, latency)


def serve_metrics(relay: Relay, port: int, *, address: str = "127.0.0.1") -> WSGIServer:
    """Serve the relay's metrics on ``address:port`` from a thread; ``.shutdown()`` stops it."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(RelayCollector(relay))
    relay.status_interval = relay.status_interval or 5.0
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
