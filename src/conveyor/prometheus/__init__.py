"""Prometheus metrics (``pip install 'conveyor[prometheus]'``: prometheus-client).

`PrometheusMiddleware` exposes, per ``stream`` and ``group`` label:

| metric | type | what |
|---|---|---|
| ``conveyor_messages_handled_total`` | counter | handler calls that returned |
| ``conveyor_messages_failed_total`` | counter | handler calls that raised |
| ``conveyor_messages_retried_total`` | counter | failed messages scheduled again |
| ``conveyor_messages_dead_lettered_total`` | counter | messages dead-lettered |
| ``conveyor_messages_claimed_total`` | counter | taken over from stopped consumers |
| ``conveyor_messages_acked_total`` | counter | acknowledged on the broker |
| ``conveyor_dead_letter_failures_total`` | counter | dead-letter writes that failed |
| ``conveyor_broker_reconnects_total`` | counter | failed broker calls retried |
| ``conveyor_messages_in_flight`` | gauge | handler calls running now |
| ``conveyor_handler_duration_seconds`` | histogram | handler time, by ``outcome`` |
| ``conveyor_message_latency_seconds`` | histogram | broker timestamp to handler return |
| ``conveyor_group_pending`` | gauge | delivered to the group, not acked |
| ``conveyor_group_lag`` | gauge | not yet delivered to the group |

``outcome`` is ``success``, ``retry`` or ``dead_letter``; the lag is absent where the
broker cannot tell it.

The counters are the processors' own `ProcessorStats`, read at scrape time, and the
histograms are plain lists the handling chain updates: handling a message adds three
clock reads and two bucket increments, with no lock. Pending and lag come from one
``group_info`` call per group at scrape time, at most once per `group_info_interval`
seconds however often Prometheus scrapes. `serve` (``conveyor run --metrics-port``)
serves ``/metrics`` over HTTP from a thread.
"""

try:
    import prometheus_client  # noqa: F401 - fail here, with what to install
except ImportError as exc:  # pragma: no cover - exercised by the no-extras import test
    raise ImportError(
        "conveyor.prometheus needs prometheus-client: pip install 'conveyor[prometheus]'"
    ) from exc

from conveyor.prometheus.exposition import MetricsServer
from conveyor.prometheus.middleware import (
    DURATION_BUCKETS,
    LATENCY_BUCKETS,
    PrometheusMiddleware,
)

__all__ = ["DURATION_BUCKETS", "LATENCY_BUCKETS", "MetricsServer", "PrometheusMiddleware"]
