"""aiokafka exceptions map onto conveyor's error tree in one place (no broker needed)."""

from __future__ import annotations

import pytest
from aiokafka import errors as kafka_errors

from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    ConveyorError,
    GroupNotFoundError,
)
from conveyor_kafka._errors import MOVED, check_created, mapped


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (kafka_errors.KafkaConnectionError("refused"), BrokerUnavailableError),
        (kafka_errors.NoBrokersAvailable(), BrokerUnavailableError),
        (kafka_errors.RequestTimedOutError(), BrokerUnavailableError),
        (kafka_errors.UnknownTopicOrPartitionError(), GroupNotFoundError),
        (kafka_errors.ConsumerStoppedError(), BackendClosedError),
        (kafka_errors.TopicAuthorizationFailedError(), BackendError),
        (kafka_errors.CommitFailedError("moved"), BackendError),
    ],
)
def test_client_errors_become_conveyor_errors(raised: Exception, expected: type) -> None:
    with pytest.raises(expected) as info, mapped("operation"):
        raise raised
    assert isinstance(info.value, ConveyorError)
    assert info.value.__cause__ is raised
    assert "kafka operation" in str(info.value)


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), mapped("operation"):
        raise KeyError("not a client error")


def test_moved_errors_are_the_rebalance_ones() -> None:
    assert kafka_errors.CommitFailedError in MOVED
    assert kafka_errors.RebalanceInProgressError in MOVED


def test_topic_creation_errors() -> None:
    exists = kafka_errors.TopicAlreadyExistsError.errno
    check_created("t", [("t", 0, None), ("t", exists, "already exists")])  # both fine
    with pytest.raises(BackendError):
        check_created("t", [("t", kafka_errors.InvalidPartitionsError.errno, "bad")])
