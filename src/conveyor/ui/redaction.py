"""Secrets the UI must never show: the URL's password and secret options, the token."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from conveyor.options import is_secret_option

__all__ = ["Scrubber"]


class Scrubber:
    """Replaces every known secret in a text by ``***``."""

    def __init__(self, url: str, token: str | None = None) -> None:
        found: set[str] = set()
        base, _, query = url.partition("?")
        netloc = base.partition("://")[2].partition("/")[0]
        if "@" in netloc:
            userinfo = netloc.rpartition("@")[0]
            user, has_password, password = userinfo.partition(":")
            found.add(password if has_password else user)
        for name, value in parse_qsl(query, keep_blank_values=True):
            if is_secret_option(name):
                found.add(value)
        if token:
            found.add(token)
        try:
            if urlsplit(url).password:
                found.add(str(urlsplit(url).password))
        except ValueError:  # a URL urllib cannot split: the pieces above still count
            pass
        found |= {unquote(s) for s in found}
        # longest first, so a secret containing another is replaced whole
        self.secrets = sorted((s for s in found if s), key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for secret in self.secrets:
            out = out.replace(secret, "***")
        return out
