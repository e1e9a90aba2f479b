"""Opening a ``kafka://`` backend is bounded by ``connect_timeout_ms``: a bootstrap server
that accepts connections and never answers fails the open once, within that time, with
a `BrokerUnavailableError` that says so (aiokafka alone waits ``request_timeout_ms``, 40 s);
with another server that answers, the backend opens from that one. Requests after the
bootstrap keep ``request_timeout_ms``."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

import conveyor
from conveyor.errors import BrokerUnavailableError, ConfigurationError
from conveyor.options import split_options
from conveyor.testing.processes import SilentServer, free_port
from conveyor_kafka import KafkaBackend, KafkaSettings

CONNECT_TIMEOUT_MS = 1000


async def test_a_silent_bootstrap_server_fails_the_open_within_the_connect_timeout() -> None:
    with SilentServer() as silent:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as info:
            await conveyor.connect(
                f"kafka://alice:hunter2@127.0.0.1:{silent.port}",
                connect_timeout_ms=CONNECT_TIMEOUT_MS,
            )
        took = time.monotonic() - started
    assert took < CONNECT_TIMEOUT_MS / 1000 + 2, took
    message = str(info.value)
    assert (
        f"127.0.0.1:{silent.port} accepted the connection but did not answer like a Kafka"
        " server within 1 s (connect_timeout_ms)"
    ) in message
    assert "hunter2" not in message


async def test_the_default_connect_timeout_bounds_the_open() -> None:
    assert KafkaSettings().connect_timeout_ms == 5000
    with SilentServer() as silent:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError, match="within 5 s"):
            await conveyor.connect(f"kafka://127.0.0.1:{silent.port}")
        took = time.monotonic() - started
    assert 4.5 < took < 5 + 2, took  # aiokafka's own request_timeout_ms is 40 s


async def test_every_bootstrap_server_is_named_with_what_it_did() -> None:
    refused = free_port()
    with SilentServer() as silent, pytest.raises(BrokerUnavailableError) as info:
        await conveyor.connect(
            f"kafka://127.0.0.1:{refused},127.0.0.1:{silent.port}",
            connect_timeout_ms=CONNECT_TIMEOUT_MS,
        )
    message = str(info.value)
    assert f"127.0.0.1:{refused}: " in message  # refused: the OS's words
    assert f"127.0.0.1:{silent.port} accepted the connection but did not answer" in message


def test_connect_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout_ms"):
        KafkaSettings.from_url("kafka://h:1", {"connect_timeout_ms": "0"})


async def test_a_silent_server_beside_a_live_one_is_left_out(
    kafka_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    base, options = split_options(kafka_url)
    live = base.removeprefix("kafka://")
    with SilentServer() as silent:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="conveyor.kafka"):
            backend = await conveyor.connect(
                f"kafka://127.0.0.1:{silent.port},{live}",
                **options,
                connect_timeout_ms=str(CONNECT_TIMEOUT_MS),
            )
        took = time.monotonic() - started
    try:
        assert isinstance(backend, KafkaBackend)
        assert took < CONNECT_TIMEOUT_MS / 1000 + 2, took
        assert f"bootstrap server left out: 127.0.0.1:{silent.port}" in caplog.text
        # aiokafka shuffles bootstrap servers: a silent one left in costs 40 s at random
        assert backend.settings.bootstrap_servers == (live,)
        stream = f"kt-{uuid.uuid4().hex[:10]}"
        started = time.monotonic()
        await backend.publish(stream, {"n": 1})  # the producer bootstraps from `live`
        assert time.monotonic() - started < 10
        [message] = await backend.peek(stream, count=1)
        assert message.data == {"n": 1}
    finally:
        await backend.aclose()
