"""`create_app`: the UI as a Starlette application (serve it with any ASGI server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from conveyor.base import BaseBackend
from conveyor.errors import ConfigurationError
from conveyor.options import redact_url
from conveyor.registry import connect
from conveyor.ui import formatting
from conveyor.ui.actions import act
from conveyor.ui.gather import Catalog, discover, gather_stream
from conveyor.ui.pages import dead_letter, dead_letters, login, overview, stream
from conveyor.ui.redaction import Scrubber
from conveyor.ui.sampler import Sampler
from conveyor.ui.security import TokenGate, new_csrf_token
from conveyor.ui.settings import UiSettings
from conveyor.ui.state import UiState

__all__ = ["create_app"]

log = logging.getLogger("conveyor.ui")

HERE = Path(__file__).parent

#: Sent with every response: no inline script, no foreign origin, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts send Origin: null
    "Cache-Control": "no-store",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _templates(scrub: Scrubber) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: a payload renders as text
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        age=formatting.age,
        since=formatting.since,
        num=formatting.num,
        rate=formatting.rate,
        pretty=formatting.pretty,
        scrub=scrub,
    )
    return Jinja2Templates(env=env)


async def _sample_forever(ui: UiState) -> None:
    """Look at every known stream each `sample_interval` seconds (throughput, charts)."""
    while True:
        backend = ui.backend
        if backend is not None:
            await discover(backend, ui.catalog, ui.scrub)
            for name in ui.catalog.streams():
                await gather_stream(backend, name, ui.catalog, ui.sampler, ui.scrub)
        await asyncio.sleep(ui.settings.sample_interval)


async def _connect(url: str) -> BaseBackend:
    """Open `url`; the UI needs a `BaseBackend` (the dead-letter tools page and delete)."""
    opened = await connect(url)
    if not isinstance(opened, BaseBackend):
        await opened.aclose()
        raise ConfigurationError(f"{redact_url(url)}: the UI needs a conveyor BaseBackend")
    return opened


def create_app(settings: UiSettings, *, backend: BaseBackend | None = None) -> Starlette:
    """The operations UI for `settings`.

    Args:
        settings: What to serve (see `UiSettings`).
        backend: An open backend to use (and leave open); by default the app connects to
            ``settings.url`` when it starts and closes it when it stops.

    Raises:
        ConfigurationError: `backend` is given but is not a `conveyor.base.BaseBackend`.
    """
    if backend is not None and not isinstance(backend, BaseBackend):
        raise ConfigurationError(f"{backend!r} is not a conveyor backend")
    scrub = Scrubber(settings.url, settings.token)
    ui = UiState(
        settings=settings,
        templates=_templates(scrub),
        catalog=Catalog(settings.streams, settings.groups),
        sampler=Sampler(settings.history),
        scrub=scrub,
        csrf=new_csrf_token(),
        shown_url=redact_url(settings.url),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = backend if backend is not None else await _connect(settings.url)
        ui.backend = opened
        sampler = asyncio.create_task(_sample_forever(ui), name="conveyor-ui-sampler")
        try:
            yield
        finally:
            sampler.cancel()
            await asyncio.wait([sampler])
            if backend is None:
                await opened.aclose()
            ui.backend = None

    middleware = [Middleware(SecurityHeaders)]
    if settings.allowed_hosts is not None:
        middleware.append(
            Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
        )
    if settings.token:
        middleware.append(Middleware(TokenGate, token=settings.token))
    routes = [
        Route("/", overview),
        Route("/stream", stream),
        Route("/dead", dead_letters),
        Route("/dead/letter", dead_letter),
        Route("/dead/act", act, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.ui = ui
    return app
