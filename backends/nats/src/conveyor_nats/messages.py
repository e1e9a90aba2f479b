"""JetStream messages as conveyor `Message`s, and which of their headers users see.

Headers are native NATS headers. `Message.headers` holds a message's headers minus the
names starting with ``Nats-`` (any case): JetStream's own (``Nats-Msg-Id``, which
conveyor sets on dead letters, ``Nats-Expected-*``, ``Nats-Stream``/``Nats-Sequence`` on
republished or sourced messages...), which conveyor refuses on publish
(`conveyor.headers`). Status lines (``NATS/1.0 404``) only ever arrive on control
messages, which the puller drops; a user header that happens to be named ``Status`` is
kept.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from nats.aio.msg import Msg
from nats.js import api

from conveyor.codec import decode_json
from conveyor.errors import DecodeError
from conveyor.message import Message

__all__ = [
    "delivery",
    "header_bytes",
    "parse_header_block",
    "peeked",
    "to_message",
    "user_headers",
]

_RESERVED = "nats-"


def header_bytes(headers: Mapping[str, str] | None) -> int:
    """Bytes a header block takes on the wire (``NATS/1.0`` line, one line per header,
    the final blank line); they count against the server's ``max_payload``."""
    if not headers:
        return 0
    return 12 + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())


def user_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` without the names JetStream reserves (``Nats-*``); a new dict."""
    return {k: v for k, v in headers.items() if k[:5].lower() != _RESERVED}


def delivery(msg: Msg) -> tuple[str, int, float]:
    """Stream sequence (as the message id), delivery count and publish time of a
    delivered message, from its ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``
    is read directly: nats-py's ``msg.metadata`` builds frozen dataclasses and a datetime
    per message, a tenth of a busy consumer's time. Other forms (the v2 subject with a
    domain and account) go through nats-py.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK" and tokens[5].isdigit():
        return tokens[5], int(tokens[4]), int(tokens[7]) / 1e9
    meta = msg.metadata
    return str(meta.sequence.stream), meta.num_delivered, meta.timestamp.timestamp()


def to_message(stream: str, msg: Msg) -> Message:
    """A delivered stream message (with its delivery metadata) as a `Message`."""
    seq, delivered, published_at = delivery(msg)
    try:
        data, error = decode_json(msg.data), None
    except DecodeError as exc:
        data, error = {}, str(exc)
    return Message(
        id=seq,
        stream=stream,
        data=data,
        delivery_count=delivered,
        published_at=published_at,
        decode_error=error,
        raw=msg.data if error is not None else None,
        handle=msg,
        headers=user_headers(msg.headers) if msg.headers else {},
    )


def parse_header_block(block: bytes) -> dict[str, str]:
    """Parse a raw NATS header block (``NATS/1.0\\r\\nName: value\\r\\n...``) the way
    nats-py parses a delivered message's (UTF-8 values, names without whitespace)."""
    out: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:  # the first line is NATS/1.0 [status]
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and not any(c.isspace() for c in key):
            out[key] = value.strip().decode("utf-8", "replace")
    return out


def peeked(stream: str, raw: api.RawStreamMsg) -> Message:
    """A message read with ``STREAM.MSG.GET`` (outside any group) as a `Message`.

    Headers come from the raw block: nats-py's ``get_msg`` runs them through an e-mail
    parser that mangles non-ASCII values.
    """
    body = raw.data or b""
    try:
        data, error = decode_json(body), None
    except DecodeError as exc:
        data, error = {}, str(exc)
    headers: dict[str, str] = {}
    if raw.hdrs:
        try:
            headers = user_headers(parse_header_block(base64.b64decode(raw.hdrs)))
        except (binascii.Error, ValueError):
            headers = {}
    return Message(
        id=str(raw.seq),
        stream=stream,
        data=data,
        delivery_count=0,
        published_at=raw.time.timestamp() if raw.time is not None else None,
        decode_error=error,
        raw=body if error is not None else None,
        headers=headers,
    )
