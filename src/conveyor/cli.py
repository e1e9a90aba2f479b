"""The ``conveyor`` command: run apps, publish, inspect, list backends, demo."""

from __future__ import annotations

import asyncio
import importlib
import inspect as pyinspect
import json
import logging
import os
import signal
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from conveyor.app import App
from conveyor.errors import AppLoadError, ConveyorError
from conveyor.options import redact_url
from conveyor.registry import available_backends, connect

__all__ = ["load_app", "main"]

URL_HELP = "Backend URL, e.g. memory://, redis://localhost:6379/0 (env: CONVEYOR_URL)."


def load_app(path: str) -> App:
    """Import ``module:attribute`` and return the `App` it names (or a factory's result).

    Raises:
        AppLoadError: with one line saying what is wrong.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"expected module:app, got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import module {module_name!r}: {exc}") from None
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if pyinspect.isfunction(obj):  # an app factory
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(f"app factory {path} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, App):
        raise AppLoadError(f"{path} is a {type(obj).__name__}, not a conveyor.App")
    return obj


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def main(log_level: str) -> None:
    """conveyor: consume and produce messages on durable streams."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=log_level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


@main.command()
@click.argument("app_path", metavar="MODULE:APP")
@click.option("--url", envvar="CONVEYOR_URL", required=True, help=URL_HELP)
@click.option("--consumer", default=None, help="Consumer name (default: <host>-<app>[-<index>]).")
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=None,
    help="Worker index, for several workers on one host.",
)
def run(app_path: str, url: str, consumer: str | None, index: int | None) -> None:
    """Run every handler of MODULE:APP until SIGINT/SIGTERM, then stop gracefully."""
    try:
        app = load_app(app_path)
    except AppLoadError as exc:
        _fail(str(exc))
        return

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logging.getLogger("conveyor.cli").info(
            "running %s on %s (%d handler(s))", app_path, redact_url(url), len(app.handlers)
        )
        await app.run(url, consumer=consumer, index=index, stop=stop)

    try:
        asyncio.run(serve())
    except ConveyorError as exc:
        _fail(f"{type(exc).__name__}: {exc}")


@main.command()
def backends() -> None:
    """List installed backends by URL scheme."""
    table = Table("scheme", "provided by")
    for scheme, where in available_backends().items():
        table.add_row(f"{scheme}://", where)
    Console().print(table)


@main.command()
@click.argument("url")
@click.argument("stream")
@click.argument("payload")
def publish(url: str, stream: str, payload: str) -> None:
    """Publish one JSON object PAYLOAD to STREAM and print its id."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        _fail(f"PAYLOAD is not valid JSON: {exc}")
        return
    if not isinstance(data, dict):
        _fail("PAYLOAD must be a JSON object")
        return

    async def go() -> str:
        async with connect(url) as backend:
            return await backend.publish(stream, data)

    try:
        click.echo(asyncio.run(go()))
    except ConveyorError as exc:
        _fail(f"{type(exc).__name__}: {exc}")


@main.command()
@click.argument("url")
@click.argument("stream")
@click.argument("group")
@click.option(
    "--dead", "dead_count", default=10, show_default=True, help="How many dead letters to show."
)
@click.option("--dead-letter-stream", default=None, help="Default: <STREAM>.dead")
def inspect(
    url: str, stream: str, group: str, dead_count: int, dead_letter_stream: str | None
) -> None:
    """Show pending count, lag, consumers and recent dead letters of STREAM/GROUP."""

    async def go() -> None:
        async with connect(url) as backend:
            info = await backend.group_info(stream, group)
            dead = await backend.peek(dead_letter_stream or f"{stream}.dead", count=dead_count)
        console = Console()
        summary = Table("stream", "group", "length", "pending", "lag", title="group")
        summary.add_row(
            info.stream,
            info.group,
            str(info.length),
            str(info.pending),
            "unknown" if info.lag is None else str(info.lag),
        )
        console.print(summary)
        if info.consumers:
            consumers = Table("consumer", "pending", "idle (s)", title="consumers")
            for c in info.consumers:
                consumers.add_row(c.name, str(c.pending), f"{c.idle:.1f}")
            console.print(consumers)
        letters = Table(
            "id",
            "error",
            "deliveries",
            "original id",
            "payload",
            title=f"dead letters ({len(dead)})",
        )
        for m in dead:
            letters.add_row(
                m.id,
                f"{m.data.get('error_type')}: {m.data.get('error')}",
                str(m.data.get("delivery_count")),
                str(m.data.get("original_id")),
                json.dumps(m.data.get("original"), ensure_ascii=False)[:60],
            )
        console.print(letters)

    try:
        asyncio.run(go())
    except ConveyorError as exc:
        _fail(f"{type(exc).__name__}: {exc}")


@main.command()
@click.option(
    "--url", envvar="CONVEYOR_URL", default="memory://demo", show_default=True, help=URL_HELP
)
@click.option("--count", default=5000, show_default=True, help="Orders to publish.")
@click.option("--workers", default=3, show_default=True, help="Processors in the group.")
@click.option("--concurrency", default=16, show_default=True, help="Handlers per processor.")
@click.option("--stream", default=None, help="Stream name (default: a fresh demo stream).")
def demo(url: str, count: int, workers: int, concurrency: int, stream: str | None) -> None:
    """Publish orders, process them with retries and a dead letter, print a summary."""
    from conveyor.demo import run_demo

    if logging.getLogger().level > logging.DEBUG:  # per-failure warnings would drown the bar
        logging.getLogger("conveyor.processor").setLevel(logging.ERROR)
    try:
        ok = asyncio.run(
            run_demo(url, count=count, workers=workers, concurrency=concurrency, stream=stream)
        )
    except ConveyorError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
        return
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--url", envvar="CONVEYOR_URL", required=True, help=URL_HELP)
@click.option(
    "-n", "--messages", default=50_000, show_default=True, help="Backlog size for the consume runs."
)
@click.option(
    "--latency-seconds",
    default=10.0,
    show_default=True,
    help="Length of the 200 msg/s latency run (0 skips it).",
)
@click.option("--json", "json_path", default=None, help="Also write the results as JSON here.")
def bench(url: str, messages: int, latency_seconds: float, json_path: str | None) -> None:
    """Measure conveyor on your broker: consume, publish and latency, each verified."""
    from conveyor.bench import BenchResult, run_suite

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

    try:
        results = asyncio.run(
            run_suite(url, n=messages, latency_seconds=latency_seconds, progress=show)
        )
    except ConveyorError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
        return
    console.print(table)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump([r.as_dict() for r in results], out, indent=2)
    sys.exit(0 if all(r.verified for r in results) else 1)
