"""The ``conveyor`` command: run apps, publish, inspect, list backends, demo."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect as pyinspect
import json
import logging
import os
import signal
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from conveyor.app import App
from conveyor.errors import AppLoadError, ConveyorError
from conveyor.logs import LOG_FORMATS, MessageLogContext, configure_logging
from conveyor.options import redact_url
from conveyor.registry import available_backends, connect

__all__ = ["DEFAULT_URL", "load_app", "main"]

#: The URL of every command given none (no ``--url``, no ``CONVEYOR_URL``): the embedded
#: durable broker, one file in the working directory that every process there shares.
DEFAULT_URL = "sqlite:///conveyor.db"

#: Schemes whose broker lives inside one process: a command run on its own (publish,
#: inspect) would talk to a broker nobody else sees.
PROCESS_LOCAL_SCHEMES = frozenset({"memory"})

URL_HELP = (
    f"Backend URL, e.g. {DEFAULT_URL}, redis://localhost:6379/0 (env: CONVEYOR_URL;"
    f" default: {DEFAULT_URL})."
)


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


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _resolve_url(url: str | None) -> str:
    """`url`, or the default one, saying so in one line."""
    if url:
        return url
    where = os.path.abspath("conveyor.db")
    click.echo(f"conveyor: no --url or CONVEYOR_URL given: using {DEFAULT_URL} ({where})", err=True)
    return DEFAULT_URL


def _refuse_process_local(url: str, command: str) -> None:
    scheme = url.partition("://")[0].lower()
    if scheme in PROCESS_LOCAL_SCHEMES:
        _fail(
            f"{scheme}:// lives inside one process, so `conveyor {command}` would use a broker"
            " that no other process sees and that vanishes when this command exits; use"
            f" {DEFAULT_URL} to share a broker between processes through a file (no server)"
        )


def _url_and_args(url: str | None, args: tuple[str, ...], names: str) -> tuple[str, list[str]]:
    """``[URL] A B`` positional arguments (the URL first, or from --url/CONVEYOR_URL/the
    default): the URL and ``[A, B]``."""
    if len(args) == 3:
        if url is not None and os.environ.get("CONVEYOR_URL") != url:
            _fail("the URL is given twice: as an argument and with --url")
        return args[0], list(args[1:])
    if len(args) != 2:
        _fail(f"expected [URL] {names}, got {len(args)} argument(s)")
    return _resolve_url(url), list(args)


@click.group()
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    envvar="CONVEYOR_LOG_FORMAT",
    type=click.Choice(LOG_FORMATS),
    help="json: one JSON object per line; text: plain lines; auto: rich on a terminal,"
    " text otherwise (env: CONVEYOR_LOG_FORMAT).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str, log_format: Any) -> None:
    """conveyor: consume and produce messages on durable streams."""
    ctx.obj = configure_logging(log_level, log_format)  # the format chosen


@main.command()
@click.argument("app_path", metavar="MODULE:APP")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
@click.option("--consumer", default=None, help="Consumer name (default: <host>-<app>[-<index>]).")
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=None,
    help="Worker index, for several workers on one host.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0),
    default=None,
    envvar="CONVEYOR_METRICS_PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (needs conveyor[prometheus]).",
)
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="See --metrics-port.")
@click.pass_obj
def run(
    log_format: str,
    app_path: str,
    url: str | None,
    consumer: str | None,
    index: int | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run every handler of MODULE:APP until SIGINT/SIGTERM, then stop gracefully."""
    try:
        app = load_app(app_path)
    except AppLoadError as exc:
        _fail(str(exc))
        return
    target = _resolve_url(url)
    if log_format in ("json", "text"):  # records a handler logs carry its message's fields
        app.add_middleware(MessageLogContext())
    serve_metrics = None
    if metrics_port is not None:
        try:
            from conveyor.prometheus import PrometheusMiddleware
        except ImportError as exc:
            _fail(f"--metrics-port: {exc}")
        serve_metrics = functools.partial(
            PrometheusMiddleware.of(app).serve, metrics_port, metrics_host
        )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log = logging.getLogger("conveyor.cli")
        log.info(
            "running %s on %s (%d handler(s))", app_path, redact_url(target), len(app.handlers)
        )
        server = serve_metrics() if serve_metrics is not None else None
        if server is not None:
            log.info("serving metrics on http://%s:%d/metrics", server.host, server.port)
        try:
            await app.run(target, consumer=consumer, index=index, stop=stop)
        finally:
            if server is not None:
                await asyncio.to_thread(server.close)

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
@click.argument("args", nargs=-1, metavar="[URL] STREAM PAYLOAD")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
def publish(args: tuple[str, ...], url: str | None) -> None:
    """Publish one JSON object PAYLOAD to STREAM and print its id.

    The URL is the first argument, or --url, or CONVEYOR_URL, or the default.
    """
    url, (stream, payload) = _url_and_args(url, args, "STREAM PAYLOAD")
    _refuse_process_local(url, "publish")
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
@click.argument("args", nargs=-1, metavar="[URL] STREAM GROUP")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
@click.option(
    "--dead", "dead_count", default=10, show_default=True, help="How many dead letters to show."
)
@click.option("--dead-letter-stream", default=None, help="Default: <STREAM>.dead")
def inspect(
    args: tuple[str, ...], url: str | None, dead_count: int, dead_letter_stream: str | None
) -> None:
    """Show pending count, lag, consumers and recent dead letters of STREAM/GROUP.

    The URL is the first argument, or --url, or CONVEYOR_URL, or the default.
    """
    url, (stream, group) = _url_and_args(url, args, "STREAM GROUP")
    _refuse_process_local(url, "inspect")

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
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
@click.option("--count", default=5000, show_default=True, help="Orders to publish.")
@click.option("--workers", default=3, show_default=True, help="Processors in the group.")
@click.option("--concurrency", default=16, show_default=True, help="Handlers per processor.")
@click.option("--stream", default=None, help="Stream name (default: a fresh demo stream).")
def demo(url: str | None, count: int, workers: int, concurrency: int, stream: str | None) -> None:
    """Publish orders, process them with retries and a dead letter, print a summary."""
    from conveyor.demo import run_demo

    url = _resolve_url(url)
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
