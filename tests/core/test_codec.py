"""Payload validation and the seed's json:-prefixed field codec, each test on both JSON
libraries (the standard library, and orjson where installed: the conveyor[orjson] extra),
which must mean the same."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import codec
from conveyor.codec import (
    JsonLibrary,
    decode_fields,
    decode_json,
    encode_fields,
    encode_json,
    encode_json_bytes,
    parse_json,
    use_json_library,
    validate_payload,
)
from conveyor.errors import ConfigurationError, DecodeError, UnserializablePayloadError


@pytest.fixture(autouse=True, params=["json", "orjson"])
def library(request: pytest.FixtureRequest) -> Iterator[JsonLibrary]:
    """Every test of this module on each JSON library (orjson is a dev dependency)."""
    before = codec.json_library()
    chosen: JsonLibrary = request.param
    assert use_json_library(chosen) == chosen
    yield chosen
    use_json_library(before)


#: Payloads whose JSON the two libraries might write differently: each must read back
#: equal (and of the same types) whichever library wrote and whichever reads.
TRICKY: list[dict[str, Any]] = [
    {"big": 10**30, "neg": -(10**25), "u64": 2**64 - 1, "i64": -(2**63)},
    {"floats": [0.1, 1e-7, 1.5e16, 1e300, -0.0, 5e-324, 2.0**63, 1e22]},
    {"text": 'é 🚀 \u2028 \x00 \x1f " \\ /', "json:": "json:x"},
    {"nested": [[[]], {}, [{"a": [None, True, False]}]], "": ""},
]


@pytest.mark.parametrize("payload", TRICKY)
def test_both_libraries_read_and_write_the_same_values(
    payload: dict[str, Any], library: JsonLibrary
) -> None:
    written = {name: _written_by(name, payload) for name in ("json", "orjson")}
    use_json_library(library)
    for text in written.values():
        for decoded in (decode_json(text), decode_json(text.encode())):
            assert decoded == payload
            assert _types(decoded) == _types(payload)
    assert encode_json_bytes(payload) == encode_json(payload).encode()
    assert json.loads(encode_json(payload)) == payload  # plain JSON for any reader


def _written_by(name: JsonLibrary, payload: dict[str, Any]) -> str:
    use_json_library(name)
    return encode_json(payload)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def test_what_other_producers_write_reads_the_same() -> None:
    # literals the standard library accepts and orjson does not (or reads differently)
    nan = decode_json('{"a": NaN, "b": Infinity, "c": -Infinity}')
    assert math.isnan(nan["a"])
    assert (nan["b"], nan["c"]) == (math.inf, -math.inf)
    big = decode_json('{"x": 123456789012345678901234567890}')["x"]
    assert (type(big), big) == (int, 123456789012345678901234567890)
    assert decode_json('{"s": "\\ud800"}') == {"s": "\ud800"}  # a lone surrogate, escaped
    assert decode_json(' {"a": 1} ') == {"a": 1}
    assert parse_json("[1e400]") == [math.inf]
    for broken in ('{"a": }', "", "[1] [2]", b"\xff"):
        with pytest.raises(DecodeError):
            decode_json(broken)


def test_unicode_that_utf8_cannot_carry_is_refused_as_bytes() -> None:
    with pytest.raises(UnserializablePayloadError, match="surrogate"):
        encode_json_bytes({"s": "\ud800"})


def test_an_unknown_library_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="orjson"):
        use_json_library("simplejson")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "bot.message", "text": "héllo 🚀"},
        {"n": 1, "f": 2.5, "b": True, "none": None, "list": [1, "a", {"x": []}]},
        {"looks": "json:{}", "also": "json:"},
        {"nested": {"deep": {"deeper": [None, False]}}},
    ],
)
def test_field_codec_round_trips(payload: dict[str, Any]) -> None:
    fields = encode_fields(payload)
    assert all(isinstance(v, str) for v in fields.values())
    assert decode_fields(fields) == payload
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    assert decode_fields(raw) == payload


def test_field_codec_reads_the_old_module_and_foreign_producers() -> None:
    old = {b"type": b"user.created", b"user": b'json:{"id": 5, "tags": ["a"]}', b"plain": b"42"}
    assert decode_fields(old) == {
        "type": "user.created",
        "user": {"id": 5, "tags": ["a"]},
        "plain": "42",
    }


def test_field_codec_reports_broken_json_values() -> None:
    with pytest.raises(DecodeError, match="'user'"):
        decode_fields({"user": "json:{broken"})


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"a": {"b": (1, 2)}}, "['a']['b']"),
        ({"a": [1, {1, 2}]}, "['a'][1]"),
        ({"a": float("inf")}, "['a']"),
        ({"a": {3: "x"}}, "key 3"),
        ({"a": b"bytes"}, "['a']"),
    ],
)
def test_validation_names_the_offending_key(payload: dict[str, Any], path: str) -> None:
    with pytest.raises(UnserializablePayloadError) as caught:
        validate_payload(payload)
    assert path in str(caught.value)
    with pytest.raises(UnserializablePayloadError):
        encode_json(payload)


def test_payload_must_be_a_dict() -> None:
    with pytest.raises(UnserializablePayloadError, match="must be a dict"):
        validate_payload([1, 2])


def test_decode_json_errors() -> None:
    assert decode_json('{"a": 1}') == {"a": 1}
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_json("{nope")
    with pytest.raises(DecodeError, match="expected an object"):
        decode_json("[1]")
