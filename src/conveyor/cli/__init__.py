"""The ``conveyor`` command.

Each command lives in its own module; this is the one place they are registered. To add
one, write it as a ``click.Command`` (or group) in a module of its own and add one line
below: ``main.add_command(your_command)``. It gets ``--log-level``/``--log-format``
(before or after its name) and one-line usage errors from `main`; raise
`conveyor.cli.common.CliError` (or call `fail`) for anything the user got wrong.
"""

from __future__ import annotations

from conveyor.cli.apps import load_app
from conveyor.cli.asyncapi import asyncapi
from conveyor.cli.broker import backends, inspect, publish
from conveyor.cli.common import DEFAULT_URL
from conveyor.cli.dlq import dlq
from conveyor.cli.main import main
from conveyor.cli.run import run
from conveyor.cli.tools import bench, demo
from conveyor.ui.command import ui_command

__all__ = ["DEFAULT_URL", "load_app", "main"]

# -- the commands, in the order `conveyor --help` lists them -------------------------------
main.add_command(run)
main.add_command(publish)
main.add_command(inspect)
main.add_command(dlq)
main.add_command(backends)
main.add_command(demo)
main.add_command(bench)
main.add_command(asyncapi)
main.add_command(ui_command)
