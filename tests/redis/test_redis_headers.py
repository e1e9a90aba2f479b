"""Headers on Redis: one ``conveyor.headers`` JSON field, first in the entry, carried
through every way a message can come back."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from conveyor.options import split_options
from conveyor_redis import RedisBackend, open_backend
from conveyor_redis.entries import HEADERS_FIELD, PAYLOAD_FIELD

HEADERS = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "x": "ü"}


async def raw_fields(raw: Redis, backend: RedisBackend, stream: str) -> list[list[str]]:
    """The field names and values of every entry of `stream`, in stored order."""
    rows = await raw.xrange(backend.settings.key(stream)) or []
    return [[str(part) for pair in (fields or {}).items() for part in pair] for _, fields in rows]


async def test_headers_are_the_first_field_and_absent_without_headers(
    redis_url: str, backend: RedisBackend, raw: Redis, stream: str
) -> None:
    base, query = split_options(redis_url)
    fields_backend = await open_backend(
        base, {**query, "key_prefix": backend.settings.key_prefix, "payload_format": "fields"}
    )
    try:
        await fields_backend.publish(stream, {"type": "a", "n": 1}, headers=HEADERS)
        await fields_backend.publish(stream, {"type": "b", "n": 2})
        await fields_backend.publish_many(stream, [{"n": 3}, {"n": 4}], headers=[None, {"k": "v"}])
    finally:
        await fields_backend.aclose()
    with_headers, without, none_in_batch, in_batch = await raw_fields(raw, backend, stream)
    assert with_headers[0] == HEADERS_FIELD
    assert json.loads(with_headers[1]) == HEADERS
    assert with_headers[2:] == ["type", "a", "n", "json:1"]  # the old module's codec
    assert without == ["type", "b", "n", "json:2"]  # old readers see no extra field
    assert none_in_batch == ["n", "json:3"]
    assert in_batch == [HEADERS_FIELD, '{"k":"v"}', "n", "json:4"]


async def test_json_format_keeps_headers_first(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    assert backend.settings.payload_format == "json"  # the default
    await backend.publish(stream, {"n": 1}, headers={"k": "v"})
    await backend.publish_many(stream, [{"n": 2}, {"n": 3}], headers=[None, {"k": "w"}])
    fields, no_headers, in_batch = await raw_fields(raw, backend, stream)
    assert no_headers == [PAYLOAD_FIELD, '{"n":2}']
    assert in_batch == [HEADERS_FIELD, '{"k":"w"}', PAYLOAD_FIELD, '{"n":3}']
    assert fields == [HEADERS_FIELD, '{"k":"v"}', PAYLOAD_FIELD, '{"n":1}']
    session = await backend.open_consumer(stream, "g", "c")
    got = await session.read(count=10, block=None)
    assert [(m.data, m.headers) for m in got] == [
        ({"n": 1}, {"k": "v"}),
        ({"n": 2}, {}),
        ({"n": 3}, {"k": "w"}),
    ]


@pytest.mark.parametrize("headers", [None, {"k": "v"}])
async def test_a_payload_with_a_reserved_key_is_written_as_json(
    backend: RedisBackend, raw: Redis, stream: str, headers: dict[str, str] | None
) -> None:
    payload = {HEADERS_FIELD: "not headers", "n": 1}
    await backend.publish(stream, payload, headers=headers)
    [fields] = await raw_fields(raw, backend, stream)
    assert fields[-2] == PAYLOAD_FIELD
    assert fields[:-2] == ([HEADERS_FIELD, '{"k":"v"}'] if headers else [])
    session = await backend.open_consumer(stream, "g", "c")
    [message] = await session.read(count=10, block=None)
    assert (message.data, message.headers) == (payload, headers or {})


@pytest.mark.parametrize(
    "value",
    ["not json", "[1, 2]", '{"n": 1}', '{"a": null}', b'{"a": "\xff"}'],
    ids=["not-json", "array", "int-value", "null-value", "not-utf8"],
)
async def test_a_bad_headers_field_is_a_decode_error(
    backend: RedisBackend, raw: Redis, stream: str, value: str | bytes
) -> None:
    session = await backend.open_consumer(stream, "g", "c")
    key = backend.settings.key(stream)
    await raw.xadd(key, {HEADERS_FIELD: value, "n": "1"})
    await raw.xadd(key, {"fine": "yes"})
    bad, fine = await session.read(count=10, block=None)
    assert bad.decode_error is not None
    assert HEADERS_FIELD in bad.decode_error
    assert (bad.data, bad.headers) == ({}, {})
    assert HEADERS_FIELD in bad.raw
    assert (fine.decode_error, fine.data) == (None, {"fine": "yes"})


async def test_headers_stay_with_an_undecodable_payload(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    session = await backend.open_consumer(stream, "g", "c")
    await raw.xadd(backend.settings.key(stream), {HEADERS_FIELD: '{"k":"v"}', "n": "json:{"})
    [message] = await session.read(count=10, block=None)
    assert message.decode_error is not None
    assert message.headers == {"k": "v"}  # the dead letter will carry them


async def test_headers_survive_every_way_back(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    first = await backend.open_consumer(stream, "g", "first")
    thief = await backend.open_consumer(stream, "g", "thief")
    ids = await backend.publish_many(
        stream, [{"n": 0}, {"n": 1}], headers=[HEADERS, {"only": "one"}]
    )
    expected = {ids[0]: HEADERS, ids[1]: {"only": "one"}}
    read = await first.read(count=10, block=None)
    assert {m.id: m.headers for m in read} == expected
    redelivered = await first.redeliver(read)
    assert {m.id: m.headers for m in redelivered} == expected

    await first.aclose()
    reopened = await backend.open_consumer(stream, "g", "first")  # own pending re-read
    reread = await reopened.read(count=10, block=None)
    assert {m.id: (m.headers, m.delivery_count) for m in reread} == {
        i: (h, 3) for i, h in expected.items()
    }
    await asyncio.sleep(0.05)  # idle time is what is being tested
    claimed = await thief.claim_stale(min_idle=0.02, count=10)
    assert {m.id: (m.headers, m.delivery_count) for m in claimed} == {
        i: (h, 4) for i, h in expected.items()
    }
    assert {m.id: m.headers for m in await backend.peek(stream, count=10)} == expected

    dead_id = await thief.dead_letter(
        claimed[0], dead_letter_stream=f"{stream}.dead", record={"why": "test"}
    )
    [fields] = await raw_fields(raw, backend, f"{stream}.dead")
    assert fields[0] == HEADERS_FIELD
    assert json.loads(fields[1]) == HEADERS
    [dead] = await backend.peek(f"{stream}.dead", count=10)
    assert (dead.id, dead.data, dead.headers) == (dead_id, {"why": "test"}, HEADERS)
