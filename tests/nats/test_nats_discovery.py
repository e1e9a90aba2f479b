"""`streams()` and `groups()` on JetStream: prefixes, escaped names, first_ts."""

from __future__ import annotations

import time

from tests.nats.conftest import OpenNats

import nats
from conveyor_nats.discovery import parse_time


def test_jetstream_times_parse_to_epoch_seconds() -> None:
    assert parse_time("1970-01-01T00:00:01.500000000Z") == 1.5
    assert parse_time("2024-05-01T12:00:00Z") == 1714564800.0
    assert parse_time("2024-05-01T12:00:00.123456789+00:00") == 1714564800.123456
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("not a time") is None
    assert parse_time(None) is None


async def test_only_this_backends_prefixes_are_listed(nats_url: str, open_nats: OpenNats) -> None:
    backend = await open_nats()
    before = time.time()
    await backend.publish("events:bot", {"n": 1})
    await backend.publish("events:bot", {"n": 2})
    await backend.create_group("events:bot", "billing:eu")
    await backend.publish("events:bot.dead", {"n": 1})
    nc = await nats.connect(nats_url)
    try:  # a stream on this subject prefix that conveyor did not name
        prefix = backend.settings.subject_prefix
        await nc.jetstream().add_stream(name="foreign-x", subjects=[f"{prefix}.foreign"])
        listed = {i.name: i for i in await backend.streams()}
    finally:
        await nc.jetstream().delete_stream("foreign-x")
        await nc.close()
    assert sorted(listed) == ["events:bot", "events:bot.dead"]
    info = listed["events:bot"]
    assert (info.length, info.groups) == (2, ("billing:eu",))
    assert info.oldest_at is not None
    assert before - 5 < info.oldest_at < time.time() + 5
    assert listed["events:bot.dead"].dead_letter_of == "events:bot"
    assert await backend.groups("events:bot") == ["billing:eu"]
    assert await backend.groups("missing") == []
