"""``conveyor ui``: serve the operations UI (a `click.Command` the CLI registers).

Every mistake a user can make here (a missing extra, an unknown scheme, a broker that does
not answer, a port in use) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from typing import NoReturn

import click

from conveyor.errors import ConveyorError
from conveyor.options import redact_url
from conveyor.ui.redaction import Scrubber
from conveyor.ui.settings import UiSettings, parse_group

__all__ = ["LOOPBACK_HOSTS", "ui_command"]

#: ``Host`` headers served when bound to a loopback address (stops DNS rebinding).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port`, or one line and exit code 2."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "port in use" if exc.errno in (98, 48, 10048) else exc.strerror or str(exc)
        _fail(f"cannot listen on {host}:{port}: {reason}")
    sock.set_inheritable(True)
    return sock


async def _probe(url: str, stream: str) -> None:
    """Connect once and read, so that a broker that does not answer is reported now."""
    from conveyor.base import BaseBackend
    from conveyor.registry import connect

    async with connect(url) as backend:
        if not isinstance(backend, BaseBackend):
            _fail(f"{redact_url(url)}: the UI needs a conveyor BaseBackend")
        await backend.peek(stream, count=1)


@click.command("ui")
@click.option("--url", envvar="CONVEYOR_URL", default=None, help="Backend URL (env: CONVEYOR_URL).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--stream", "streams", multiple=True, help="A stream to show first (repeat).")
@click.option(
    "--group", "groups", multiple=True, help="A group to show too, as STREAM:GROUP (repeat)."
)
@click.option("--read-only", is_flag=True, help="Hide every action; the server refuses them.")
@click.option(
    "--token",
    envvar="CONVEYOR_UI_TOKEN",
    default=None,
    help="Ask for this token on every page (env: CONVEYOR_UI_TOKEN).",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="Seconds between page refreshes and between the server's samples.",
)
def ui_command(
    url: str | None,
    host: str,
    port: int,
    streams: tuple[str, ...],
    groups: tuple[str, ...],
    read_only: bool,
    token: str | None,
    refresh: float,
) -> None:
    """Serve a web dashboard of streams, groups and dead letters (needs conveyor[ui]).

    Every stream and group on the broker is listed (dead-letter streams under their
    source); --stream and --group STREAM:GROUP add ones that do not exist yet.
    """
    if not url:
        _fail("give the backend URL with --url or CONVEYOR_URL")
    if url.partition("://")[0].lower() == "memory":
        _fail(
            "memory:// lives inside one process: `conveyor ui` would show a broker nobody"
            " else writes to; serve conveyor.ui.create_app in your process instead"
        )
    try:
        import uvicorn

        from conveyor.ui.app import create_app
    except ImportError as exc:
        _fail(f"conveyor ui needs the ui extra (pip install 'conveyor[ui]'): {exc}")
    from conveyor.cli.common import read_only as reading  # here: conveyor.cli imports this

    try:
        pairs = tuple(parse_group(g) for g in groups)
        settings = UiSettings(
            reading(url),  # the dashboard never creates a mistyped sqlite:/// file
            streams=streams,
            groups=pairs,
            read_only=read_only,
            token=token or None,
            refresh=refresh,
            sample_interval=refresh,
            allowed_hosts=LOOPBACK_HOSTS if _is_loopback(host) else None,
        )
        asyncio.run(_probe(settings.url, (streams or ("conveyor-ui-probe",))[0]))
    except ConveyorError as exc:
        _fail(Scrubber(url, token)(f"{type(exc).__name__}: {exc}"))
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"conveyor ui: http://{shown}:{bound}/ on {redact_url(url)}", err=True)
    if not _is_loopback(host) and not token:
        click.echo("conveyor ui: warning: listening beyond this machine without --token", err=True)
    config = uvicorn.Config(
        create_app(settings), log_level="warning", access_log=False, lifespan="on"
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stopped gracefully, then re-raised the SIGINT
        pass
    finally:
        sock.close()
