"""Backend settings from URLs: one frozen dataclass per backend, built by `from_url()`.

`parse_url_options` turns a URL's query string (plus keyword overrides) into validated
constructor arguments for a settings dataclass, rejecting unknown options with the list of
valid ones. Field types drive conversion: bool, int, float, str and their optionals.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from conveyor.errors import ConfigurationError

__all__ = [
    "is_secret_option",
    "option_names",
    "parse_url_options",
    "redact_url",
    "split_options",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


#: Last ``_``-separated word of an option name whose value is a secret.
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "token", "secret", "key", "nkey", "seed"})


def is_secret_option(name: str) -> bool:
    """True for option names whose values must never be shown (``sasl_*``, ``*_password``,
    ``token``, ``*_secret``, ``*_key``...)."""
    low = name.lower()
    return low.startswith("sasl_") or low.rsplit("_", 1)[-1] in _SECRET_WORDS


def redact_url(url: str) -> str:
    """Return `url` safe to show: the password (or a lone token user) and the values of
    secret query options (`is_secret_option`) replaced by ``***``."""
    base, sep, query = url.partition("?")
    scheme, colon, rest = base.partition("://")
    if colon:
        netloc, slash, path = rest.partition("/")
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            safe_user = f"{user}:***" if has_password else "***"
            base = f"{scheme}://{safe_user}@{hosts}{slash}{path}"
    if not sep:
        return base
    pairs = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        pairs.append(f"{name}=***" if eq and is_secret_option(unquote(name)) else part)
    return f"{base}?{'&'.join(pairs)}"


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """Split a URL into its base (no query string, as written) and its query options.

    The base keeps its ``//`` even with an empty host (``memory://?maxlen=5`` gives
    ``memory://``), which re-assembling the parsed parts would drop.
    """
    base, _, rest = url.partition("?")
    query = rest.partition("#")[0]
    base = base.partition("#")[0]
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    options: dict[str, str] = {}
    for key, value in pairs:
        if key in options:
            raise ConfigurationError(f"option {key!r} given twice in the URL")
        options[key] = value
    return base, options


def option_names(settings_cls: type[Any], exclude: Iterable[str] = ()) -> list[str]:
    """The option names a settings dataclass accepts."""
    skip = set(exclude)
    return sorted(f.name for f in dataclasses.fields(settings_cls) if f.name not in skip)


def _convert(scheme: str, name: str, raw: object, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(types, "UnionType", None)) and args:
        blank = raw is None or (isinstance(raw, str) and raw.lower() in {"", "none"})
        if blank and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(scheme, name, raw, inner[0])
    if origin is typing.Literal:
        if raw not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigurationError(
                f"{scheme}:// option {name}={raw!r}: expected one of {choices}"
            )
        return raw
    if not isinstance(raw, str):
        if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if hint in (bool, int, float, str) and not isinstance(raw, hint):
            raise ConfigurationError(f"{scheme}:// option {name}={raw!r}: expected {hint.__name__}")
        return raw
    try:
        if hint is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{scheme}:// option {name}={raw!r}: expected {hint.__name__}"
        ) from None
    return raw


def parse_url_options(
    scheme: str,
    settings_cls: type[Any],
    options: Mapping[str, object],
    *,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """Validate and convert `options` into keyword arguments for `settings_cls`.

    Raises:
        ConfigurationError: an unknown option (the message lists valid ones) or a value of
            the wrong type.
    """
    valid = option_names(settings_cls, exclude)
    hints = typing.get_type_hints(settings_cls)
    out: dict[str, Any] = {}
    for name, raw in options.items():
        if name not in valid:
            raise ConfigurationError(
                f"unknown option {name!r} for {scheme}:// URLs; valid options: {', '.join(valid)}"
            )
        out[name] = _convert(scheme, name, raw, hints[name])
    return out
