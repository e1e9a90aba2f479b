"""Find backends by URL scheme through the ``conveyor.backends`` entry-point group.

Entry points are read as names; only the backend asked for is imported. An entry point
names an async factory ``open_backend(url, options) -> StreamBackend`` where `url` has no
query string and `options` holds the query options merged with `connect()`'s keywords.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any
from urllib.parse import urlsplit

from conveyor.base import BaseBackend
from conveyor.errors import BackendNotInstalledError, ConfigurationError, UnknownSchemeError
from conveyor.middleware import check_middleware
from conveyor.opening import Opening
from conveyor.options import redact_url, split_options
from conveyor.protocol import StreamBackend

__all__ = ["ENTRY_POINT_GROUP", "KNOWN_SCHEMES", "available_backends", "check_scheme", "connect"]

log = logging.getLogger("conveyor.registry")

ENTRY_POINT_GROUP = "conveyor.backends"

#: Schemes of the project's own backends and the distribution that provides each.
KNOWN_SCHEMES: Mapping[str, str] = {
    "memory": "conveyor-memory",
    "redis": "conveyor-redis",
    "rediss": "conveyor-redis",
    "redis+cluster": "conveyor-redis",
    "rediss+cluster": "conveyor-redis",
    "redis+sentinel": "conveyor-redis",
    "rediss+sentinel": "conveyor-redis",
    "nats": "conveyor-nats",
    "tls": "conveyor-nats",
    "kafka": "conveyor-kafka",
    "sqlite": "conveyor-sqlite",
}

Factory = Callable[[str, dict[str, Any]], Awaitable[StreamBackend]]


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> dict[str, str]:
    """Installed schemes mapped to ``"distribution (module:factory)"``, importing nothing."""
    out: dict[str, str] = {}
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist.name if ep.dist is not None else "?"
        out[name] = f"{dist} ({ep.value})"
    return out


def _scheme_of(url: str) -> str:
    if "://" not in url:
        raise ConfigurationError(
            f"not a backend URL: {redact_url(url)!r} (expected scheme://..., e.g. memory://)"
        )
    try:
        return urlsplit(url).scheme.lower()
    except ValueError as exc:  # e.g. "nats://[::1": an unclosed IPv6 bracket
        raise ConfigurationError(f"cannot parse the URL {redact_url(url)!r}: {exc}") from None


def _unknown(scheme: str, eps: Mapping[str, EntryPoint]) -> UnknownSchemeError:
    installed = ", ".join(f"{s}://" for s in sorted(eps)) or "none"
    return UnknownSchemeError(
        f"no conveyor backend handles {scheme}:// URLs; installed schemes: {installed}"
    )


def check_scheme(url: str) -> str:
    """The scheme of `url` when a backend is installed for it or it is one of
    `KNOWN_SCHEMES` (installed or not), importing nothing: for tools that describe a URL
    without connecting (``conveyor asyncapi``).

    Raises:
        ConfigurationError: `url` has no ``scheme://`` or does not parse.
        UnknownSchemeError: neither installed nor known; the message names the installed
            schemes, as `connect` does.
    """
    scheme = _scheme_of(url)
    eps = _entry_points()
    if scheme not in eps and scheme not in KNOWN_SCHEMES:
        raise _unknown(scheme, eps)
    return scheme


def _load_factory(scheme: str) -> Factory:
    eps = _entry_points()
    ep = eps.get(scheme)
    if ep is None:
        installed = ", ".join(f"{s}://" for s in sorted(eps)) or "none"
        if scheme in KNOWN_SCHEMES:
            raise BackendNotInstalledError(
                f"the {scheme}:// backend is not installed: pip install"
                f" 'conveyor[{KNOWN_SCHEMES[scheme].removeprefix('conveyor-')}]'"
                f" (the {KNOWN_SCHEMES[scheme]} distribution; installed schemes: {installed})"
            )
        raise _unknown(scheme, eps)
    factory: Factory = ep.load()
    return factory


async def _open(url: str, options: dict[str, Any]) -> StreamBackend:
    scheme = _scheme_of(url)
    factory = _load_factory(scheme)
    base, query = split_options(url)
    clash = sorted(set(query) & set(options))
    if clash:
        raise ConfigurationError(
            f"option(s) {', '.join(clash)} given both in the URL and as keywords"
        )
    merged: dict[str, Any] = {**query, **options}
    log.debug("opening %s backend for %s", scheme, redact_url(url))
    return await factory(base, merged)


def connect(url: str, **options: Any) -> Opening[StreamBackend]:
    """Open the backend for `url`.

    ``backend = await connect(url)`` or ``async with connect(url) as backend:``.
    Query-string options and keyword `options` become backend options, but
    ``middleware=[...]``: `conveyor.Middleware` run around every publish through the
    backend (see `conveyor.middleware`).

    Raises:
        UnknownSchemeError: no installed backend handles the scheme.
        BackendNotInstalledError: the scheme is known but its package is missing.
        ConfigurationError: an unknown or invalid option.
        TypeError: a middleware is not a `conveyor.Middleware`.
    """
    chain = check_middleware(options.pop("middleware", ()))

    async def open_with_middleware() -> StreamBackend:
        backend = await _open(url, options)
        if not chain:
            return backend
        if not isinstance(backend, BaseBackend):
            await backend.aclose()
            raise ConfigurationError(f"{backend!r} takes no middleware (not a BaseBackend)")
        for item in chain:
            backend.add_middleware(item)
        return backend

    return Opening(open_with_middleware, f"conveyor.connect {redact_url(url)!r}")
