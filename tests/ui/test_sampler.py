"""The server's samples: throughput and the lag chart."""

from __future__ import annotations

from conveyor.protocol import GroupInfo
from conveyor.ui.chart import sparkline
from conveyor.ui.sampler import Sampler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(pending: int, lag: int | None, length: int | None) -> GroupInfo:
    return GroupInfo("orders", "billing", pending, lag, length)


def test_rate_is_acknowledged_entries_per_second_over_the_window() -> None:
    clock = Clock()
    sampler = Sampler(history=60, clock=clock)
    sampler.record(info(pending=5, lag=100, length=105))  # 0 acked
    assert sampler.rate("orders", "billing") is None  # one sample: not known yet
    clock.now += 10
    sampler.record(info(pending=5, lag=50, length=155))  # 100 acked
    assert sampler.rate("orders", "billing") == 10.0
    clock.now += 0.1
    sampler.record(info(pending=0, lag=0, length=1000))  # too close: skipped
    assert len(sampler.samples("orders", "billing")) == 2
    clock.now += 100  # the first two fall out of the 60 s window
    sampler.record(info(pending=0, lag=0, length=155))
    assert len(sampler.samples("orders", "billing")) == 1


def test_without_lag_the_chart_draws_pending_and_rate_is_unknown() -> None:
    clock = Clock()
    sampler = Sampler(history=60, clock=clock)
    for pending in (3, 7, 1):
        sampler.record(info(pending=pending, lag=None, length=None))
        clock.now += 5
    label, points = sampler.chart("orders", "billing")
    assert label == "pending"
    assert [v for _, v in points] == [3, 7, 1]
    assert sampler.rate("orders", "billing") is None


def test_sparkline_scales_points_into_the_box() -> None:
    svg = str(sparkline([(0, 0), (5, 10), (10, 5)], width=100, height=20, label="lag"))
    assert 'points="2.0,18.0 50.0,2.0 98.0,10.0"' in svg
    assert "<title>lag: max 10 over 3 sample(s)</title>" in svg
    assert "points=" in str(sparkline([]))  # flat line, no error
