"""``conveyor asyncapi``: write an app's AsyncAPI 3.0 document (`conveyor.asyncapi`)."""

from __future__ import annotations

import json

import click

from conveyor.asyncapi import asyncapi_document
from conveyor.cli.apps import load_runnable_app
from conveyor.cli.common import check_url, fail
from conveyor.errors import AppLoadError, ConfigurationError, UnknownSchemeError
from conveyor.registry import check_scheme

__all__ = ["asyncapi"]


@click.command()
@click.argument("app_path", metavar="MODULE:APP")
@click.option(
    "--url",
    envvar="CONVEYOR_URL",
    default=None,
    help="Backend URL the app runs on, for the document's servers (env: CONVEYOR_URL;"
    " default: no servers). Credentials and query options are left out.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the document here (default: standard output).",
)
@click.option("--version", "api_version", default="0.1.0", show_default=True, help="info.version")
def asyncapi(app_path: str, url: str | None, output: str | None, api_version: str) -> None:
    """Write the AsyncAPI 3.0 document of MODULE:APP as JSON.

    Channels are the streams its handlers consume (and their dead-letter streams),
    operations its handlers, message schemas the handlers' typed payloads.
    """
    if url is not None:
        check_url(url)
        try:
            check_scheme(url)
        except UnknownSchemeError as exc:  # the line `conveyor publish` gives
            fail(f"{type(exc).__name__}: {exc}")
    try:
        app = load_runnable_app(app_path)
    except AppLoadError as exc:
        fail(str(exc))
    try:
        document = asyncapi_document(app, url, version=api_version)
    except ConfigurationError as exc:  # a port that is not a number
        fail(str(exc))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"wrote {output} (AsyncAPI {document['asyncapi']})", err=True)
