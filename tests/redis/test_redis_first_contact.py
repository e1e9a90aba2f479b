"""The first contact with a server is bounded by ``socket_connect_timeout``: a port that
accepts connections and never answers fails once, within that time, with a
`BrokerUnavailableError` that says so; a port where another service answers (NATS) says
that it does not speak the Redis protocol. Commands after the handshake keep
``socket_timeout``: blocking reads longer than the connect timeout still work."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from conveyor.errors import BackendError, BrokerUnavailableError
from conveyor.options import split_options
from conveyor.testing.processes import SilentServer
from conveyor_redis import RedisBackend, open_backend

CONNECT_TIMEOUT = 1.0


@pytest.mark.parametrize("call", ["publish", "open_consumer"])
async def test_a_silent_port_fails_once_within_the_connect_timeout(call: str) -> None:
    with SilentServer() as silent:
        backend = await open_backend(
            f"redis://127.0.0.1:{silent.port}/0",
            {"socket_connect_timeout": str(CONNECT_TIMEOUT)},
        )

        async def first_contact() -> None:
            if call == "publish":
                await backend.publish("orders", {"n": 1})
            else:
                await backend.open_consumer("orders", "billing", "c1")

        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as info:
            await first_contact()
        took = time.monotonic() - started
        await backend.aclose()
        accepted = silent.accepted
    assert took < CONNECT_TIMEOUT + 2, took  # was (1 + retries) x socket_timeout: 40 s
    message = str(info.value)
    assert f"127.0.0.1:{silent.port} accepted the connection but did not answer" in message
    assert f"like a Redis server within {CONNECT_TIMEOUT} s (socket_connect_timeout)" in message
    assert accepted == 1  # one attempt: redis-py did not retry it


async def test_the_default_connect_timeout_bounds_the_first_contact() -> None:
    with SilentServer() as silent:
        backend = await open_backend(f"redis://127.0.0.1:{silent.port}/0", {})
        assert backend.settings.socket_connect_timeout == 5.0
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError, match=r"within 5\.0 s"):
            await backend.publish("orders", {"n": 1})
        took = time.monotonic() - started
        await backend.aclose()
    assert 4.5 < took < 5.0 + 2, took


async def test_a_port_of_another_service_does_not_speak_redis(nats_url: str) -> None:
    parts = urlsplit(nats_url)  # nats-server greets every connection with INFO {...}
    backend = await open_backend(f"redis://{parts.hostname}:{parts.port}/0", {})
    try:
        with pytest.raises(BackendError) as info:
            await backend.publish("orders", {"n": 1})
    finally:
        await backend.aclose()
    message = str(info.value)
    assert f"{parts.hostname}:{parts.port} does not speak the Redis protocol" in message
    assert 'Protocol error, got "I" as reply type byte' in message  # the client's own words
    assert not isinstance(info.value, BrokerUnavailableError)  # a wrong URL: not retried


async def test_commands_after_the_handshake_keep_the_socket_timeout(
    redis_url: str, backend: RedisBackend, stream: str
) -> None:
    base, query = split_options(redis_url)
    patient = await open_backend(
        base,
        {
            **query,
            "key_prefix": backend.settings.key_prefix,
            "socket_connect_timeout": "0.2",
            "max_block": "1.5",
            "socket_timeout": "3",
        },
    )
    try:
        session = await patient.open_consumer(stream, "g", "c")
        assert await session.read(count=10, block=None) == []  # own pending re-read
        started = time.monotonic()
        assert await session.read(count=10, block=1.2) == []  # longer than the handshake
        assert time.monotonic() - started >= 1.1  # blocked well past the connect timeout
        await backend.publish(stream, {"n": 1})
        [message] = await session.read(count=10, block=1.2)
        assert message.data == {"n": 1}
    finally:
        await patient.aclose()
