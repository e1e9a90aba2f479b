"""Payload JSON: what conveyor publishes, validated, and the seed's field encoding.

Payloads are dicts of JSON values (str, int, float, bool, None, lists, nested dicts). Every
backend must round-trip them exactly, so `validate_payload` rejects what JSON cannot carry
(tuples, sets, bytes, NaN, non-string keys...) naming the offending key path.

`encode_fields` / `decode_fields` are the old Redis module's codec: string values stored as
they are, anything else as ``json:``-prefixed JSON. Strings that themselves start with
``json:`` are stored JSON-encoded so that they round-trip too.

JSON itself is written and read by orjson when it is installed (``pip install
'conveyor[orjson]'``), else by the standard library, with the same meaning either way:
what orjson handles differently (integers beyond 64 bits, lone surrogates, ``NaN`` and
``Infinity`` literals written by other producers) goes through the standard library, so
a payload decodes to the same value and an invalid one raises the same error whichever is
installed. `json_library` says which is in use; `use_json_library` picks one (tests run
both).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from json.scanner import make_scanner
from typing import Any, Literal

from conveyor.errors import ConfigurationError, DecodeError, UnserializablePayloadError

try:  # the conveyor[orjson] extra
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "JSON_PREFIX",
    "JsonLibrary",
    "decode_fields",
    "decode_json",
    "encode_fields",
    "encode_json",
    "encode_json_bytes",
    "json_library",
    "parse_json",
    "use_json_library",
    "validate_payload",
]

JSON_PREFIX = "json:"

JsonLibrary = Literal["orjson", "json"]

_std_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_std_loads = json.loads
#: orjson reads integers beyond 64 bits (20 digits or more) as floats: text with a run of
#: 20 digits (maybe such an integer, maybe a long fraction or a string) is parsed by the
#: standard library instead. Found in C: fewer than 20 digits in all is the common case
#: (one `bytes.translate` deleting them); else every digit becomes "0" and everything
#: else " ", and a run is looked for.
_DIGITS = b"0123456789"
_DIGIT_RUN = b"0" * 20
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))


def _std_dumps_bytes(value: Any) -> bytes:
    try:
        return _std_dumps(value).encode()
    except UnicodeEncodeError as exc:
        raise UnserializablePayloadError(
            f"payload holds text that is not valid Unicode (a lone surrogate): {exc}"
        ) from None


# The decoder's C scanner without json.loads' wrappers: ~4x less overhead per value,
# which matters with one JSON value per field. Same grammar as json.loads.
_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed types the class, not its use
)


def _std_parse(raw: str | bytes) -> Any:
    """``json.loads(raw)``, faster for the compact JSON conveyor writes."""
    if type(raw) is str:
        text = raw
    else:
        try:
            text = raw.decode()  # type: ignore[union-attr]
        except UnicodeDecodeError:  # maybe UTF-16/32: json.loads detects it, or raises
            return _std_loads(raw)
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # leading whitespace or a BOM, or not JSON: json.loads decides
        return _std_loads(raw)
    if end != len(text):  # trailing whitespace, or extra data
        return _std_loads(raw)
    return value


def _or_dumps(value: Any) -> str:
    try:
        return _orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: a big int, a lone surrogate
        return _std_dumps(value)


def _or_dumps_bytes(value: Any) -> bytes:
    try:
        return _orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a big int, a lone surrogate
        return _std_dumps_bytes(value)


def _or_parse(text: str | bytes) -> Any:
    if type(text) is str:
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: the standard library decides
            return _std_loads(text)
    else:
        data = text  # type: ignore[assignment]
    if len(data) - len(data.translate(None, _DIGITS)) >= 20 and _DIGIT_RUN in data.translate(
        _DIGITS_AS_ZEROS
    ):
        return _std_loads(text)
    try:
        return _orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError: NaN/Infinity, lone surrogates, not JSON
        return _std_loads(text)  # the same value, or the standard library's error


_dumps: Callable[[Any], str] = _std_dumps
_dumps_bytes: Callable[[Any], bytes] = _std_dumps_bytes
_loads: Callable[[str | bytes], Any] = _std_parse
_library: JsonLibrary = "json"


def use_json_library(library: JsonLibrary | None = None) -> JsonLibrary:
    """Write and read JSON with `library` (None: orjson when installed, else the standard
    library); returns the one now in use.

    Raises:
        ConfigurationError: ``"orjson"`` asked where it is not installed, or an unknown
            name.
    """
    global _dumps, _dumps_bytes, _loads, _library
    if library is None:
        library = "json" if _orjson is None else "orjson"
    if library == "orjson":
        if _orjson is None:
            raise ConfigurationError("orjson is not installed: pip install 'conveyor[orjson]'")
        _dumps, _dumps_bytes, _loads = _or_dumps, _or_dumps_bytes, _or_parse
    elif library == "json":
        _dumps, _dumps_bytes, _loads = _std_dumps, _std_dumps_bytes, _std_parse
    else:
        raise ConfigurationError(f"JSON library must be 'orjson' or 'json', got {library!r}")
    _library = library
    return library


def json_library() -> JsonLibrary:
    """The JSON library in use: ``"orjson"`` or ``"json"`` (the standard library)."""
    return _library


def parse_json(text: str | bytes) -> Any:
    """Parse one JSON value (the library in use; same result either way).

    Raises:
        ValueError: not JSON (`json.JSONDecodeError`), or bytes that are not UTF-8
            (`UnicodeDecodeError`).
    """
    return _loads(text)


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


def _valid_dict(value: dict[Any, Any]) -> bool:
    """Fast check, no paths: the common case of a valid payload costs little. (Exact
    types only: subclasses such as enums or named tuples are refused; ``x - x != 0.0``
    is true for NaN and the infinities only.)"""
    for key, item in value.items():
        if type(key) is not str:
            return False
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if item - item != 0.0:
                return False
        elif kind is dict:
            if not _valid_dict(item):
                return False
        elif kind is list:
            if not _valid_list(item):
                return False
        else:
            return False
    return True


def _valid_list(value: list[Any]) -> bool:
    for item in value:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if item - item != 0.0:
                return False
        elif kind is dict:
            if not _valid_dict(item):
                return False
        elif kind is list:
            if not _valid_list(item):
                return False
        else:
            return False
    return True


def validate_payload(data: object) -> dict[str, Any]:
    """Return `data` if it is a dict that round-trips through JSON exactly, else raise.

    Raises:
        UnserializablePayloadError: naming the key path of the first offending value.
    """
    if type(data) is not dict:
        raise UnserializablePayloadError(f"payload must be a dict, got {type(data).__name__}")
    if not _valid_dict(data):
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


def encode_json_bytes(data: dict[str, Any]) -> bytes:
    """`encode_json` as UTF-8 bytes.

    Raises:
        UnserializablePayloadError: as `encode_json`, or text that UTF-8 cannot carry
            (a lone surrogate).
    """
    validate_payload(data)
    return _dumps_bytes(data)


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


use_json_library()
