"""Map conveyor names onto JetStream stream names, subjects and consumer names.

Conveyor names are any non-empty text (``events:bot``, ``a.b-c_d``, ``заказы``). JetStream
stream and consumer names may not contain ``. * > / \\`` or whitespace, and a subject token
may not contain ``.``, ``*``, ``>`` or whitespace. `escape_name` keeps ASCII letters,
digits, ``-`` and ``_`` and writes every other character as ``~HH`` per UTF-8 byte
(``events:bot`` → ``events~3Abot``; ``~`` itself becomes ``~7E``). The encoding is
reversible (`unescape_name`) and injective: two different conveyor names never share a
JetStream name.
"""

from __future__ import annotations

import re
import string

from conveyor.errors import ConfigurationError

__all__ = ["MAX_NAME_LENGTH", "escape_name", "unescape_name", "validate_prefix"]

#: Longest escaped stream or consumer name accepted (JetStream stores them as file names).
MAX_NAME_LENGTH = 255

_SAFE = frozenset(string.ascii_letters + string.digits + "-_")
_ESCAPED = re.compile(r"(?:[A-Za-z0-9_-]|~[0-9A-F]{2})*")
_PREFIX_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def escape_name(name: str, *, kind: str = "name") -> str:
    """Return the JetStream-safe form of conveyor name `name` (see the module docstring).

    Raises:
        ConfigurationError: `name` is empty, not encodable as UTF-8, or too long once
            escaped.
    """
    if not name:
        raise ConfigurationError(f"{kind} must be a non-empty string")
    if all(ch in _SAFE for ch in name):
        escaped = name
    else:
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(f"{kind} {name!r} is not valid Unicode text") from None
        parts: list[str] = []
        for byte in encoded:
            char = chr(byte)
            parts.append(char if char in _SAFE else f"~{byte:02X}")
        escaped = "".join(parts)
    if len(escaped) > MAX_NAME_LENGTH:
        raise ConfigurationError(
            f"{kind} {name[:40]!r}... is {len(escaped)} characters once escaped for JetStream;"
            f" the limit is {MAX_NAME_LENGTH}"
        )
    return escaped


def unescape_name(escaped: str) -> str:
    """Invert `escape_name`.

    Raises:
        ValueError: `escaped` is not something `escape_name` produces.
    """
    if not escaped or _ESCAPED.fullmatch(escaped) is None:
        raise ValueError(f"not an escaped conveyor name: {escaped!r}")
    out = bytearray()
    index = 0
    while index < len(escaped):
        char = escaped[index]
        if char == "~":
            out.append(int(escaped[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(ord(char))
            index += 1
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"not an escaped conveyor name (bad UTF-8): {escaped!r}") from None
    if escape_name(text) != escaped:  # e.g. "~41" for "A": not canonical
        raise ValueError(f"not a canonical escaped conveyor name: {escaped!r}")
    return text


def validate_prefix(value: str, *, option: str, dotted: bool) -> str:
    """Check a stream-name prefix (``dotted=False``) or subject prefix (``dotted=True``).

    An empty stream prefix is allowed; a subject prefix needs at least one token.

    Raises:
        ConfigurationError: naming the option and the allowed characters.
    """
    if not value and not dotted:
        return value
    tokens = value.split(".") if dotted else [value]
    if not all(_PREFIX_TOKEN.fullmatch(token) for token in tokens):
        shape = "dot-separated tokens of " if dotted else ""
        raise ConfigurationError(
            f"nats:// option {option}={value!r}: expected {shape}letters, digits, '-' or '_'"
        )
    return value
