"""conveyor's Kafka backend: ``kafka://host:port[,host:port...]`` on aiokafka.

A conveyor stream is a topic (names mapped reversibly by `topic_name`), a group is a
consumer group and a consumer is a group member. See `KafkaSettings` for the URL options
and `KafkaBackend` for how acks become offset commits.
"""

from conveyor_kafka.backend import CAPABILITIES, KafkaBackend, open_backend
from conveyor_kafka.settings import KafkaSettings, stream_name, topic_name

__all__ = [
    "open_backend",
    "KafkaBackend",
    "KafkaSettings",
    "CAPABILITIES",
    "topic_name",
    "stream_name",
]
