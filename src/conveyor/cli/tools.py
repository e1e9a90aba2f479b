"""``conveyor demo`` and ``conveyor bench``: try conveyor, measure it on your broker."""

from __future__ import annotations

import json
import logging
import os
import sys

import click
from rich.console import Console
from rich.table import Table

from conveyor.cli.common import URL_HELP, check_url, fail, names, resolve_url, run_async
from conveyor.demo import POISON_ORDER, StreamInUseError, run_demo
from conveyor.options import redact_url

__all__ = ["bench", "demo"]


@click.command()
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
@click.option(
    "--count",
    type=click.IntRange(min=POISON_ORDER + 1),
    default=5000,
    show_default=True,
    help=f"Orders to publish (at least {POISON_ORDER + 1}: order {POISON_ORDER} is the poison"
    " one).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Processors in the group.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Handlers per processor.",
)
@click.option(
    "--stream",
    default=None,
    help="Stream name (default: a fresh demo stream); it and its .dead stream must be new"
    " or empty.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the demo's streams on the broker (by default they are deleted at the end;"
    " a --stream that existed before is always kept).",
)
def demo(
    url: str | None,
    count: int,
    workers: int,
    concurrency: int,
    stream: str | None,
    keep: bool,
) -> None:
    """Publish orders, process them with retries and a dead letter, print a summary, then
    delete the streams it created (unless --keep)."""
    if stream is not None:
        names(stream=stream)
    url = resolve_url(url)
    processor_log = logging.getLogger("conveyor.processor")
    previous = processor_log.level
    if logging.getLogger().level > logging.DEBUG:  # per-failure warnings would drown the bar
        processor_log.setLevel(logging.ERROR)

    async def go() -> bool:
        try:
            return await run_demo(
                url, count=count, workers=workers, concurrency=concurrency, stream=stream, keep=keep
            )
        except StreamInUseError as exc:
            where = "" if exc.holder == exc.stream else f": {exc.holder}"
            fail(
                f"--stream {exc.stream}{where} already has {exc.held}: the demo"
                " needs a new or empty stream"
            )

    try:
        ok = run_async(go())
    finally:  # in-process callers (tests, CliRunner) keep their logging as it was
        processor_log.setLevel(previous)
    sys.exit(0 if ok else 1)


@click.command()
@click.option(
    "--url",
    envvar="CONVEYOR_URL",
    required=True,
    help="Backend URL to measure, e.g. redis://localhost:6379/0 (env: CONVEYOR_URL).",
)
@click.option(
    "-n",
    "--messages",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Backlog size for the consume runs.",
)
@click.option(
    "--latency-seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Length of the 200 msg/s latency run (0 skips it).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the results as JSON here.",
)
@click.option(
    "--keep", is_flag=True, help="Leave the bench's streams on the broker (default: deleted)."
)
def bench(
    url: str, messages: int, latency_seconds: float, json_path: str | None, keep: bool
) -> None:
    """Measure conveyor on your broker: consume, publish and latency, each verified. The
    streams it creates are deleted at the end unless --keep."""
    from conveyor.bench import BenchResult, run_suite

    check_url(url)
    if json_path is not None:
        folder = os.path.dirname(os.path.abspath(json_path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            fail(f"--json: cannot write a file in {folder}")
    console = Console()
    table = Table(
        "measurement",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "verified",
        title=f"conveyor bench on {redact_url(url)}",
    )

    def show(result: BenchResult) -> None:
        console.print(f"  {result.name}: done")
        table.add_row(
            result.name,
            f"{result.rate:,.0f}" if result.rate else "",
            f"{result.p50_ms:.2f}" if result.p50_ms is not None else "",
            f"{result.p99_ms:.2f}" if result.p99_ms is not None else "",
            "yes" if result.verified else "[red]NO",
        )

    results = run_async(
        run_suite(url, n=messages, latency_seconds=latency_seconds, progress=show, keep=keep)
    )
    console.print(table)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump([r.as_dict() for r in results], out, indent=2)
    sys.exit(0 if all(r.verified for r in results) else 1)
