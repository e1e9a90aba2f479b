"""``conveyor publish``, ``conveyor inspect`` and ``conveyor backends``."""

from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.table import Table

from conveyor.base import BaseBackend
from conveyor.cli.common import (
    URL_HELP,
    fail,
    names,
    read_only,
    refuse_process_local,
    run_async,
    url_and_args,
    url_and_up_to,
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
@click.argument("args", nargs=-1, metavar="[URL] [STREAM [GROUP]]")
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
    letters of STREAM/GROUP; without GROUP, every group of STREAM; without STREAM, every
    stream and group the broker lists.

    The URL is the first argument (it has ``://``), or --url, or CONVEYOR_URL, or the
    default.
    """
    url, rest = url_and_up_to(url, args, "[STREAM [GROUP]]", 2)
    refuse_process_local(url, "inspect")
    if len(rest) < 2:
        names(**({"stream": rest[0]} if rest else {}))
        run_async(_overview(read_only(url), rest[0] if rest else None))
        return
    stream, group = rest
    names(stream=stream, group=group)
    if dead_letter_stream is not None:
        names(**{"dead-letter stream": dead_letter_stream})

    async def go() -> None:
        async with connect(read_only(url)) as backend:  # a mistyped file is not created
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


async def _overview(url: str, only: str | None) -> None:
    """One row per (stream, group): every stream the broker lists, or `only`'s groups."""
    async with connect(url) as backend:
        try:
            if not isinstance(backend, BaseBackend):
                raise NotImplementedError
            found = [i for i in await backend.streams() if only is None or i.name == only]
        except NotImplementedError:
            fail(
                f"{backend.capabilities.name} cannot list its streams: give STREAM GROUP"
                " (conveyor inspect [URL] STREAM GROUP)"
            )
        if only is not None and not found:
            fail(f"no stream {only!r} on this broker (conveyor inspect [URL] lists them)")
        rows = []
        for stream in found:
            oldest = stream.oldest_at
            if oldest is None and stream.length:
                oldest = await oldest_entry_at(backend, stream.name)
            infos = [await backend.group_info(stream.name, g) for g in stream.groups]
            rows.append((stream, oldest, infos))
    title = f"groups of {only}" if only is not None else "streams"
    table = Table("stream", "length", "oldest", "group", "pending", "lag", "consumers", title=title)
    for stream, oldest, infos in rows:
        length = "unknown" if stream.length is None else str(stream.length)
        name = stream.name
        if stream.dead_letter_of is not None:
            name += " (dead letters)"
        if not infos:
            table.add_row(name, length, age(oldest), "—", "", "", "")
        for number, info in enumerate(infos):
            first = number == 0
            table.add_row(
                name if first else "",
                length if first else "",
                age(oldest) if first else "",
                info.group,
                str(info.pending),
                "unknown" if info.lag is None else str(info.lag),
                str(len(info.consumers)),
            )
    console = Console()
    if not rows:
        console.print("no streams")
        return
    console.print(table)


def age(published_at: float | None, now: float | None = None) -> str:
    """How long ago `published_at` was, for a table cell (``—`` when unknown)."""
    if published_at is None:
        return "—"
    seconds = max(0.0, (time.time() if now is None else now) - published_at)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
