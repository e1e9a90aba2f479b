"""The one table that turns aiokafka exceptions into `conveyor.errors` classes.

Every broker call of the backend runs inside ``with ERRORS.mapping("kafka <action>"):``.
aiokafka raises one class per broker error code, so rules match by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import errors as kafka_errors

from conveyor.errormap import ErrorMap, Rule
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    ConfigurationError,
    GroupNotFoundError,
    PayloadError,
)

__all__ = ["ERRORS", "MOVED", "check_created"]

#: The group moved the partitions to another member: a refused commit, not a failure.
#: `Member.commit` catches these itself (its unacked messages will be delivered again).
MOVED = (
    kafka_errors.CommitFailedError,
    kafka_errors.IllegalStateError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.IllegalGenerationError,
)

ERRORS = ErrorMap(
    "kafka",
    catch=(kafka_errors.KafkaError, kafka_errors.ConsumerStoppedError),
    rules=[
        Rule(
            BackendClosedError,
            types=(kafka_errors.ConsumerStoppedError, kafka_errors.ProducerClosed),
            message="the client was closed",
            example=lambda: kafka_errors.ConsumerStoppedError(),
        ),
        Rule(
            BrokerUnavailableError,
            types=(
                kafka_errors.KafkaConnectionError,
                kafka_errors.NoBrokersAvailable,
                kafka_errors.NodeNotReadyError,
                kafka_errors.KafkaTimeoutError,
                kafka_errors.RequestTimedOutError,
                kafka_errors.CoordinatorNotAvailableError,
                kafka_errors.NotCoordinatorForGroupError,
                kafka_errors.LeaderNotAvailableError,
                kafka_errors.NotLeaderForPartitionError,
            ),
            example=lambda: kafka_errors.KafkaConnectionError("connection refused"),
        ),
        Rule(
            GroupNotFoundError,
            types=(kafka_errors.UnknownTopicOrPartitionError,),
            message="the topic does not exist",
            example=lambda: kafka_errors.UnknownTopicOrPartitionError(),
        ),
        Rule(
            PayloadError,
            types=(kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordListTooLargeError),
            message="the record is larger than the broker accepts (its max.message.bytes)",
            example=lambda: kafka_errors.MessageSizeTooLargeError(),
        ),
        Rule(
            ConfigurationError,
            types=(
                kafka_errors.InvalidPartitionsError,
                kafka_errors.InvalidReplicationFactorError,
            ),
            message=(
                "the broker refused the topic's settings: check the partitions and"
                " replication_factor options against the cluster"
            ),
            example=lambda: kafka_errors.InvalidReplicationFactorError(),
        ),
        Rule(
            BackendError,
            types=MOVED,
            message="the group rebalanced: the partitions moved to another member",
            example=lambda: kafka_errors.CommitFailedError("moved"),
        ),
    ],
)

_TOPIC_EXISTS = kafka_errors.TopicAlreadyExistsError.errno


def check_created(topic: str, topic_errors: Sequence[tuple[Any, ...]]) -> None:
    """Raise the mapped error of a CreateTopics result other than "already exists"."""
    for _name, code, *_rest in topic_errors:
        if code and code != _TOPIC_EXISTS:
            exc = kafka_errors.for_code(code)()
            raise ERRORS.translate(exc, f"kafka create topic {topic!r}") from exc
