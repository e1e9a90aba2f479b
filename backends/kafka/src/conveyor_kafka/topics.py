"""Deleting a topic: what `KafkaBackend.delete_stream` sends (admin ``DeleteTopics``).

Apache Kafka drops the topic's records and, with them, the committed offsets of every
group on it; a group id of the default ``group:topic`` form then has nothing left. Tansu
(the test broker) deletes the topic but mishandles one re-created under open readers and
writers (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient

from conveyor_kafka.errors import ERRORS

__all__ = ["delete_topic"]

_UNKNOWN_TOPIC = kafka_errors.UnknownTopicOrPartitionError.errno


async def delete_topic(admin: AIOKafkaAdminClient, topic: str) -> bool:
    """``DeleteTopics`` of `topic`; False when the broker did not know it."""
    action = f"kafka delete topic {topic!r}"
    with ERRORS.mapping(action):
        if topic not in await admin.list_topics():
            return False
        response = await admin.delete_topics([topic])
    return _deleted(topic, response.topic_error_codes, action)


def _deleted(topic: str, results: Sequence[tuple[Any, ...]], action: str) -> bool:
    for name, code, *_rest in results:
        if name != topic or not code:
            continue
        if code == _UNKNOWN_TOPIC:
            return False
        exc = kafka_errors.for_code(code)()
        raise ERRORS.translate(exc, action) from exc
    return True
