"""Discovery on Kafka: the topics a `KafkaBackend` reads as conveyor streams, and their groups.

* Streams: the cluster's topics, leaving out internal ones (``__consumer_offsets``...),
  names `conveyor_kafka.settings.topic_name` could not have produced (``my_topic``: conveyor
  writes ``my_5ftopic``), and the ``<dead-letter stream>.done`` companions the dead-letter
  tools write where Kafka cannot delete records. Lengths come from one short-lived
  consumer's offsets for every partition of every topic at once (beginning offset to high
  watermark). The oldest entry's time is not asked (it needs a fetch per partition):
  ``oldest_at`` is None.
* Groups: ``ListGroups`` (every broker), kept where the group id names the topic
  (``group:topic``, ``group_ids=per_stream``, the default). With ``group_ids=as_is`` a
  group id does not say which topics it reads, and finding out takes an offset fetch per
  group (which Tansu does not answer), so no groups are listed. Tansu lists a group only
  once a member joined it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from conveyor.discovery import StreamInfo
from conveyor_kafka.errors import ERRORS
from conveyor_kafka.settings import stream_name, topic_name

if TYPE_CHECKING:
    from conveyor_kafka.backend import KafkaBackend

__all__ = ["conveyor_streams", "list_groups", "list_streams"]


def conveyor_streams(topics: list[str]) -> dict[str, str]:
    """``{topic: conveyor stream}`` for the topics conveyor reads as streams (see the
    module docstring)."""
    out: dict[str, str] = {}
    for topic in topics:
        if topic.startswith("__"):
            continue
        try:
            stream = stream_name(topic)
        except UnicodeDecodeError:
            continue
        if topic_name(stream) == topic:
            out[topic] = stream
    names = set(out.values())
    return {
        topic: stream
        for topic, stream in out.items()
        if not (stream.endswith(".done") and stream[: -len(".done")] in names)
    }


async def _group_ids(backend: KafkaBackend) -> list[str]:
    admin = backend._admin_client()
    with ERRORS.mapping("kafka list groups", closed=backend._is_closed):
        listed = await admin.list_consumer_groups()
    return [str(entry[0]) for entry in listed]


def _groups_of(topic: str, group_ids: list[str], per_stream: bool) -> tuple[str, ...]:
    if not per_stream:
        return ()
    suffix = f":{topic}"
    return tuple(sorted(g[: -len(suffix)] for g in group_ids if g.endswith(suffix)))


async def list_streams(backend: KafkaBackend) -> list[StreamInfo]:
    """Every conveyor stream on the cluster, with its length and groups."""
    admin = backend._admin_client()
    with ERRORS.mapping("kafka list topics", closed=backend._is_closed):
        streams = conveyor_streams(list(await admin.list_topics()))
    if not streams:
        return []
    with ERRORS.mapping("kafka describe topics", closed=backend._is_closed):
        described = await admin.describe_topics(list(streams))
    partitions: dict[str, list[TopicPartition]] = {topic: [] for topic in streams}
    for topic in described:
        if topic["topic"] in partitions and not topic.get("error_code"):
            partitions[topic["topic"]] += [
                TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]
            ]
    tps = [tp for found in partitions.values() for tp in found]
    begin: dict[TopicPartition, int] = {}
    high: dict[TopicPartition, int] = {}
    if tps:
        async with backend._probe() as consumer:
            begin, high = await backend._bounds(consumer, tps)
    group_ids = await _group_ids(backend)
    per_stream = backend.settings.group_ids == "per_stream"
    return [
        StreamInfo(
            stream,
            sum(high[tp] - begin[tp] for tp in partitions[topic]),
            _groups_of(topic, group_ids, per_stream),
        )
        for topic, stream in streams.items()
    ]


async def list_groups(backend: KafkaBackend, stream: str) -> list[str]:
    """The conveyor groups of `stream` (see the module docstring)."""
    per_stream = backend.settings.group_ids == "per_stream"
    if not per_stream:
        return []
    return list(_groups_of(topic_name(stream), await _group_ids(backend), per_stream))
