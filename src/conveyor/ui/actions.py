"""The one state-changing endpoint: requeue or purge dead letters, through `DeadLetters`.

``POST /dead/act`` with form fields ``csrf``, ``s`` (the stream), ``action`` =
``requeue|purge`` ``:`` ``selected|all|id=<id>`` and, for ``selected``, ``ids``. It
answers with a redirect (303) to the dead-letter page, which says what was done.
Refused with 403 in read-only mode, without the CSRF token, or from another origin.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.dlq import DeadLetters
from conveyor.errors import ConveyorError
from conveyor.ui.pages import error_page
from conveyor.ui.security import check_csrf
from conveyor.ui.state import ui_state

__all__ = ["act"]


def _field(value: object) -> str:
    return value if isinstance(value, str) else ""


async def act(request: Request) -> Response:
    ui = ui_state(request)
    if ui.settings.read_only:
        return error_page(request, 403, "Read-only", "This dashboard runs with --read-only.")
    form = await request.form()
    refused = check_csrf(request, _field(form.get("csrf")) or None, ui.csrf)
    if refused is not None:
        return error_page(request, 403, "Refused", refused)
    stream = _field(form.get("s")).strip()
    op, _, target = _field(form.get("action")).partition(":")
    if not stream or op not in ("requeue", "purge"):
        return error_page(request, 400, "Bad request", "expected s=STREAM and an action")
    ids: list[str] | None
    if target == "all":
        ids = None
    elif target == "selected":
        ids = [i for i in (_field(v) for v in form.getlist("ids")) if i]
    elif target.startswith("id=") and len(target) > 3:
        ids = [target[3:]]
    else:
        return error_page(request, 400, "Bad request", f"unknown action target {target!r}")
    back = {"s": stream}
    if ids == []:
        back["done"] = "nothing"
        return RedirectResponse(f"/dead?{urlencode(back)}", status_code=303)
    box = DeadLetters(ui.require_backend(), stream)
    try:
        if op == "requeue":
            result = await box.requeue(ids)
            done, count, skipped = "requeued", len(result.requeued), len(result.skipped)
        else:
            done, count, skipped = "purged", await box.purge(ids), 0
    except ConveyorError as exc:
        return error_page(request, 502, "Broker error", ui.scrub(f"{type(exc).__name__}: {exc}"))
    back.update(done=done, n=str(count), skipped=str(skipped))
    return RedirectResponse(f"/dead?{urlencode(back)}", status_code=303)
