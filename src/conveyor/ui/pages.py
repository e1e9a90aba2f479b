"""The pages: overview, a stream, dead letters, one dead letter, and the login form.

Each page answers an htmx request (``HX-Request``) with only its refreshing part, so the
page updates without a full reload.
"""

from __future__ import annotations

import time
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.dlq import DeadLetters
from conveyor.errors import ConveyorError
from conveyor.message import Message
from conveyor.ui.chart import sparkline
from conveyor.ui.gather import DEAD_CAP, discover, gather_stream
from conveyor.ui.security import safe_next, same, set_session
from conveyor.ui.state import UiState, ui_state

__all__ = ["dead_letter", "dead_letters", "login", "login_page", "overview", "render", "stream"]


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    """`name` rendered with the context every page shares."""
    ui = ui_state(request)
    base = {
        "read_only": ui.settings.read_only,
        "url": ui.shown_url,
        "csrf": ui.csrf,
        "refresh_ms": int(ui.settings.refresh * 1000),
        "updated": time.strftime("%H:%M:%S"),
        "chart": lambda stream, group: _chart(ui, stream, group),
    }
    response = ui.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    response.headers["Vary"] = "HX-Request"
    return response


def _chart(ui: UiState, stream: str, group: str) -> Markup:
    label, points = ui.sampler.chart(stream, group)
    return sparkline(points, label=label)


def _partial(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", status, title=title, message=message)


def _stream_name(request: Request) -> str | None:
    name = request.query_params.get("s", "").strip()
    return name or None


async def overview(request: Request) -> Response:
    ui = ui_state(request)
    backend = ui.require_backend()
    await discover(backend, ui.catalog, ui.scrub)
    streams = [
        await gather_stream(backend, name, ui.catalog, ui.sampler, ui.scrub)
        for name in ui.catalog.streams()
    ]
    page = "_overview.html" if _partial(request) else "overview.html"
    return render(request, page, streams=streams, discovery_error=ui.catalog.discovery_error)


async def stream(request: Request) -> Response:
    ui = ui_state(request)
    name = _stream_name(request)
    if name is None:
        return error_page(request, 400, "No stream", "Name a stream: /stream?s=NAME")
    backend = ui.require_backend()
    view = await gather_stream(backend, name, ui.catalog, ui.sampler, ui.scrub)
    entries: list[Message] = []
    peek_error = None
    try:
        entries = list(reversed(await backend.peek(name, count=ui.settings.peek_count)))
    except ConveyorError as exc:
        peek_error = ui.scrub(f"{type(exc).__name__}: {exc}")
    page = "_stream.html" if _partial(request) else "stream.html"
    return render(
        request,
        page,
        stream=name,
        view=view,
        entries=entries,
        peek_error=peek_error,
        peek_count=ui.settings.peek_count,
    )


def _flash(request: Request) -> str | None:
    done = request.query_params.get("done")
    if done not in ("requeued", "purged", "nothing"):
        return None
    if done == "nothing":
        return "Nothing selected."
    count = request.query_params.get("n", "0")
    skipped = request.query_params.get("skipped", "0")
    text = f"{done.capitalize()} {int(count) if count.isdigit() else 0} dead letter(s)."
    if skipped.isdigit() and int(skipped):
        text += f" Left {int(skipped)}: already gone, or only an excerpt of the original was kept."
    return text


async def dead_letters(request: Request) -> Response:
    ui = ui_state(request)
    name = _stream_name(request)
    if name is None:
        return error_page(request, 400, "No stream", "Name a stream: /dead?s=NAME")
    after = request.query_params.get("after") or None
    box = DeadLetters(ui.require_backend(), name)
    size = ui.settings.page_size
    try:
        letters = await box.list(after=after, limit=size + 1)
        total = len(await box.list(limit=DEAD_CAP + 1))
    except ConveyorError as exc:
        return error_page(request, 502, "Broker error", ui.scrub(f"{type(exc).__name__}: {exc}"))
    context: dict[str, Any] = {
        "stream": name,
        "after": after,
        "letters": letters[:size],
        "next_after": letters[size - 1].id if len(letters) > size else None,
        "total": min(total, DEAD_CAP),
        "total_capped": total > DEAD_CAP,
        "flash": _flash(request),
    }
    page = "_dead.html" if _partial(request) else "dead.html"
    return render(request, page, **context)


async def dead_letter(request: Request) -> Response:
    ui = ui_state(request)
    name = _stream_name(request)
    dead_id = request.query_params.get("id")
    if name is None or not dead_id:
        return error_page(request, 400, "No dead letter", "Name one: /dead/letter?s=NAME&id=ID")
    try:
        letter = await DeadLetters(ui.require_backend(), name).get(dead_id)
    except ConveyorError as exc:
        return error_page(request, 502, "Broker error", ui.scrub(f"{type(exc).__name__}: {exc}"))
    if letter is None:
        return error_page(request, 404, "Not found", f"No dead letter {dead_id!r} for {name!r}.")
    return render(request, "letter.html", stream=name, letter=letter)


def login_page(request: Request, *, failed: bool = False, status: int = 401) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.url.path == "/login":
        target = request.query_params.get("next", "/")
    return render(request, "login.html", status, failed=failed, next=safe_next(target), url="")


async def login(request: Request) -> Response:
    """GET: the form. POST: check the token, set the session cookie, go back."""
    ui = ui_state(request)
    if request.method != "POST" or not ui.settings.token:
        if not ui.settings.token:
            return RedirectResponse("/", status_code=303)
        return login_page(request, status=200)
    form = await request.form()
    given = form.get("token")
    if not isinstance(given, str) or not same(given, ui.settings.token):
        return render(
            request, "login.html", 401, failed=True, next=safe_next(str(form.get("next")))
        )
    response = RedirectResponse(safe_next(str(form.get("next") or "/")), status_code=303)
    set_session(response, ui.settings.token, request)
    return response
