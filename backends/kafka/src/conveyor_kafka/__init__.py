"""conveyor's Kafka backend: ``kafka://host:port[,host:port...]`` on aiokafka.

A conveyor stream is a topic (names mapped reversibly by `topic_name`), a group is a
consumer group (one per stream: `KafkaSettings.group_id`) and a consumer is a group member
(one `KafkaSession`). See `KafkaSettings` for the URL options and `KafkaBackend` for how
acks become offset commits.
"""

from conveyor_kafka.backend import CAPABILITIES, KafkaBackend, open_backend
from conveyor_kafka.session import KafkaSession
from conveyor_kafka.settings import KafkaSettings, stream_name, topic_name

__all__ = [
    "CAPABILITIES",
    "KafkaBackend",
    "KafkaSession",
    "KafkaSettings",
    "open_backend",
    "stream_name",
    "topic_name",
]
