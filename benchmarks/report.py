"""Summaries of a run: the table (markdown, also printed), the JSON file and the PNG chart.

A row is one measurement on one broker over every round: its median and best rate, its
ratio to the broker's raw-client baseline (consume rows against the raw loop, publish
rows against the raw batched publish), and whether every round verified.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.common import BenchResult

__all__ = [
    "Row",
    "Target",
    "chart",
    "markdown",
    "rows_from",
    "targets",
    "update_docs",
    "write_json",
]

#: docs page markers between which `update_docs` writes the latest results.
START, END = "<!-- results:start -->", "<!-- results:end -->"

Kind = Literal["consume", "publish", "latency", "rss", "idle", "anchor"]

#: The baseline of each kind, per broker (the raw client's names).
BASELINES: dict[tuple[str, str], str] = {
    ("redis", "consume"): "raw redis-py loop",
    ("nats", "consume"): "raw nats-py loop",
    ("kafka", "consume"): "raw aiokafka loop",
    ("redis", "publish"): "raw pipelined XADD x500",
    ("nats", "publish"): "raw publish_async x500 + gathered acks",
    ("kafka", "publish"): "raw send x500 + flush",
}


#: The event loop's own ceiling for "c=64, 1 ms handler" rows (`benchmarks.anchors`).
ANCHORS = ("bare asyncio, 64 tasks sleeping 1 ms", "bare uvloop, 64 tasks sleeping 1 ms")
CONCURRENT = "publish() x1,000 concurrent callers"
FASTSTREAM_CONCURRENT = "FastStream broker.publish x1,000 concurrent tasks"


def _kind(result: BenchResult) -> Kind:
    if result.name.startswith("bare "):
        return "anchor"
    if result.p99_ms is not None:
        return "latency"
    if "idle_cpu_percent" in result.notes:
        return "idle"
    if "peak_rss_mib" in result.notes:
        return "rss"
    if "publish" in result.name or "XADD" in result.name or "send x" in result.name:
        return "publish"
    return "consume"


@dataclass
class Row:
    """One measurement on one broker, over all rounds."""

    backend: str
    name: str
    kind: Kind
    results: list[BenchResult] = field(default_factory=list)
    ratio: float | None = None

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.results if r.rate is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def best(self) -> float | None:
        return max(self.rates) if self.rates else None

    @property
    def cpu_us(self) -> float | None:
        """Median client CPU time per message (µs), where the run recorded it."""
        values = [
            float(r.notes["cpu_us_per_msg"]) for r in self.results if "cpu_us_per_msg" in r.notes
        ]
        return statistics.median(values) if values else None

    @property
    def verified(self) -> bool:
        return bool(self.results) and all(r.verified for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        last = self.results[-1] if self.results else None
        return {
            "backend": self.backend,
            "name": self.name,
            "kind": self.kind,
            "median_rate": self.median,
            "best_rate": self.best,
            "rates": self.rates,
            "ratio_to_raw": self.ratio,
            "verified": self.verified,
            "cpu_us_per_msg": self.cpu_us,
            "messages": last.messages if last else None,
            "p50_ms": last.p50_ms if last else None,
            "p99_ms": last.p99_ms if last else None,
            "notes": [r.notes for r in self.results],
        }


def rows_from(results: Iterable[BenchResult]) -> list[Row]:
    """Group results into rows (first-seen order) and compute the ratios."""
    rows: dict[tuple[str, str], Row] = {}
    for result in results:
        key = (result.backend, result.name)
        if key not in rows:
            rows[key] = Row(result.backend, result.name, _kind(result))
        rows[key].results.append(result)
    for row in rows.values():
        base_name = BASELINES.get((row.backend, row.kind))
        base = rows.get((row.backend, base_name)) if base_name else None
        if base is not None and base.median and row.median:
            row.ratio = row.median / base.median
    return list(rows.values())


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, as measured."""

    what: str
    value: float | None
    goal: str
    met: bool

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "value": self.value, "goal": self.goal, "met": self.met}


def _find(rows: list[Row], backend: str, name: str) -> Row | None:
    return next((r for r in rows if r.backend == backend and r.name == name), None)


def _ratio_target(
    rows: list[Row], backend: str, ours: str, theirs: str, at_least: float, what: str
) -> Target | None:
    mine, other = _find(rows, backend, ours), _find(rows, backend, theirs)
    if mine is None or other is None or not mine.median or not other.median:
        return None
    value = mine.median / other.median
    ok = value >= at_least and mine.verified and other.verified
    return Target(what, value, f">= {at_least:g}x", ok)


def targets(rows: list[Row], c1: dict[str, list[str]]) -> list[Target]:
    """Evaluate the issue's targets. `c1` names each broker's concurrency-1 rows."""
    out: list[Target | None] = []
    raw_goal = {"redis": 1.0, "nats": 1.0, "kafka": 1.0}
    for backend, names in c1.items():
        raw = BASELINES[(backend, "consume")]
        for name in names:
            out.append(
                _ratio_target(
                    rows, backend, name, raw, raw_goal[backend], f"{backend}: {name} vs raw"
                )
            )
            batch = "FastStream batch handler"
            out.append(
                _ratio_target(rows, backend, name, batch, 1.0, f"{backend}: {name} vs {batch}")
            )
            if backend == "redis":
                old = "old module loop (COUNT 10, XACK each)"
                out.append(_ratio_target(rows, backend, name, old, 6.0, f"redis: {name} vs old"))
                fs = "FastStream per-message handler"
                out.append(_ratio_target(rows, backend, name, fs, 10.0, f"redis: {name} vs {fs}"))
    out += _sqlite_targets(rows)
    for row in rows:
        if "io=1ms" in row.name and row.median:
            # the running loop's bare row: asyncio's on a plain run, uvloop's on a uvloop run
            anchor = _find(rows, row.backend, ANCHORS[0]) or _find(rows, row.backend, ANCHORS[1])
            if anchor is not None and anchor.median:
                value = row.median / anchor.median
                ok = value >= 0.9 and row.verified
                what = f"{row.backend}: {row.name} vs {anchor.name}"
                out.append(Target(what, value, ">= 0.9x", ok))
        if row.kind == "publish" and row.name.startswith("publish_many") and row.ratio:
            ok = row.ratio >= 0.9 and row.verified
            out.append(Target(f"{row.backend}: {row.name} vs raw", row.ratio, ">= 0.9x", ok))
        if row.name.startswith(CONCURRENT):
            out += _concurrent_targets(rows, row)
        if row.kind == "latency" and row.results:
            p99 = row.results[-1].p99_ms
            goal = 2.0
            if row.backend == "sqlite":  # across processes; polling: up to its longest pause
                goal = 100.0 if "poll" in row.name else 10.0
            what = f"{row.backend}: {row.name} p99 at 200 msg/s"
            ok = p99 is not None and p99 <= goal and row.verified
            out.append(Target(what, p99, f"<= {goal:g} ms", ok))
        if row.kind == "idle" and row.results:
            share = float(row.results[-1].notes["idle_cpu_percent"])
            what = f"{row.backend}: {row.name}, % of a core"
            out.append(Target(what, share, "< 1 %", share < 1.0 and row.verified))
        if row.kind == "rss" and row.results:
            mib = float(row.results[-1].notes.get("peak_rss_mib", 0.0))
            what = f"redis: consumer peak RSS draining {row.results[-1].messages:,}"
            out.append(Target(what, mib, "<= 60 MiB", mib <= 60.0 and row.verified))
    return [t for t in out if t is not None]


def _concurrent_targets(rows: list[Row], row: Row) -> list[Target | None]:
    """1,000 concurrent publish() callers: >= 0.8x the raw batched publish (where there
    is one) and ahead of FastStream's broker.publish from as many tasks (a FastStream
    that fails counts as behind)."""
    out: list[Target | None] = []
    if row.ratio is not None:
        ok = row.ratio >= 0.8 and row.verified
        out.append(Target(f"{row.backend}: {row.name} vs raw", row.ratio, ">= 0.8x", ok))
    peer = _find(rows, row.backend, FASTSTREAM_CONCURRENT)
    if peer is not None and row.median:
        what = f"{row.backend}: {row.name} vs {peer.name}"
        if peer.median and peer.verified:
            ahead = row.median / peer.median
            out.append(Target(what, ahead, "> 1x", ahead > 1.0 and row.verified))
        else:
            errors = [str(r.notes["error"]) for r in peer.results if "error" in r.notes]
            why = f"FastStream failed: {errors[0][:80]}" if errors else "FastStream unverified"
            out.append(Target(what, None, f"> 1x ({why})", row.verified))
    return out


#: sqlite's targets (issue 11): absolute rates, and consume against the SQLite queues.
SQLITE_PEERS = (
    "litequeue pop + done per message",
    "persist-queue SQLiteAckQueue get + ack per message",
)


def _sqlite_targets(rows: list[Row]) -> list[Target | None]:
    out: list[Target | None] = []
    for name, goal in (("conveyor c=1", 20_000.0), ("publish_many x500", 50_000.0)):
        row = _find(rows, "sqlite", name)
        if row is not None and row.median:
            ok = row.median >= goal and row.verified
            out.append(Target(f"sqlite: {name} msg/s", row.median, f">= {goal:,.0f}", ok))
    for peer in SQLITE_PEERS:
        what = f"sqlite: conveyor c=1 vs {peer}"
        out.append(_ratio_target(rows, "sqlite", "conveyor c=1", peer, 3.0, what))
    return out


def _rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else ""


def markdown(rows: list[Row], found: list[Target], rounds: int) -> str:
    """The result table and the target list, as markdown."""
    lines = [
        f"| broker | measurement | msgs | msg/s (median of {rounds}) | best | vs raw"
        " | client CPU µs/msg | verified |",
        "|---|---|--:|--:|--:|--:|--:|:-:|",
    ]
    for row in rows:
        if row.kind in ("consume", "publish", "anchor"):
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
            count = row.results[-1].messages
            cpu = f"{row.cpu_us:.1f}" if row.cpu_us is not None else ""
            lines.append(
                f"| {row.backend} | {row.name} | {count:,} | {_rate(row.median)}"
                f" | {_rate(row.best)} | {ratio} | {cpu} | {'yes' if row.verified else '**NO**'} |"
            )
    extra = [r for r in rows if r.kind in ("latency", "rss", "idle")]
    if extra:
        lines += ["", "| broker | measurement | result | verified |", "|---|---|---|:-:|"]
        for row in extra:
            last = row.results[-1]
            if row.kind == "latency":
                text = f"p50 {last.p50_ms:.2f} ms, p99 {last.p99_ms:.2f} ms"
                text += f" ({last.messages:,} msgs at {last.notes.get('rate', 0):g} msg/s)"
            elif row.kind == "idle":
                text = (
                    f"{last.notes['idle_cpu_percent']:g} % of a core over {last.seconds:.0f} s"
                    " (a processor waiting on an empty stream)"
                )
            else:
                notes = last.notes
                text = (
                    f"peak {notes['peak_rss_mib']} MiB (psutil-sampled"
                    f" {notes['sampled_peak_rss_mib']} MiB, {notes['rss_before_consuming_mib']}"
                    f" MiB before consuming) draining {last.messages:,} msgs at"
                    f" {_rate(last.rate)} msg/s"
                )
            lines.append(
                f"| {row.backend} | {row.name} | {text} | {'yes' if row.verified else '**NO**'} |"
            )
    if found:
        lines += ["", "| target | measured | goal | met |", "|---|--:|---|:-:|"]
        for target in found:
            value = "" if target.value is None else f"{target.value:,.2f}"
            lines.append(
                f"| {target.what} | {value} | {target.goal} | {'yes' if target.met else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def write_json(path: Path, rows: list[Row], found: list[Target], meta: dict[str, Any]) -> None:
    """The same table as JSON, with every round's raw result and the run's metadata."""
    document = {
        **meta,
        "rows": [row.as_dict() for row in rows],
        "targets": [target.as_dict() for target in found],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def chart(path: Path, rows: list[Row], title: str) -> None:
    """A horizontal bar chart of every ratio to the raw client, one panel per broker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = {
        b: [r for r in rows if r.backend == b and r.ratio is not None and r.kind != "latency"]
        for b in ("redis", "nats", "kafka", "sqlite")
    }
    brokers = [b for b, panel in panels.items() if panel]
    if not brokers:
        return
    heights = [max(1, len(panels[b])) for b in brokers]
    fig, axes = plt.subplots(
        len(brokers),
        1,
        figsize=(10, 0.42 * sum(heights) + 1.4 * len(brokers)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, broker in zip(axes[:, 0], brokers, strict=True):
        panel = list(reversed(panels[broker]))
        labels = [f"{r.name} ({_rate(r.median)}/s)" for r in panel]
        values = [r.ratio or 0.0 for r in panel]
        colors = [_color(r) for r in panel]
        axis.barh(labels, values, color=colors)
        axis.axvline(1.0, color="black", linewidth=0.8)
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.2f}x", va="center", fontsize=8)
        axis.set_title(broker, loc="left", fontsize=11, fontweight="bold")
        axis.tick_params(axis="y", labelsize=8)
        axis.set_xlim(0, max([*values, 1.0]) * 1.18)
    axes[-1, 0].set_xlabel("throughput relative to the raw client (1.0 = raw loop / raw publish)")
    legend = [
        ("raw client", "#7f7f7f"),
        ("conveyor consume", "#1f77b4"),
        ("conveyor publish", "#2ca02c"),
        ("FastStream", "#ff7f0e"),
        ("old module", "#d62728"),
    ]
    handles = [Patch(color=color, label=label) for label, color in legend]
    fig.legend(handles=handles, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    fig.suptitle(title.replace("  (", "\n("), fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _color(row: Row) -> str:
    if row.name.startswith("raw"):
        return "#7f7f7f"
    if row.name.startswith("FastStream"):
        return "#ff7f0e"
    if row.name.startswith("old"):
        return "#d62728"
    if row.kind == "publish":
        return "#2ca02c"
    return "#1f77b4"


def update_docs(page: Path, image: str, block: str) -> None:
    """Replace the text between `START` and `END` in `page` with `block` and the chart.

    Raises:
        ValueError: the page lacks the markers.
    """
    text = page.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{page} has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = f"{block}\n![ratios to the raw clients]({image})\n"
    page.write_text(f"{head}{START}\n{body}{END}{tail}", encoding="utf-8")
