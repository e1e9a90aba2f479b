"""Stream entries <-> payloads, in both formats this backend reads.

* ``json`` (what conveyor writes by default): the whole payload as JSON in a single
  `PAYLOAD_FIELD` field. conveyor also uses it for payloads ``fields`` cannot express
  (``{}``: XADD needs a field; a payload whose only key is `PAYLOAD_FIELD`; a payload
  with a `HEADERS_FIELD` key).
* ``fields`` (what the old module and most producers write, and conveyor with
  ``payload_format=fields``): one field per payload key; plain strings as they are,
  anything else as ``json:``-prefixed JSON (`conveyor.codec.encode_fields`).

Headers, when a message has any, are a JSON object in `HEADERS_FIELD`, written as the
entry's FIRST field (so reading looks at one field to know whether there are any).
Reading accepts both formats, whoever wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor.codec import JSON_PREFIX, encode_fields, encode_json, encode_json_bytes, parse_json
from conveyor.errors import DecodeError, UnserializablePayloadError
from conveyor.message import Message

__all__ = [
    "HEADERS_FIELD",
    "PAYLOAD_FIELD",
    "decode_flat",
    "decode_headers",
    "decode_mapping",
    "encode_entry",
    "encode_flat",
    "to_messages",
]

#: The field holding a whole JSON payload in the ``json`` format.
PAYLOAD_FIELD = "conveyor.payload"
#: The field holding a message's headers as a JSON object (always the first field).
HEADERS_FIELD = "conveyor.headers"

_dump_headers = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_PREFIX_LEN = len(JSON_PREFIX)
#: ``json.loads``, by orjson where installed (`conveyor.codec.parse_json`).
_parse = parse_json


def encode_flat(
    data: dict[str, Any], payload_format: str = "fields", headers: dict[str, str] | None = None
) -> list[str]:
    """Encode a payload (and its `headers`, already checked) as a flat
    ``[field, value, ...]`` list for ``XADD``; headers, if any, come first.

    Raises:
        UnserializablePayloadError: the payload would not survive a JSON round trip.
    """
    flat = [HEADERS_FIELD, _dump_headers(headers)] if headers else []
    if (
        payload_format == "json"
        or not data
        or HEADERS_FIELD in data
        or (len(data) == 1 and PAYLOAD_FIELD in data)
    ):
        flat.append(PAYLOAD_FIELD)
        flat.append(encode_json(data))
        return flat
    for key, value in encode_fields(data).items():
        flat.append(key)
        flat.append(value)
    return flat


_PAYLOAD_BYTES = PAYLOAD_FIELD.encode()


def encode_entry(
    data: dict[str, Any], payload_format: str = "json", headers: dict[str, str] | None = None
) -> list[bytes]:
    """`encode_flat`, as the bytes sent (UTF-8; lone surrogates from undecodable replies
    are written back as the bytes they stand for), each part encoded once.

    Raises:
        UnserializablePayloadError: the payload would not survive a JSON round trip, or
            holds text that is not valid Unicode.
    """
    try:
        if payload_format == "json" and not headers:
            try:
                return [_PAYLOAD_BYTES, encode_json_bytes(data)]
            except UnserializablePayloadError:  # maybe text from an undecodable reply
                return [_PAYLOAD_BYTES, encode_json(data).encode("utf-8", "surrogateescape")]
        return [
            part.encode("utf-8", "surrogateescape")
            for part in encode_flat(data, payload_format, headers)
        ]
    except UnicodeEncodeError as exc:
        raise UnserializablePayloadError(f"payload holds text that is not Unicode: {exc}") from None


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


def decode_headers(text: str) -> dict[str, str]:
    """Decode the value of `HEADERS_FIELD`.

    Raises:
        DecodeError: not a JSON object of strings, or text that was not UTF-8.
    """
    if not text.isascii():
        _check_text(text, f"field {HEADERS_FIELD!r}")
    try:
        value = _parse(text)
    except ValueError as exc:
        raise DecodeError(f"{HEADERS_FIELD} is not valid JSON: {exc}") from None
    if type(value) is not dict or any(type(v) is not str for v in value.values()):
        raise DecodeError(f"{HEADERS_FIELD} is not a JSON object of strings")
    return value


def to_messages(
    stream: str, entries: list[Any], counts: dict[str, int] | None
) -> tuple[list[Message], list[str]]:
    """Messages from raw ``[id, [field, value, ...]]`` entries, and ids of deleted ones.

    `counts` maps ids to delivery counts (ids missing from it count 2: re-deliveries);
    None means first deliveries, except for ``XREADGROUP ... CLAIM`` entries
    (``[id, fields, idle, previous count]``). Undecodable entries come back with
    `decode_error` set and the fields in `raw`.
    """
    out: list[Message] = []
    gone: list[str] = []
    for entry in entries:
        if not entry:
            continue
        entry_id, flat = entry[0], entry[1]
        if flat is None:
            gone.append(entry_id)
            continue
        if counts is not None:
            count = counts.get(entry_id, 2)
        elif len(entry) > 3:  # XREADGROUP ... CLAIM: [id, fields, idle, previous count]
            count = int(entry[3]) + 1
        else:
            count = 1
        at = int(entry_id.partition("-")[0]) / 1000  # the id's milliseconds part
        try:
            if flat[0] != HEADERS_FIELD:
                out.append(Message(entry_id, stream, decode_flat(flat), count, at))
            else:
                headers = decode_headers(flat[1])
                data = decode_flat(flat[2:])
                out.append(Message(entry_id, stream, data, count, at, headers=headers))
        except DecodeError as exc:
            out.append(_undecodable(entry_id, stream, flat, count, at, exc))
    return out, gone


def _undecodable(
    entry_id: str, stream: str, flat: list[str], count: int, at: float, exc: DecodeError
) -> Message:
    """The message of an entry that cannot be decoded: `raw` holds the payload field's
    bytes when the payload is one field, else all its fields; headers that decode are kept
    (the dead letter carries them)."""
    body = flat[2:] if flat[0] == HEADERS_FIELD else flat
    raw: object
    if len(body) == 2 and body[0] == PAYLOAD_FIELD:
        raw = body[1].encode("utf-8", "surrogateescape")  # replies decode with surrogateescape
    else:
        it = iter(flat)
        raw = dict(zip(it, it, strict=False))
    message = Message(entry_id, stream, {}, count, at, str(exc), raw)
    if flat[0] == HEADERS_FIELD:
        try:
            message.headers = decode_headers(flat[1])
        except DecodeError:
            pass
    return message


def decode_mapping(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> dict[str, Any]:
    """Decode an entry given as a field mapping (str or bytes, as redis-py returns them);
    a leading `HEADERS_FIELD` is checked and left out.

    Raises:
        DecodeError: as `decode_flat` and `decode_headers`, or a field that is not UTF-8.
    """
    flat: list[str] = []
    try:
        for key, value in fields.items():
            flat.append(key.decode() if isinstance(key, bytes) else key)
            flat.append(value.decode() if isinstance(value, bytes) else value)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"entry is not valid UTF-8: {exc}") from None
    if flat and flat[0] == HEADERS_FIELD:
        decode_headers(flat[1])
        return decode_flat(flat[2:])
    return decode_flat(flat)
