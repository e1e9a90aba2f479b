"""Stream entries <-> payloads, in both formats this backend reads.

* ``fields`` (what conveyor writes by default, and what the old module and most producers
  write): one field per payload key; plain strings as they are, anything else as
  ``json:``-prefixed JSON (`conveyor.codec.encode_fields`).
* ``json``: the whole payload as JSON in a single `PAYLOAD_FIELD` field. conveyor also
  uses it for payloads ``fields`` cannot express (``{}``: XADD needs a field; a payload
  whose only key is `PAYLOAD_FIELD`).

Reading accepts both, whoever wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from json.scanner import make_scanner
from typing import Any

from conveyor.codec import JSON_PREFIX, encode_fields, encode_json
from conveyor.errors import DecodeError

__all__ = ["PAYLOAD_FIELD", "decode_flat", "decode_mapping", "encode_flat"]

#: The field holding a whole JSON payload in the ``json`` format.
PAYLOAD_FIELD = "conveyor.payload"

_loads = json.loads
# The decoder's C scanner without json.loads' wrappers: ~4x less overhead per value,
# which matters with one JSON value per field. Same grammar as json.loads.
_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed types the class, not its use
)
_PREFIX_LEN = len(JSON_PREFIX)


def _parse(text: str) -> Any:
    """``json.loads(text)``, faster for the compact JSON conveyor writes.

    Raises:
        ValueError: not JSON.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: let json.loads decide
        return _loads(text)
    if end != len(text):  # trailing whitespace, or extra data
        return _loads(text)
    return value


def encode_flat(data: dict[str, Any], payload_format: str = "fields") -> list[str]:
    """Encode a payload as a flat ``[field, value, ...]`` list for ``XADD``.

    Raises:
        UnserializablePayloadError: the payload would not survive a JSON round trip.
    """
    if payload_format == "json" or not data or (len(data) == 1 and PAYLOAD_FIELD in data):
        return [PAYLOAD_FIELD, encode_json(data)]
    flat: list[str] = []
    for key, value in encode_fields(data).items():
        flat.append(key)
        flat.append(value)
    return flat


def _check_text(text: str, what: str) -> None:
    # Replies are decoded with surrogateescape: lone surrogates mark bytes that were not
    # UTF-8. Only non-ASCII text needs the (rare) check.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise DecodeError(f"{what} is not valid UTF-8") from None


def decode_flat(flat: list[str]) -> dict[str, Any]:
    """Decode an entry's ``[field, value, ...]`` list (str, as the backend reads them).

    Raises:
        DecodeError: invalid ``json:`` value or JSON payload, or text that was not UTF-8.
    """
    if len(flat) == 2 and flat[0] == PAYLOAD_FIELD:
        text = flat[1]
        if not text.isascii():
            _check_text(text, "payload")
        try:
            value = _parse(text)
        except ValueError as exc:
            raise DecodeError(f"payload is not valid JSON: {exc}") from None
        if type(value) is not dict:
            raise DecodeError(f"payload is a JSON {type(value).__name__}, expected an object")
        return value
    data: dict[str, Any] = {}
    it = iter(flat)
    for key, value in zip(it, it, strict=False):
        if not key.isascii():
            _check_text(key, "a field name")
        if value.startswith(JSON_PREFIX):
            try:
                data[key] = _parse(value[_PREFIX_LEN:])
            except ValueError as exc:
                raise DecodeError(f"field {key!r}: invalid json: value ({exc})") from None
        else:
            if not value.isascii():
                _check_text(value, f"field {key!r}")
            data[key] = value
    return data


def decode_mapping(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> dict[str, Any]:
    """Decode an entry given as a field mapping (str or bytes, as redis-py returns them).

    Raises:
        DecodeError: as `decode_flat`, or a field that is not UTF-8.
    """
    flat: list[str] = []
    try:
        for key, value in fields.items():
            flat.append(key.decode() if isinstance(key, bytes) else key)
            flat.append(value.decode() if isinstance(value, bytes) else value)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"entry is not valid UTF-8: {exc}") from None
    return decode_flat(flat)
