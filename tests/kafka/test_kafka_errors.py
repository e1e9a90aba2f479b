"""aiokafka exceptions map onto conveyor's error tree in one table (no broker needed).

Every rule's own example is checked by tests/core/test_error_tables.py."""

from __future__ import annotations

import pytest
from aiokafka import errors as kafka_errors

from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    ConfigurationError,
    ConveyorError,
    GroupNotFoundError,
    PayloadError,
)
from conveyor_kafka.errors import ERRORS, MOVED, check_created


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (kafka_errors.KafkaConnectionError("refused"), BrokerUnavailableError),
        (kafka_errors.NoBrokersAvailable(), BrokerUnavailableError),
        (kafka_errors.RequestTimedOutError(), BrokerUnavailableError),
        (kafka_errors.KafkaTimeoutError(), BrokerUnavailableError),
        (kafka_errors.UnknownTopicOrPartitionError(), GroupNotFoundError),
        (kafka_errors.ConsumerStoppedError(), BackendClosedError),
        (kafka_errors.ProducerClosed(), BackendClosedError),
        (kafka_errors.MessageSizeTooLargeError(), PayloadError),
        (kafka_errors.InvalidPartitionsError(), ConfigurationError),
        (kafka_errors.TopicAuthorizationFailedError(), BackendError),
        (kafka_errors.CommitFailedError("moved"), BackendError),
    ],
)
def test_client_errors_become_conveyor_errors(raised: Exception, expected: type) -> None:
    with pytest.raises(expected) as info, ERRORS.mapping("kafka operation"):
        raise raised
    assert type(info.value) is expected
    assert isinstance(info.value, ConveyorError)
    assert info.value.__cause__ is raised
    assert "kafka operation" in str(info.value)


def test_a_close_that_cut_the_call_is_backend_closed() -> None:
    with pytest.raises(BackendClosedError), ERRORS.mapping("kafka fetch", closed=lambda: True):
        raise kafka_errors.KafkaConnectionError("reset by peer")


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), ERRORS.mapping("kafka operation"):
        raise KeyError("not a client error")


def test_moved_errors_are_the_rebalance_ones() -> None:
    assert kafka_errors.CommitFailedError in MOVED
    assert kafka_errors.RebalanceInProgressError in MOVED


def test_topic_creation_errors() -> None:
    exists = kafka_errors.TopicAlreadyExistsError.errno
    check_created("t", [("t", 0, None), ("t", exists, "already exists")])  # both fine
    with pytest.raises(ConfigurationError) as info:
        check_created("t", [("t", kafka_errors.InvalidReplicationFactorError.errno, "bad")])
    assert isinstance(info.value.__cause__, kafka_errors.InvalidReplicationFactorError)
    with pytest.raises(BackendError):
        check_created("t", [("t", kafka_errors.TopicAuthorizationFailedError.errno, "no")])
