"""The ``conveyor`` group: ``--version``, logging options (before or after the command),
and one-line usage errors.

Commands live in their own modules and are registered in ``conveyor/cli/__init__.py``
with ``main.add_command(...)``; adding them there gives them ``--log-level`` and
``--log-format`` too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from conveyor.cli.common import CliError
from conveyor.logs import LOG_FORMATS, LogFormat, configure_logging

__all__ = ["LOG_LEVELS", "QUIET_COMMANDS", "ConveyorGroup", "chosen_log_format", "main"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Commands that do one thing and print its result: their default log level is CRITICAL,
#: so a failure is the command's own one line (not a broker client's warnings before it).
QUIET_COMMANDS = frozenset({"publish", "inspect", "dlq", "backends"})

_LEVEL = "conveyor.log_level"
_FORMAT = "conveyor.log_format"
_CHOSEN = "conveyor.log_format_chosen"


def _store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[f"conveyor.{param.name}"] = value.upper() if param.name == "log_level" else value


def _log_options(envvar: bool) -> list[click.Option]:
    return [
        click.Option(
            ["--log-level"],
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            default=None,
            envvar="CONVEYOR_LOG_LEVEL" if envvar else None,
            expose_value=False,
            callback=_store,
            help="DEBUG, INFO (the default of run, demo, bench), WARNING, ERROR or CRITICAL"
            " (the default of publish, inspect, dlq) (env: CONVEYOR_LOG_LEVEL).",
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(LOG_FORMATS),
            default=None,
            envvar="CONVEYOR_LOG_FORMAT" if envvar else None,
            expose_value=False,
            callback=_store,
            help="json: one JSON object per line; text: plain lines; auto (default): rich"
            " on a terminal, text otherwise (env: CONVEYOR_LOG_FORMAT).",
        ),
    ]


def chosen_log_format(ctx: click.Context | None = None) -> LogFormat:
    """The log format in use (``auto`` resolved), once the command runs."""
    found: LogFormat = (ctx or click.get_current_context()).meta.get(_CHOSEN, "text")
    return found


def _configure(ctx: click.Context) -> None:
    root = ctx.find_root()
    top = root.invoked_subcommand or ""
    default = "CRITICAL" if top in QUIET_COMMANDS else "INFO"
    fmt: Any = ctx.meta.get(_FORMAT, "auto")
    ctx.meta[_CHOSEN] = configure_logging(ctx.meta.get(_LEVEL, default), fmt)


def _adopt(command: click.Command) -> None:
    """Give `command` (and a group's commands) the logging options, and configure logging
    right before a leaf command runs."""
    if not any(p.name == "log_level" for p in command.params):
        command.params.extend(_log_options(envvar=False))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _adopt(sub)
        return
    callback = command.callback
    if callback is None or getattr(callback, "_conveyor_logs", False):
        return

    @functools.wraps(callback)
    def configured(*args: Any, **kwargs: Any) -> Any:
        _configure(click.get_current_context())
        return callback(*args, **kwargs)

    configured._conveyor_logs = True  # type: ignore[attr-defined]
    command.callback = configured


@contextmanager
def _one_line_usage_errors(ctx: click.Context | None = None) -> Iterator[None]:
    try:
        yield
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as usual
            raise
        where = exc.ctx.command_path if exc.ctx is not None else "conveyor"
        raise CliError(f"{exc.format_message()} (see: {where} --help)") from None


class ConveyorGroup(click.Group):
    """A group whose usage errors are one line and whose commands all take the logging
    options, before or after their name."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _adopt(cmd)
        super().add_command(cmd, name)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


def _version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:  # run from a source tree without installing
        from conveyor import __version__

        return __version__


@click.group(cls=ConveyorGroup)
@click.version_option(_version(), "--version", "-V", prog_name="conveyor")
@click.pass_context
def main(ctx: click.Context) -> None:
    """conveyor: consume and produce messages on durable streams."""


main.params.extend(_log_options(envvar=True))
