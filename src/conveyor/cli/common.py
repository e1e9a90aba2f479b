"""What every command shares: one-line errors, the URL, names, running a coroutine.

Every failure a user can cause ends in one line on stderr, ``error: <what and why>``, and
exit status 2 (`fail`): bad arguments, a URL that does not parse, a broker that cannot be
reached. Only a bug in conveyor itself may end in a traceback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import IO, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import click

from conveyor.base import check_name
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.options import redact_url
from conveyor.registry import check_scheme

__all__ = [
    "DEFAULT_URL",
    "FILE_SCHEMES",
    "PROCESS_LOCAL_SCHEMES",
    "URL_HELP",
    "CliError",
    "check_url",
    "fail",
    "names",
    "read_only",
    "refuse_process_local",
    "resolve_url",
    "run_async",
    "url_and_args",
    "url_and_up_to",
]

T = TypeVar("T")

#: The URL of every command given none (no ``--url``, no ``CONVEYOR_URL``): the embedded
#: durable broker, one file in the working directory that every process there shares.
DEFAULT_URL = "sqlite:///conveyor.db"

#: Schemes whose broker lives inside one process: a command run on its own (publish,
#: inspect, dlq) would talk to a broker nobody else sees.
PROCESS_LOCAL_SCHEMES = frozenset({"memory"})

#: Schemes whose URL names a database file that the backend creates when it opens it:
#: commands that only read (inspect, dlq, ui) pass ``create=false`` (`read_only`), so a
#: mistyped path is refused rather than created empty.
FILE_SCHEMES = frozenset({"sqlite"})

URL_HELP = (
    f"Backend URL, e.g. {DEFAULT_URL}, redis://localhost:6379/0 (env: CONVEYOR_URL;"
    f" default: {DEFAULT_URL})."
)


class CliError(click.ClickException):
    """A user's mistake or a broker's refusal: one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def fail(message: str) -> NoReturn:
    """Stop the command with one line, ``error: <message>``, and exit status 2."""
    raise CliError(message)


def check_url(url: str) -> str:
    """`url` if it has a scheme a backend handles and parses (IPv6 brackets); else fail,
    before anything is started or logged. Hosts and ports are the backend's to check
    (several ``host:port`` may be given, comma-separated)."""
    if "://" not in url:
        fail(f"not a backend URL: {redact_url(url)!r} (expected scheme://..., e.g. {DEFAULT_URL})")
    try:
        urlsplit(url)
    except ValueError as exc:
        fail(f"cannot parse the URL {redact_url(url)!r}: {exc}")
    try:
        check_scheme(url)
    except ConveyorError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    return url


def resolve_url(url: str | None) -> str:
    """`url` (checked), or the default one, saying so in one line."""
    if url:
        return check_url(url)
    where = os.path.abspath("conveyor.db")
    click.echo(f"conveyor: no --url or CONVEYOR_URL given: using {DEFAULT_URL} ({where})", err=True)
    return DEFAULT_URL


def refuse_process_local(url: str, command: str) -> None:
    scheme = url.partition("://")[0].lower()
    if scheme in PROCESS_LOCAL_SCHEMES:
        fail(
            f"{scheme}:// lives inside one process, so `conveyor {command}` would use a broker"
            " that no other process sees and that vanishes when this command exits; use"
            f" {DEFAULT_URL} to share a broker between processes through a file (no server)"
        )


def read_only(url: str) -> str:
    """`url` for a command that only reads (or changes what a database holds): a
    ``sqlite:///`` URL gets ``create=false``, so that a mistyped path is refused rather
    than created empty (the backend checks the rest of the URL first)."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in FILE_SCHEMES:
        return url
    base, _, query = rest.partition("?")
    options = [part for part in query.split("&") if part]
    if any(part.partition("=")[0] == "create" for part in options):
        return url
    return f"{scheme}://{base}?{'&'.join([*options, 'create=false'])}"


def _url_argument(option: str | None, given: str) -> str:
    """The URL given as the first argument (checked); fail when --url gave one too (a
    URL that only came from ``CONVEYOR_URL`` is overridden)."""
    if option is not None and os.environ.get("CONVEYOR_URL") != option:
        fail("the URL is given twice: as an argument and with --url")
    return check_url(given)


def url_and_args(
    url: str | None, args: tuple[str, ...], names: str, count: int = 2
) -> tuple[str, list[str]]:
    """``[URL] A B`` positional arguments (the URL first, or from --url/CONVEYOR_URL/the
    default): the URL and ``[A, B]``."""
    if len(args) == count + 1:
        return _url_argument(url, args[0]), list(args[1:])
    if len(args) != count:
        fail(f"expected [URL] {names}, got {len(args)} argument(s)")
    return resolve_url(url), list(args)


def url_and_up_to(
    url: str | None, args: tuple[str, ...], names: str, most: int
) -> tuple[str, list[str]]:
    """``[URL] [A [B]]`` positional arguments, up to `most` after the URL: a first
    argument with ``://`` in it is the URL (else --url/CONVEYOR_URL/the default)."""
    if args and "://" in args[0]:
        url, rest = _url_argument(url, args[0]), list(args[1:])
    else:
        url, rest = resolve_url(url), list(args)
    if len(rest) > most:
        fail(f"expected [URL] {names}, got {len(args)} argument(s)")
    return url, rest


def names(**given: str) -> None:
    """Refuse an empty stream/group name before connecting: ``names(stream=s, group=g)``."""
    for kind, value in given.items():
        try:
            check_name(f"{kind} name", value)
        except ConfigurationError as exc:
            fail(str(exc))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``; a `ConveyorError` becomes one line and exit status 2."""
    try:
        return asyncio.run(coro)
    except ConveyorError as exc:
        fail(f"{type(exc).__name__}: {exc}")
