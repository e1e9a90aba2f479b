"""The one place where aiokafka exceptions become `conveyor.errors` classes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from aiokafka import errors as kafka_errors

from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    GroupNotFoundError,
)

__all__ = ["MOVED", "check_created", "mapped"]

_UNAVAILABLE = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.NodeNotReadyError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.GroupCoordinatorNotAvailableError,
    kafka_errors.LeaderNotAvailableError,
)
#: The group moved the partitions to another member: a refused commit, not a failure.
MOVED = (
    kafka_errors.CommitFailedError,
    kafka_errors.IllegalStateError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.IllegalGenerationError,
)
_TOPIC_EXISTS = kafka_errors.TopicAlreadyExistsError.errno


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Translate aiokafka exceptions raised inside the block; `what` names the operation."""
    try:
        yield
    except kafka_errors.ConsumerStoppedError as exc:  # not a KafkaError
        raise BackendClosedError(f"kafka {what}: the consumer was closed") from exc
    except _UNAVAILABLE as exc:
        raise BrokerUnavailableError(f"kafka {what}: {type(exc).__name__}: {exc}") from exc
    except kafka_errors.UnknownTopicOrPartitionError as exc:
        raise GroupNotFoundError(f"kafka {what}: the topic does not exist") from exc
    except kafka_errors.KafkaError as exc:
        raise BackendError(f"kafka {what}: {type(exc).__name__}: {exc}") from exc


def check_created(topic: str, errors: Sequence[tuple[Any, ...]]) -> None:
    """Raise for a CreateTopics error other than "already exists"."""
    for _name, code, *_rest in errors:
        if code and code != _TOPIC_EXISTS:
            with mapped(f"create topic {topic!r}"):
                raise kafka_errors.for_code(code)()
