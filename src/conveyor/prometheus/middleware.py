"""`PrometheusMiddleware`: measures the handling chain, keeps the series a scrape shows."""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from conveyor.clock import SystemClock
from conveyor.errors import ConveyorError
from conveyor.message import Message
from conveyor.middleware import CallNext, HandlerContext, Middleware
from conveyor.protocol import GroupInfo, StreamBackend
from conveyor.stats import ProcessorStats
from conveyor.timeouts import within

from .exposition import Collector, MetricsServer

if TYPE_CHECKING:
    from conveyor.app import App

__all__ = ["DURATION_BUCKETS", "LATENCY_BUCKETS", "Histogram", "PrometheusMiddleware", "Series"]

log = logging.getLogger("conveyor.prometheus")

#: Upper bounds (seconds) of the handler-duration buckets.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Upper bounds (seconds) of the publish→handled latency buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

OUTCOMES = ("success", "retry", "dead_letter")
_perf_counter = time.perf_counter
_bucket = bisect.bisect_left


class Histogram:
    """Bucket counts and their sum in one list (``counts[i]``: observations in bucket
    ``i``, the one past `bounds` being +Inf; ``counts[-1]``: the sum), written by one
    event loop without a lock. A scrape reads one copy of the list."""

    __slots__ = ("bounds", "counts")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts: list[float] = [0] * (len(self.bounds) + 2)

    def observe(self, value: float) -> None:
        counts = self.counts
        counts[_bucket(self.bounds, value)] += 1
        counts[-1] += value


@dataclass(eq=False)
class Series:
    """Everything measured for one (stream, group): the histograms, the counters of its
    processors (their `ProcessorStats`, by identity), and the last `GroupInfo`."""

    stream: str
    group: str
    durations: dict[str, Histogram]
    latency: Histogram
    stats: dict[int, ProcessorStats] = field(default_factory=dict)
    backend: StreamBackend | None = None
    info: GroupInfo | None = None


class PrometheusMiddleware(Middleware):
    """Metrics of every processor it is bound to (see `conveyor.prometheus`).

    Args:
        registry: Where the metrics are registered; None: prometheus-client's default
            registry (one `PrometheusMiddleware` per registry).
        group_info_interval: Fewest seconds between two ``group_info`` calls per group.
        group_info_timeout: Longest a scrape waits for them (then shows the last values).
        duration_buckets: Bucket bounds of ``conveyor_handler_duration_seconds``.
        latency_buckets: Bucket bounds of ``conveyor_message_latency_seconds``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        group_info_interval: float = 5.0,
        group_info_timeout: float = 2.0,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.group_info_interval = group_info_interval
        self.group_info_timeout = group_info_timeout
        self._duration_buckets = tuple(sorted(duration_buckets))
        self._latency_buckets = tuple(sorted(latency_buckets))
        self._series: dict[tuple[str, str], Series] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refreshed_at = -float("inf")
        self._refresh_lock = threading.Lock()
        self.registry.register(Collector(self))

    def __repr__(self) -> str:
        return f"<PrometheusMiddleware groups={sorted(self._series)}>"

    @classmethod
    def of(cls, app: App) -> PrometheusMiddleware:
        """`app`'s `PrometheusMiddleware`, or a new one (on the default registry) added
        to it (what ``conveyor run --metrics-port`` does)."""
        for middleware in app.middleware:
            if isinstance(middleware, cls):
                return middleware
        created = cls()
        app.add_middleware(created)
        return created

    @property
    def series(self) -> list[Series]:
        """What is measured, one `Series` per (stream, group)."""
        return list(self._series.values())

    # -- the handling chain -------------------------------------------------------------

    def bind(self, context: HandlerContext) -> None:
        key = (context.stream, context.group)
        series = self._series.get(key)
        if series is None:
            durations = {o: Histogram(self._duration_buckets) for o in OUTCOMES}
            series = Series(*key, durations, Histogram(self._latency_buckets))
            self._series[key] = series
        series.stats[id(context.stats)] = context.stats
        series.backend = context.backend
        self._loop = asyncio.get_running_loop()

    def wrap(self, call_next: CallNext, context: HandlerContext) -> CallNext:
        """The processor's measuring step, built once: what it needs per message is
        bound here, and both observations of a success are inlined (no calls)."""
        series = self._series[(context.stream, context.group)]
        durations, latency = series.durations, series.latency
        bounds, counts = durations["success"].bounds, durations["success"].counts
        latency_bounds, latency_counts = latency.bounds, latency.counts
        clock = context.clock
        now = time.time if isinstance(clock, SystemClock) else clock.time
        failure_outcome = context.failure_outcome

        async def measured(message: Message) -> None:
            started = _perf_counter()
            try:
                await call_next(message)
            except Exception as exc:
                durations[failure_outcome(message, exc)].observe(_perf_counter() - started)
                raise
            took = _perf_counter() - started
            counts[_bucket(bounds, took)] += 1
            counts[-1] += took
            published = message.published_at
            if published is not None:
                waited = now() - published
                if waited >= 0:  # a clock behind the broker's: no sample, not a wrong one
                    latency_counts[_bucket(latency_bounds, waited)] += 1
                    latency_counts[-1] += waited

        return measured

    # -- pending and lag ----------------------------------------------------------------

    async def refresh_groups(self) -> None:
        """Ask each group's backend for its pending count and lag now (one call per
        group). A scrape from another thread does this by itself, at most once per
        `group_info_interval`; call it yourself before rendering the registry on the
        processors' own event loop."""
        self._refreshed_at = time.monotonic()
        for series in self.series:
            if series.backend is None:
                continue
            try:
                series.info = await within(
                    series.backend.group_info(series.stream, series.group),
                    self.group_info_timeout,
                )
            except (ConveyorError, asyncio.TimeoutError) as exc:
                log.debug("group_info of %s/%s: %r", series.stream, series.group, exc)
                series.info = None

    def refresh_if_due(self) -> None:
        """From a scrape: refresh pending/lag on the processors' loop if due, waiting at
        most `group_info_timeout`. On the loop's own thread it cannot wait: the last
        values are shown."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        try:
            if asyncio.get_running_loop() is loop:
                return
        except RuntimeError:
            pass  # no loop in this thread: the usual case (the HTTP server's thread)
        with self._refresh_lock:
            if time.monotonic() - self._refreshed_at < self.group_info_interval:
                return
            future = asyncio.run_coroutine_threadsafe(self.refresh_groups(), loop)
            try:
                future.result(timeout=self.group_info_timeout + 0.5)
            except concurrent.futures.TimeoutError:
                future.cancel()
                log.warning("pending/lag not refreshed within %.1fs", self.group_info_timeout)
            except RuntimeError as exc:  # the loop stopped meanwhile
                log.debug("pending/lag not refreshed: %r", exc)

    # -- serving ------------------------------------------------------------------------

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsServer:
        """Serve this registry on ``http://host:port/metrics`` (port 0: a free one) from
        a thread, until the returned server is closed."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)
