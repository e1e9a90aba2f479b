"""The UI's guards: an optional token for every page, CSRF tokens for every action.

* `TokenGate` (ASGI middleware, only with a token): a request passes with the session
  cookie set by the login form, or with ``?token=`` once (it sets the cookie and
  redirects to the same URL without the token). Anything else gets the login form
  (status 401). Static files pass: they are the vendored htmx and a stylesheet.
* `check_csrf`: a state-changing request must carry the server's CSRF token (form field
  ``csrf`` or header ``X-CSRF-Token``) and, when the browser sends ``Origin``, come from
  this very host.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlencode, urlsplit

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

__all__ = ["COOKIE", "TokenGate", "check_csrf", "new_csrf_token", "safe_next", "session_value"]

#: Name of the session cookie set after a successful login.
COOKIE = "conveyor_ui_session"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def session_value(token: str) -> str:
    """The cookie's value: derived from the token, so the cookie never holds it."""
    return hmac.new(token.encode(), b"conveyor-ui-session", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def safe_next(target: str | None) -> str:
    """A local path to go back to after logging in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def set_session(response: Response, token: str, request: Request) -> None:
    response.set_cookie(
        COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


class TokenGate(BaseHTTPMiddleware):
    """Every page behind `token` (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self.token = token
        self.session = session_value(token)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if path == "/login" or path.startswith("/static/"):
            return await call_next(request)
        if same(request.cookies.get(COOKIE), self.session):
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and same(given, self.token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            set_session(response, self.token, request)
            return response
        from conveyor.ui.pages import login_page  # the form, with status 401

        return login_page(request, failed=given is not None)


def check_csrf(request: Request, form_token: str | None, expected: str) -> str | None:
    """Why `request` must be refused, or None when it carries the CSRF token and comes
    from this host."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        return "cross-origin request refused"
    given = form_token or request.headers.get("x-csrf-token")
    if not same(given, expected):
        return "missing or wrong CSRF token: reload the page and try again"
    return None
