"""Retention on Kafka: ``max_age`` → ``retention.ms``, ``retention_bytes`` →
``retention.bytes`` on the topics conveyor creates; ``maxlen`` is refused."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from tests.kafka.conftest import OpenKafka

from conveyor.errors import ConfigurationError
from conveyor_kafka import KafkaSettings, topic_name

pytestmark = pytest.mark.slow


def test_topic_configs_from_the_options() -> None:
    assert KafkaSettings.from_url("kafka://h", {}).topic_configs() == {}
    settings = KafkaSettings.from_url("kafka://h", {"max_age": "86400", "retention_bytes": "5"})
    assert settings.topic_configs() == {"retention.ms": "86400000", "retention.bytes": "5"}
    assert KafkaSettings.from_url("kafka://h", {"max_age": "0.25"}).topic_configs() == {
        "retention.ms": "250"
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"maxlen": "100"},
            "kafka:// has no maxlen: Kafka retains records by time and size only"
            " (use max_age= or retention_bytes=)",
        ),
        ({"max_age": "0"}, "kafka:// option max_age=0.0: must be > 0"),
        ({"retention_bytes": "0"}, "kafka:// option retention_bytes=0: must be >= 1"),
    ],
)
def test_maxlen_and_bad_values_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KafkaSettings.from_url("kafka://h", options)
    assert str(caught.value) == message


def _configs(replies: list[Any]) -> dict[str, str]:
    return {
        entry[0]: entry[1]
        for reply in replies
        for resource in reply.resources
        for entry in resource[4]
    }


async def test_created_topic_carries_the_retention_configs(
    open_kafka: OpenKafka, stream: str
) -> None:
    backend = await open_kafka(max_age="3600", retention_bytes="1000000")
    await backend.publish(stream, {"n": 1})
    admin = AIOKafkaAdminClient(**backend.settings.client_kwargs())
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic_name(stream), None)
        configs = _configs(await admin.describe_configs([resource]))
    finally:
        await admin.close()
    assert configs["retention.ms"] == "3600000"
    assert configs["retention.bytes"] == "1000000"
