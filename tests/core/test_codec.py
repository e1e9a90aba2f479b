"""Payload validation and the seed's json:-prefixed field codec."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.codec import decode_fields, decode_json, encode_fields, encode_json, validate_payload
from conveyor.errors import DecodeError, UnserializablePayloadError


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
