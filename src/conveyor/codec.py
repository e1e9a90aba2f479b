"""Payload codec: JSON-compatible dicts, validated, and the seed's field encoding.

Payloads are dicts of JSON values (str, int, float, bool, None, lists, nested dicts). Every
backend must round-trip them exactly, so `validate_payload` rejects what JSON cannot carry
(tuples, sets, bytes, NaN, non-string keys...) naming the offending key path.

`encode_fields` / `decode_fields` are the old Redis module's codec: string values stored as
they are, anything else as ``json:``-prefixed JSON. Strings that themselves start with
``json:`` are stored JSON-encoded so that they round-trip too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from conveyor.errors import DecodeError, UnserializablePayloadError

__all__ = [
    "JSON_PREFIX",
    "decode_fields",
    "decode_json",
    "encode_fields",
    "encode_json",
    "validate_payload",
]

JSON_PREFIX = "json:"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads


def _check(value: object, path: str) -> None:
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise UnserializablePayloadError(f"payload{path}: {value!r} is not valid JSON")
        return
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise UnserializablePayloadError(
                    f"payload{path}: key {key!r} is a {type(key).__name__}, keys must be str"
                )
            _check(item, f"{path}[{key!r}]")
        return
    if kind is list:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            _check(item, f"{path}[{index}]")
        return
    raise UnserializablePayloadError(
        f"payload{path}: {type(value).__name__} value {value!r:.80} does not survive a JSON"
        " round trip (use str, int, float, bool, None, list or dict)"
    )


_SCALARS = frozenset({str, int, bool, type(None)})


def _valid(value: object) -> bool:
    """Fast check, no paths: the common case of a valid payload costs little."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return False
            kind = type(item)
            if kind is str or kind is int:
                continue
            if not _valid(item):
                return False
        return True
    if kind is list:
        return all(_valid(item) for item in value)  # type: ignore[attr-defined]
    return False


def validate_payload(data: object) -> dict[str, Any]:
    """Return `data` if it is a dict that round-trips through JSON exactly, else raise.

    Raises:
        UnserializablePayloadError: naming the key path of the first offending value.
    """
    if type(data) is not dict:
        raise UnserializablePayloadError(f"payload must be a dict, got {type(data).__name__}")
    if not _valid(data):
        _check(data, "")  # raises, naming the key path
    return data


def encode_json(data: dict[str, Any]) -> str:
    """Validate and encode a payload as compact JSON text.

    Raises:
        UnserializablePayloadError: naming the key path of a value JSON would not
            round-trip (tuples, sets, bytes, NaN, non-str keys...).
    """
    validate_payload(data)
    return _dumps(data)


def decode_json(text: str | bytes) -> dict[str, Any]:
    """Decode JSON text into a payload dict.

    Raises:
        DecodeError: the text is not JSON or not a JSON object.
    """
    try:
        value = _loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"payload is not valid JSON: {exc}") from None
    if type(value) is not dict:
        raise DecodeError(f"payload is a JSON {type(value).__name__}, expected an object")
    return value


def encode_fields(data: dict[str, Any]) -> dict[str, str]:
    """Encode a payload as flat string fields (the seed codec)."""
    validate_payload(data)
    out: dict[str, str] = {}
    for key, value in data.items():
        if type(value) is str and not value.startswith(JSON_PREFIX):
            out[key] = value
        else:
            out[key] = JSON_PREFIX + _dumps(value)
    return out


def _text(value: str | bytes) -> str:
    if type(value) is bytes:
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"field is not UTF-8: {exc}") from None
    return value  # type: ignore[return-value]


def decode_fields(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> dict[str, Any]:
    """Decode flat string fields written by `encode_fields` or by any other producer.

    Plain strings stay strings; ``json:``-prefixed values are parsed.

    Raises:
        DecodeError: a ``json:`` value is not valid JSON, or a field is not UTF-8.
    """
    out: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key = _text(raw_key)
        value = _text(raw_value)
        if value.startswith(JSON_PREFIX):
            try:
                out[key] = _loads(value[len(JSON_PREFIX) :])
            except ValueError as exc:
                raise DecodeError(f"field {key!r}: invalid json: value ({exc})") from None
        else:
            out[key] = value
    return out
