"""Retention on NATS: ``maxlen`` is the cross-backend name of JetStream's ``max_msgs``."""

from __future__ import annotations

import uuid

import pytest
from tests.nats.conftest import OpenNats

import nats
from conveyor.errors import ConfigurationError
from conveyor_nats import NatsSettings


def test_maxlen_is_max_msgs() -> None:
    assert NatsSettings.from_url("nats://h", {"maxlen": "50"}).max_msgs == 50
    assert NatsSettings.from_url("nats://h", {"maxlen": "50", "max_msgs": "50"}).max_msgs == 50
    assert NatsSettings(maxlen=7).max_msgs == 7
    assert NatsSettings.from_url("nats://h", {}).max_msgs == -1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"maxlen": "50", "max_msgs": "10"},
            "nats:// options maxlen=50 and max_msgs=10 disagree: maxlen is another name for"
            " max_msgs, give one of them",
        ),
        ({"maxlen": "0"}, "nats:// option maxlen=0: must be >= 1"),
    ],
)
def test_conflicting_or_bad_maxlen_is_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        NatsSettings.from_url("nats://h", options)
    assert str(caught.value) == message


async def test_created_stream_has_the_retention_limits(open_nats: OpenNats, nats_url: str) -> None:
    backend = await open_nats(maxlen="3", max_age="3600", max_bytes="100000")
    stream = f"ret-{uuid.uuid4().hex[:8]}"
    await backend.publish_many(stream, [{"n": i} for i in range(5)])
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(backend.stream_name(stream))
    finally:
        await nc.close()
    assert info.config.max_msgs == 3
    assert info.config.max_age == 3600
    assert info.config.max_bytes == 100000
    assert info.state.messages == 3  # JetStream dropped the two oldest
    assert [m.data["n"] for m in await backend.peek(stream, count=10)] == [2, 3, 4]
