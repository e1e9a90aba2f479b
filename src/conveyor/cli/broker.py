"""``conveyor publish``, ``conveyor inspect`` and ``conveyor backends``."""

from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.table import Table

from conveyor.cli.common import (
    URL_HELP,
    fail,
    names,
    refuse_process_local,
    run_async,
    url_and_args,
)
from conveyor.discovery import oldest_entry_at
from conveyor.registry import available_backends, connect

__all__ = ["backends", "inspect", "publish"]


@click.command()
def backends() -> None:
    """List installed backends by URL scheme."""
    table = Table("scheme", "provided by")
    for scheme, where in available_backends().items():
        table.add_row(f"{scheme}://", where)
    Console().print(table)


@click.command()
@click.argument("args", nargs=-1, metavar="[URL] STREAM PAYLOAD")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
def publish(args: tuple[str, ...], url: str | None) -> None:
    """Publish one JSON object PAYLOAD to STREAM and print its id.

    The URL is the first argument, or --url, or CONVEYOR_URL, or the default.
    """
    url, (stream, payload) = url_and_args(url, args, "STREAM PAYLOAD")
    refuse_process_local(url, "publish")
    names(stream=stream)
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        fail(f"PAYLOAD is not valid JSON: {exc}")
    if not isinstance(data, dict):
        fail("PAYLOAD must be a JSON object")

    async def go() -> str:
        async with connect(url) as backend:
            return await backend.publish(stream, data)

    click.echo(run_async(go()))


@click.command()
@click.argument("args", nargs=-1, metavar="[URL] STREAM GROUP")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP)
@click.option(
    "--dead",
    "dead_count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many dead letters to show.",
)
@click.option("--dead-letter-stream", default=None, help="Default: <STREAM>.dead")
def inspect(
    args: tuple[str, ...], url: str | None, dead_count: int, dead_letter_stream: str | None
) -> None:
    """Show length, oldest entry's age, pending count, lag, consumers and recent dead
    letters of STREAM/GROUP.

    The URL is the first argument, or --url, or CONVEYOR_URL, or the default.
    """
    url, (stream, group) = url_and_args(url, args, "STREAM GROUP")
    refuse_process_local(url, "inspect")
    names(stream=stream, group=group)
    if dead_letter_stream is not None:
        names(**{"dead-letter stream": dead_letter_stream})

    async def go() -> None:
        async with connect(url) as backend:
            info = await backend.group_info(stream, group)
            oldest = await oldest_entry_at(backend, stream)
            dead = await backend.peek(dead_letter_stream or f"{stream}.dead", count=dead_count)
        console = Console()
        summary = Table("stream", "group", "length", "oldest", "pending", "lag", title="group")
        summary.add_row(
            info.stream,
            info.group,
            str(info.length),
            age(oldest),
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

    run_async(go())


def age(published_at: float | None, now: float | None = None) -> str:
    """How long ago `published_at` was, for a table cell (``—`` when unknown)."""
    if published_at is None:
        return "—"
    seconds = max(0.0, (time.time() if now is None else now) - published_at)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
