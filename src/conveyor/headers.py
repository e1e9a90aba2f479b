"""Message headers: str → str pairs that every backend carries exactly.

Rules (the strictest broker's, so a header that works on one backend works on all):

* a name is an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``), at most 255 characters;
* names starting with ``conveyor-`` or ``nats-`` (any case) are reserved: conveyor and
  JetStream set those themselves;
* a value is any text without control characters and without leading or trailing
  whitespace (NATS trims it), at most 64 KiB once encoded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from conveyor.errors import InvalidHeaderError

__all__ = ["RESERVED_PREFIXES", "Headers", "check_headers", "check_headers_list"]

Headers = Mapping[str, str]

#: Header-name prefixes users may not set (compared lowercased).
RESERVED_PREFIXES = ("conveyor-", "nats-")

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_VALUE_BYTES = 64 * 1024


def check_headers(headers: Headers | None, *, reserved: bool = False) -> dict[str, str]:
    """Validate `headers` and return them as a new dict (empty for None).

    Args:
        headers: The headers of one message.
        reserved: Allow reserved names (conveyor's own writes).

    Raises:
        InvalidHeaderError: naming the first offending header.
    """
    if not headers:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidHeaderError(f"headers must be a mapping of str to str, not {headers!r:.60}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if type(name) is not str or not _NAME.fullmatch(name):
            raise InvalidHeaderError(
                f"header name {name!r:.60} is not a token of 1-255 letters, digits or"
                " !#$%&'*+-.^_`|~"
            )
        if not reserved and name.lower().startswith(RESERVED_PREFIXES):
            raise InvalidHeaderError(
                f"header name {name!r} is reserved (names starting with"
                f" {' or '.join(RESERVED_PREFIXES)} belong to conveyor and the brokers)"
            )
        if type(value) is not str:
            raise InvalidHeaderError(
                f"header {name!r}: value {value!r:.60} is a {type(value).__name__}, not a str"
            )
        if _CONTROL.search(value) or value != value.strip():
            raise InvalidHeaderError(
                f"header {name!r}: value {value!r:.60} has control characters or leading or"
                " trailing whitespace, which some brokers do not carry"
            )
        if len(value) * 4 > _MAX_VALUE_BYTES and len(value.encode()) > _MAX_VALUE_BYTES:
            raise InvalidHeaderError(f"header {name!r}: value longer than 64 KiB")
        out[name] = value
    return out


def check_headers_list(
    headers: Sequence[Headers | None] | None, count: int
) -> list[dict[str, str]] | None:
    """Validate per-item headers of `publish_many` (None: no headers for any item).

    Raises:
        InvalidHeaderError: a bad header, or a list whose length is not `count`.
    """
    if headers is None:
        return None
    if isinstance(headers, Mapping) or len(headers) != count:
        raise InvalidHeaderError(
            f"publish_many headers must be a list with one mapping (or None) per item:"
            f" {count} item(s)"
        )
    checked = [check_headers(item) for item in headers]
    return checked if any(checked) else None
