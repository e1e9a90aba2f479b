"""The one error table (`conveyor_redis.errors.ERRORS`): reply tokens and client exceptions."""

from __future__ import annotations

import pytest
from redis._parsers.base import BaseParser
from redis.asyncio import Redis

from conveyor.errormap import Rule
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    ConveyorError,
    GroupNotFoundError,
    WrongTypeError,
)
from conveyor_redis.errors import ERRORS, UNREACHABLE, error_code, reply_token
from redis import exceptions as rx

translate = ERRORS.translate


@pytest.mark.parametrize(
    ("reply", "token", "expected"),
    [
        ("NOGROUP No such key 'k' or consumer group 'g'", "NOGROUP", GroupNotFoundError),
        ("BUSYGROUP Consumer Group name already exists", "BUSYGROUP", BackendError),
        ("WRONGTYPE Operation against a key holding the wrong kind", "WRONGTYPE", WrongTypeError),
        ("LOADING Redis is loading the dataset in memory", "LOADING", BrokerUnavailableError),
        (
            "READONLY You can't write against a read only replica",
            "READONLY",
            BrokerUnavailableError,
        ),
        ("MASTERDOWN Link with MASTER is down", "MASTERDOWN", BrokerUnavailableError),
        ("CLUSTERDOWN The cluster is down", "CLUSTERDOWN", BrokerUnavailableError),
        ("TRYAGAIN Multiple keys request during rehashing", "TRYAGAIN", BrokerUnavailableError),
        ("BUSY Redis is busy running a script", "BUSY", BrokerUnavailableError),
        ("MOVED 3999 127.0.0.1:6381", "MOVED", BackendError),
        ("NOPERM this user has no permissions", "NOPERM", BackendError),
        ("OOM command not allowed when used memory > 'maxmemory'", "OOM", BackendError),
        ("ERR The ID specified in XADD is equal or smaller", "ERR", BackendError),
        # the token is the leading word only: text elsewhere is never searched
        ("ERR unknown consumer NOGROUP", "ERR", BackendError),
    ],
)
def test_reply_tokens_classify(reply: str, token: str, expected: type[ConveyorError]) -> None:
    # exactly what redis-py raises for this reply
    exc: Exception = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]
    assert reply_token(exc) == token
    error = translate(exc, "doing it")
    assert type(error) is expected
    assert str(error).startswith("doing it: ")


def test_plain_text_without_token() -> None:
    assert reply_token(rx.ResponseError("something went wrong")) == ""
    assert reply_token(rx.ResponseError()) == ""
    assert reply_token(ValueError("NOGROUP")) == ""
    assert type(translate(rx.ResponseError("lower case"), "x")) is BackendError


@pytest.mark.parametrize(
    "exc",
    [
        rx.ConnectionError("Connection refused"),
        rx.TimeoutError("Timeout reading from socket"),
        rx.BusyLoadingError("loading"),
        ConnectionResetError("reset"),
        TimeoutError(),
    ],
)
def test_connection_problems_are_broker_unavailable(exc: BaseException) -> None:
    assert type(translate(exc, "x")) is BrokerUnavailableError


def test_authentication_failures_are_not_retried_as_outages() -> None:
    error = translate(rx.AuthenticationError("invalid username-password pair"), "AUTH")
    assert type(error) is BackendError


def test_conveyor_errors_pass_through() -> None:
    original = GroupNotFoundError("gone")
    assert translate(original, "x") is original


def test_mapping_chains_the_cause() -> None:
    with pytest.raises(GroupNotFoundError) as info, ERRORS.mapping("XREADGROUP on 's'"):
        raise rx.ResponseError("NOGROUP No such key")
    assert isinstance(info.value.__cause__, rx.ResponseError)
    assert str(info.value).startswith("XREADGROUP on 's': ")


def test_mapping_of_a_closed_caller_is_backend_closed() -> None:
    with pytest.raises(BackendClosedError), ERRORS.mapping("x", closed=lambda: True):
        raise rx.ConnectionError("Connection closed by server.")


@pytest.mark.parametrize("rule", ERRORS.rules, ids=lambda r: r.error.__name__)
def test_every_rule_example_is_matched_by_its_own_rule(rule: Rule) -> None:
    assert rule.example is not None
    exc = rule.example()
    assert isinstance(exc, ERRORS.catch)
    first = next(r for r in ERRORS.rules if r.matches(exc, error_code(exc)))
    assert first is rule
    assert type(translate(exc, "x")) is rule.error


def test_auth_errors_never_carry_the_client_text() -> None:
    leaky = rx.AuthenticationError("WRONGPASS for user 'bob' with password hunter2")
    error = translate(leaky, "AUTH")
    assert "hunter2" not in str(error)
    assert str(error) == "AUTH: authentication failed"


def test_cluster_client_errors() -> None:
    unreachable = rx.RedisClusterException("Redis Cluster cannot be connected: ...")
    unreachable.__cause__ = rx.ConnectionError("Error 111 connecting to 127.0.0.1:7000.")
    assert error_code(unreachable) == UNREACHABLE
    assert type(translate(unreachable, "x")) is BrokerUnavailableError
    misuse = rx.RedisClusterException("Cluster mode is not enabled on this node")
    assert error_code(misuse) == ""
    assert type(translate(misuse, "x")) is BackendError
    assert type(translate(rx.SlotNotCoveredError("slot 1"), "x")) is BrokerUnavailableError


async def test_real_server_replies(raw: Redis) -> None:
    """The tokens the backend relies on, as this server actually sends them."""
    key = "conveyor-test-errors:" + "k"
    try:
        with pytest.raises(rx.ResponseError) as nogroup:
            await raw.xreadgroup("g", "c", {key: ">"})
        assert type(translate(nogroup.value, "x")) is GroupNotFoundError
        await raw.xgroup_create(key, "g", id="0", mkstream=True)
        with pytest.raises(rx.ResponseError) as busy:
            await raw.xgroup_create(key, "g", id="0", mkstream=True)
        assert reply_token(busy.value) == "BUSYGROUP"
        await raw.delete(key)
        await raw.set(key, "x")
        with pytest.raises(rx.ResponseError) as wrong:
            await raw.xadd(key, {"a": "b"})
        assert type(translate(wrong.value, "x")) is WrongTypeError
    finally:
        await raw.delete(key)
