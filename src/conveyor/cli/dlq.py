"""``conveyor dlq list|show|requeue|purge [URL] STREAM``: dead letters from the shell,
over `conveyor.DeadLetters` (the same tools as the Python API)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from conveyor.cli.common import (
    URL_HELP,
    check_url,
    fail,
    names,
    read_only,
    refuse_process_local,
    resolve_url,
    run_async,
)
from conveyor.dlq import DeadLetter, DeadLetters
from conveyor.opening import Opening
from conveyor.options import redact_url
from conveyor.protocol import StreamBackend
from conveyor.registry import connect

__all__ = ["Duration", "dlq", "format_age"]

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic in click 8.5 only
    """An age: seconds, or a number with s, m, h, d or w (``90``, ``15m``, ``2h``, ``7d``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, float)):
            return float(value)
        found = _DURATION.match(str(value))
        if found is None:
            self.fail(f"{value!r} is not a duration like 90, 90s, 15m, 2h or 7d", param, ctx)
        return float(found[1]) * _UNITS[found[2] or "s"]


def format_age(seconds: float | None) -> str:
    """``42s``, ``3m 12s``, ``2h 5m``, ``4d 3h``; ``?`` for unknown."""
    if seconds is None:
        return "?"
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit} {(s % size) // sub_size}{sub}"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "age_seconds": letter.age(),
        "headers": letter.headers,
        "record": letter.record,
    }


def _common(func: F) -> F:
    """Options every dlq command takes."""
    for option in (
        click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts."),
        click.option(
            "--dead-letter-stream", default=None, help="Default: <STREAM>.dead (as processors)."
        ),
        click.option("--url", envvar="CONVEYOR_URL", default=None, help=URL_HELP),
    ):
        func = option(func)
    return func


def _filters(func: F) -> F:
    for option in (
        click.option(
            "--newer-than", type=Duration(), default=None, help="Only those younger than this."
        ),
        click.option(
            "--older-than",
            type=Duration(),
            default=None,
            help="Only those dead-lettered at least this long ago (90, 15m, 2h, 7d).",
        ),
        click.option("--error-type", default=None, help="Only this error type (e.g. ValueError)."),
    ):
        func = option(func)
    return func


def _target(
    url: str | None, args: tuple[str, ...], command: str, dead_letter_stream: str | None
) -> tuple[str, str, list[str]]:
    """``[URL] STREAM REST...``: the URL (an argument holding ``://``, or --url, or
    CONVEYOR_URL, or the default), the stream and the rest."""
    given = args[0] if args and "://" in args[0] else None
    if given is not None:
        args = args[1:]
    if not args:
        fail(f"expected [URL] STREAM{' ID...' if command != 'list' else ''}: no STREAM given")
    url = check_url(given) if given is not None else resolve_url(url)
    refuse_process_local(url, f"dlq {command}")
    names(stream=args[0])
    if dead_letter_stream is not None:
        names(**{"dead-letter stream": dead_letter_stream})
    return url, args[0], list(args[1:])


def _connect(url: str) -> Opening[StreamBackend]:
    """`connect`, refusing a database file that does not exist (these commands only read
    it, or change what is in it: they never create one)."""
    return connect(read_only(url))


async def _why_empty(backend: StreamBackend, stream: str, where: str) -> str:
    """A hint when `stream` has no dead letters at all: a dead-letter stream given as
    STREAM, or a stream that holds nothing either (a typo?); else ""."""
    if stream.endswith(".dead") and where == f"{stream}.dead":
        return (
            f"{stream!r} looks like a dead-letter stream itself: STREAM is the stream whose"
            f" dead letters to list (here {stream.removesuffix('.dead')!r})"
        )
    if not await backend.peek(stream, count=1):
        return f"stream {stream!r} holds no messages either: is its name right?"
    return ""


def _box(backend: Any, stream: str, dead_letter_stream: str | None) -> DeadLetters:
    return DeadLetters(backend, stream, dead_letter_stream=dead_letter_stream)


@click.group()
def dlq() -> None:
    """Dead letters: list, show, requeue and purge them (see `conveyor dlq COMMAND --help`).

    The URL is the first argument, or --url, or CONVEYOR_URL, or the default.
    """


@dlq.command(name="list")
@click.argument("args", nargs=-1, metavar="[URL] STREAM")
@_common
@_filters
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Page size."
)
@click.option("--after", default=None, help="Start after this dead-letter id (the next page).")
def list_(
    args: tuple[str, ...],
    url: str | None,
    dead_letter_stream: str | None,
    as_json: bool,
    error_type: str | None,
    older_than: float | None,
    newer_than: float | None,
    limit: int,
    after: str | None,
) -> None:
    """List dead letters of STREAM, oldest first, a page at a time."""
    url, stream, rest = _target(url, args, "list", dead_letter_stream)
    if rest:
        fail(f"unexpected argument(s) {' '.join(rest)}: dlq list takes [URL] STREAM")

    async def go() -> tuple[str, list[DeadLetter], str]:
        async with _connect(url) as backend:
            box = _box(backend, stream, dead_letter_stream)
            letters = await box.list(
                after=after,
                limit=limit,
                error_type=error_type,
                older_than=older_than,
                newer_than=newer_than,
            )
            hint = ""
            filtered = (after, error_type, older_than, newer_than) != (None,) * 4
            if not letters and not filtered:
                hint = await _why_empty(backend, stream, box.dead_letter_stream)
            return box.dead_letter_stream, letters, hint

    where, letters, hint = run_async(go())
    if hint:
        click.echo(f"conveyor: {hint}", err=True)
    next_after = letters[-1].id if len(letters) == limit else None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dead_letter_stream": where,
                    "dead_letters": [_as_json(x) for x in letters],
                    "next_after": next_after,
                },
                ensure_ascii=False,
            )
        )
        return
    table = Table(title=f"{where} ({len(letters)})")
    table.add_column("id", no_wrap=True)  # whole, to copy into show/requeue/purge
    table.add_column("age", no_wrap=True)
    table.add_column("tries", justify="right")
    table.add_column("error", min_width=16)
    table.add_column("payload", overflow="ellipsis", no_wrap=True, max_width=24)
    for letter in letters:
        payload = letter.original if letter.original is not None else letter.record.get("original")
        table.add_row(
            letter.id,
            format_age(letter.age()),
            str(letter.delivery_count),
            f"{letter.error_type}: {letter.error}"[:120],
            json.dumps(payload, ensure_ascii=False)[:60],
        )
    console = Console()
    console.print(table)
    if next_after is not None:
        console.print(f"more: add --after {next_after}", highlight=False)


@dlq.command()
@click.argument("args", nargs=-1, metavar="[URL] STREAM ID")
@_common
def show(
    args: tuple[str, ...], url: str | None, dead_letter_stream: str | None, as_json: bool
) -> None:
    """Show one dead letter: its original payload, headers, error and traceback."""
    url, stream, rest = _target(url, args, "show", dead_letter_stream)
    if len(rest) != 1:
        fail(f"expected [URL] STREAM ID, got {len(rest)} id(s)")
    (dead_id,) = rest

    async def go() -> tuple[str, DeadLetter | None]:
        async with _connect(url) as backend:
            box = _box(backend, stream, dead_letter_stream)
            return box.dead_letter_stream, await box.get(dead_id)

    where, letter = run_async(go())
    if letter is None:
        fail(f"no dead letter {dead_id!r} in {where} on {redact_url(url)}")
    if as_json:
        click.echo(json.dumps(_as_json(letter), ensure_ascii=False))
        return
    rows = [
        ("id", letter.id),
        ("dead-lettered", f"{format_age(letter.age())} ago"),
        ("stream / group", f"{letter.stream} / {letter.group}"),
        ("original id", letter.original_id),
        ("deliveries", str(letter.delivery_count)),
        ("error", f"{letter.error_type}: {letter.error}"),
    ]
    for name, value in rows:
        click.echo(f"{name + ':':<16}{value}")
    click.echo("headers:")
    for key, value in sorted(letter.headers.items()):
        click.echo(f"  {key}: {value}")
    payload = letter.original if letter.original is not None else letter.record.get("original")
    kept = "payload:" if letter.original is not None else "payload (an excerpt only):"
    click.echo(kept)
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    if letter.traceback:
        click.echo("traceback:")
        click.echo(letter.traceback.rstrip())


async def _chosen(
    box: DeadLetters, ids: list[str], every: bool, filters: dict[str, Any]
) -> list[DeadLetter]:
    """The dead letters named by `ids`, or every one matching `filters` with --all; fail
    (acting on none) when an id is unknown."""
    letters = await box.all(**filters)
    if every:
        return letters
    known = {letter.id: letter for letter in letters}
    missing = [i for i in ids if i not in known]
    if missing:
        fail(f"no dead letter {', '.join(missing)} in {box.dead_letter_stream}; nothing done")
    return [known[i] for i in dict.fromkeys(ids)]


def _ids_or_all(command: str, ids: list[str], every: bool, filters: dict[str, Any]) -> None:
    if ids and every:
        fail(f"dlq {command}: give dead-letter ids or --all, not both")
    if not ids and not every:
        fail(f"dlq {command}: name the dead letters (ID...) or pass --all")
    if ids and any(v is not None for v in filters.values()):
        fail(f"dlq {command}: --error-type/--older-than/--newer-than go with --all")


@dlq.command()
@click.argument("args", nargs=-1, metavar="[URL] STREAM [ID...]")
@_common
@_filters
@click.option("--all", "every", is_flag=True, help="Every dead letter (that the filters match).")
def requeue(
    args: tuple[str, ...],
    url: str | None,
    dead_letter_stream: str | None,
    as_json: bool,
    error_type: str | None,
    older_than: float | None,
    newer_than: float | None,
    every: bool,
) -> None:
    """Send dead letters back to their source stream, then remove them.

    Each goes back with its headers plus conveyor-dead-letter-id. Exit status 1 when some
    could not be requeued (only an excerpt of their payload was kept).
    """
    url, stream, ids = _target(url, args, "requeue", dead_letter_stream)
    filters = {"error_type": error_type, "older_than": older_than, "newer_than": newer_than}
    _ids_or_all("requeue", ids, every, filters)

    async def go() -> tuple[dict[str, str], dict[str, str]]:
        async with _connect(url) as backend:
            box = _box(backend, stream, dead_letter_stream)
            letters = await _chosen(box, ids, every, filters)
            result = await box.requeue([letter.id for letter in letters])
            return result.requeued, result.skipped

    requeued, skipped = run_async(go())
    if as_json:
        click.echo(json.dumps({"requeued": requeued, "skipped": skipped}, ensure_ascii=False))
    else:
        click.echo(f"requeued {len(requeued)} dead letter(s)")
        for dead_id, new_id in requeued.items():
            click.echo(f"  {dead_id} -> {new_id}")
        for dead_id, why in skipped.items():
            click.echo(f"skipped {dead_id}: {why}")
    sys.exit(1 if skipped else 0)


@dlq.command()
@click.argument("args", nargs=-1, metavar="[URL] STREAM [ID...]")
@_common
@_filters
@click.option("--all", "every", is_flag=True, help="Every dead letter (that the filters match).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(
    args: tuple[str, ...],
    url: str | None,
    dead_letter_stream: str | None,
    as_json: bool,
    error_type: str | None,
    older_than: float | None,
    newer_than: float | None,
    every: bool,
    yes: bool,
) -> None:
    """Remove dead letters for good (asks first unless --yes)."""
    url, stream, ids = _target(url, args, "purge", dead_letter_stream)
    filters = {"error_type": error_type, "older_than": older_than, "newer_than": newer_than}
    _ids_or_all("purge", ids, every, filters)

    async def count() -> tuple[str, list[str]]:
        async with _connect(url) as backend:
            box = _box(backend, stream, dead_letter_stream)
            return box.dead_letter_stream, [x.id for x in await _chosen(box, ids, every, filters)]

    where, chosen = run_async(count())
    if chosen and not yes:
        try:
            confirmed = click.confirm(
                f"Remove {len(chosen)} dead letter(s) from {where} on {redact_url(url)} for good?",
                err=True,
            )
        except click.Abort:  # no terminal to ask on
            click.echo(err=True)  # end the prompt's line
            fail("purge asks for confirmation: run it in a terminal, or pass --yes")
        if not confirmed:
            click.echo("nothing removed", err=True)
            sys.exit(1)

    async def remove() -> int:
        async with _connect(url) as backend:
            return await _box(backend, stream, dead_letter_stream).purge(chosen)

    removed = run_async(remove()) if chosen else 0
    if as_json:
        click.echo(json.dumps({"purged": removed}))
    else:
        click.echo(f"purged {removed} dead letter(s) from {where}")
