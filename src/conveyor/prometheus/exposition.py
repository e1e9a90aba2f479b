"""What a scrape sees: the metric families of a `PrometheusMiddleware`, and the server."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from .middleware import Histogram, PrometheusMiddleware

__all__ = ["COUNTERS", "Collector", "MetricsServer"]

#: (metric name without ``conveyor_`` and ``_total``, help, the `ProcessorStats` field).
COUNTERS = (
    ("messages_handled", "Handler calls that returned", "handled"),
    ("messages_failed", "Handler calls that raised", "failed"),
    ("messages_retried", "Failed messages scheduled for another delivery", "retried"),
    ("messages_dead_lettered", "Messages written to the dead-letter stream", "dead_lettered"),
    ("messages_claimed", "Messages taken over from stopped consumers", "claimed"),
    ("messages_acked", "Messages acknowledged on the broker", "acked"),
    (
        "dead_letter_failures",
        "Dead-letter writes that failed (left pending)",
        "dead_letter_failures",
    ),
    ("broker_reconnects", "Failed broker calls retried after a backoff", "reconnects"),
)
_LABELS = ["stream", "group"]


class Collector:
    """A prometheus-client collector rendering a `PrometheusMiddleware` at scrape time
    (refreshing pending and lag first when due)."""

    def __init__(self, owner: PrometheusMiddleware) -> None:
        self.owner = owner

    def describe(self) -> Iterable[Metric]:
        return list(self._families(with_samples=False))

    def collect(self) -> Iterable[Metric]:
        self.owner.refresh_if_due()
        return list(self._families(with_samples=True))

    def _families(self, *, with_samples: bool) -> Iterator[Metric]:
        every = self.owner.series if with_samples else []
        for name, text, attribute in COUNTERS:
            counter = CounterMetricFamily(f"conveyor_{name}", text, labels=_LABELS)
            for s in every:
                total = sum(getattr(stats, attribute) for stats in list(s.stats.values()))
                counter.add_metric([s.stream, s.group], total)
            yield counter
        in_flight = GaugeMetricFamily(
            "conveyor_messages_in_flight", "Handler calls running now", labels=_LABELS
        )
        for s in every:
            running = sum(stats.in_flight for stats in list(s.stats.values()))
            in_flight.add_metric([s.stream, s.group], running)
        yield in_flight
        duration = HistogramMetricFamily(
            "conveyor_handler_duration_seconds",
            "Handler call time, by outcome (success, retry, dead_letter)",
            labels=[*_LABELS, "outcome"],
        )
        for s in every:
            for outcome, histogram in s.durations.items():
                duration.add_metric([s.stream, s.group, outcome], *_buckets(histogram))
        yield duration
        latency = HistogramMetricFamily(
            "conveyor_message_latency_seconds",
            "From the broker's timestamp of a message to its handler's return",
            labels=_LABELS,
        )
        for s in every:
            latency.add_metric([s.stream, s.group], *_buckets(s.latency))
        yield latency
        yield from _group_gauges(self.owner, with_samples)


def _group_gauges(owner: PrometheusMiddleware, with_samples: bool) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        "conveyor_group_pending", "Entries delivered to the group, not acked", labels=_LABELS
    )
    lag = GaugeMetricFamily(
        "conveyor_group_lag", "Entries not yet delivered to the group", labels=_LABELS
    )
    for s in owner.series if with_samples else []:
        info = s.info
        if info is not None:
            pending.add_metric([s.stream, s.group], info.pending)
            if info.lag is not None:
                lag.add_metric([s.stream, s.group], info.lag)
    yield pending
    yield lag


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` pairs and the sum, from one copy of the counts."""
    counts = histogram.counts[:]  # consistent: copied while no observation runs (GIL)
    out: list[tuple[str, float]] = []
    running = 0.0
    for bound, count in zip((*histogram.bounds, float("inf")), counts[:-1], strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return out, counts[-1]


class MetricsServer:
    """The HTTP server of `PrometheusMiddleware.serve`; `close()` (or ``with``) stops it.

    Attributes:
        host: The address it listens on.
        port: The port it listens on.
    """

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]
        self.port: int = server.server_port

    def __repr__(self) -> str:
        return f"<MetricsServer http://{self.host}:{self.port}/metrics>"

    def close(self) -> None:
        """Stop serving and wait for the server's thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
