"""``conveyor run MODULE:APP``: one worker process, or a supervisor of ``--workers N``."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from conveyor.app import App
from conveyor.cli.apps import load_runnable_app
from conveyor.cli.common import URL_HELP, fail, names, resolve_url, run_async
from conveyor.cli.main import chosen_log_format
from conveyor.errors import AppLoadError
from conveyor.logs import MessageLogContext
from conveyor.options import redact_url
from conveyor.supervisor import RestartPolicy, Supervisor, watch_files, watch_supervisor

if TYPE_CHECKING:
    from conveyor.prometheus.exposition import MetricsServer

__all__ = ["run"]

log = logging.getLogger("conveyor.cli")


@click.command()
@click.argument("app_path", metavar="MODULE:APP")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
@click.option(
    "--consumer",
    default=None,
    help="Consumer name (default: <host>-<app>[-<index>]; with --workers: NAME-<index>).",
)
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=None,
    help="Worker index, for several workers on one host (--workers sets it itself).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="CONVEYOR_WORKERS",
    help="Run N worker processes (indexes 0..N-1) under a supervisor that restarts"
    " crashed ones and forwards SIGTERM/SIGINT (env: CONVEYOR_WORKERS).",
)
@click.option(
    "--reload",
    is_flag=True,
    default=False,
    help="Development: restart the workers when a .py file changes (needs conveyor[reload]).",
)
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Directory --reload watches (repeatable; default: the working directory).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar="CONVEYOR_METRICS_PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (needs conveyor[prometheus]);"
    " with --workers, worker I serves on PORT+I.",
)
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="See --metrics-port.")
def run(
    app_path: str,
    url: str | None,
    consumer: str | None,
    index: int | None,
    workers: int | None,
    reload: bool,
    reload_dirs: tuple[str, ...],
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run every handler of MODULE:APP until SIGINT/SIGTERM, then stop gracefully.

    A second SIGINT/SIGTERM during the graceful stop stops at once: the messages still
    being handled are not acknowledged (they will be delivered again)."""
    if metrics_port is not None:
        try:
            from conveyor.prometheus import PrometheusMiddleware  # noqa: F401 - a check
        except ImportError as exc:
            fail(f"--metrics-port: {exc}")
    if reload_dirs and not reload:
        fail("--reload-dir needs --reload")
    if reload:
        try:
            import watchfiles  # noqa: F401 - a check
        except ImportError:
            fail("--reload needs watchfiles: pip install 'conveyor[reload]'")
    if workers is not None and index is not None:
        fail("--index and --workers exclude each other: --workers N numbers its workers 0..N-1")
    if consumer is not None:
        names(consumer=consumer)
    try:
        app = load_runnable_app(app_path)
    except AppLoadError as exc:
        fail(str(exc))
    target = resolve_url(url)
    if workers is None and not reload:
        _run_one(app, app_path, target, consumer, index, metrics_port, metrics_host)
        return
    argv = functools.partial(_child_argv, app_path, consumer, metrics_port, metrics_host)
    status = _supervise(argv, workers or 1, target, reload, reload_dirs or (os.getcwd(),))
    sys.exit(status)


def _run_one(
    app: App,
    app_path: str,
    target: str,
    consumer: str | None,
    index: int | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    if chosen_log_format() in ("json", "text"):  # records a handler logs carry its fields
        app.add_middleware(MessageLogContext())
    # bound before anything starts: a port in use is one line, and exit status 2 makes a
    # supervisor give up at once (it would fail the same way on every restart)
    server = _serve_metrics(app, metrics_port, metrics_host) if metrics_port is not None else None

    forced: list[signal.Signals] = []

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None

        def on_signal(sig: signal.Signals) -> None:
            if not stop.is_set():  # a graceful stop: handlers finish, acks are flushed
                log.info("%s: stopping gracefully (send it again to stop at once)", sig.name)
                stop.set()
            elif not forced:
                log.warning(
                    "%s again: stopping now, without waiting for the running handlers;"
                    " the messages they hold are not acknowledged and will be delivered"
                    " again",
                    sig.name,
                )
                forced.append(sig)
                main_task.cancel()
            else:  # a third: the forced stop itself is stuck (a broker call that hangs)
                log.error("%s a third time: exiting without closing anything", sig.name)
                logging.shutdown()
                os._exit(128 + sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        log.info(
            "running %s on %s (%d handler(s))", app_path, redact_url(target), len(app.handlers)
        )
        if server is not None:
            log.info("serving metrics on http://%s:%d/metrics", server.host, server.port)
        orphan_watch = asyncio.ensure_future(watch_supervisor(stop))
        try:
            await app.run(target, consumer=consumer, index=index, stop=stop)
        finally:
            orphan_watch.cancel()
            await asyncio.wait([orphan_watch])

    try:
        run_async(serve())
    except asyncio.CancelledError:
        if not forced:
            raise
        sys.exit(128 + forced[0])  # the shell's status for "ended by that signal"
    finally:
        if server is not None:
            server.close()


def _serve_metrics(app: App, port: int, host: str) -> MetricsServer:
    """Serve `app`'s Prometheus metrics on `host`:`port`, or fail with one line."""
    from conveyor.prometheus import PrometheusMiddleware

    try:
        return PrometheusMiddleware.of(app).serve(port, host)
    except OSError as exc:  # socket.gaierror too: a host that does not resolve
        reason = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        fail(f"cannot serve metrics on {host}:{port}: {reason}")


def _child_argv(
    app_path: str,
    consumer: str | None,
    metrics_port: int | None,
    metrics_host: str,
    index: int,
) -> list[str]:
    """``conveyor run`` for worker `index` (the URL and log settings go by environment)."""
    argv = [sys.executable, "-m", "conveyor", "run", app_path, "--index", str(index)]
    if consumer is not None:
        argv += ["--consumer", f"{consumer}-{index}"]
    if metrics_port is not None:
        port = metrics_port + index if metrics_port else 0
        argv += ["--metrics-port", str(port), "--metrics-host", metrics_host]
    return argv


def _supervise(
    argv: Callable[[int], list[str]],
    workers: int,
    target: str,
    reload: bool,
    reload_dirs: tuple[str, ...],
) -> int:
    ctx = click.get_current_context()
    env = {"CONVEYOR_URL": target, "CONVEYOR_LOG_FORMAT": chosen_log_format(ctx)}
    level = ctx.meta.get("conveyor.log_level")
    if level:
        env["CONVEYOR_LOG_LEVEL"] = level
    # under --reload a crash (a typo, say) waits for the next change rather than giving up
    policy = RestartPolicy(max_start_crashes=sys.maxsize, max_delay=5.0) if reload else None
    supervisor = Supervisor(argv, workers, policy=policy, env=env)

    async def supervise() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, supervisor.stop, sig)
        loop.add_signal_handler(signal.SIGHUP, supervisor.reload)
        log.info(
            "supervising %d worker(s) on %s%s (pid %d)",
            workers,
            redact_url(target),
            " with --reload" if reload else "",
            os.getpid(),
        )
        stop_watching = asyncio.Event()
        watcher = (
            asyncio.ensure_future(watch_files(supervisor, reload_dirs, stop_watching))
            if reload
            else None
        )
        try:
            return await supervisor.run()
        finally:
            stop_watching.set()
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait([watcher])

    return run_async(supervise())
