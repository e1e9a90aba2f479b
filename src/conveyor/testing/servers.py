"""Find a broker for tests, the same way for every backend.

Order: the URL in an environment variable if set; else the local default port if it
answers; else a local launcher (e.g. the Tansu binary for Kafka) if the spec has one; else a
testcontainers container when a Docker engine answers; else skip with the reason — and under
``CI=true`` fail instead of skipping (a green CI means every backend ran).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "KAFKA",
    "NATS",
    "REDIS",
    "ServerSpec",
    "find_server",
    "in_ci",
    "port_open",
    "unavailable",
]

Launcher = Callable[[], contextlib.AbstractContextManager[str]]


def in_ci() -> bool:
    """True under ``CI=true`` (or ``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the test with `reason`, or fail it under CI."""
    import pytest

    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ServerSpec:
    """How to find one kind of broker.

    Attributes:
        name: Broker name for messages ("Redis").
        env_var: Environment variable holding a URL (``CONVEYOR_TEST_REDIS_URL``).
        host: Local host to probe.
        port: Local default port to probe.
        url: URL to use when the local port answers.
        launcher: Optional context manager factory that starts a local server and yields
            its URL (used when nothing answers on the default port).
        container: Optional testcontainers factory: returns a started-context container
            manager and a function mapping the started container to a URL.
    """

    name: str
    env_var: str
    host: str
    port: int
    url: str
    launcher: Launcher | None = None
    container: Callable[[], tuple[Any, Callable[[Any], str]]] | None = None


def _docker_available() -> bool:
    sock = "/var/run/docker.sock"
    if os.environ.get("DOCKER_HOST"):
        return True
    if not os.path.exists(sock):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(sock)
        return True
    except OSError:
        return False
    finally:
        probe.close()


@contextlib.contextmanager
def find_server(spec: ServerSpec) -> Iterator[str]:
    """Yield a URL for `spec`'s broker, starting one if needed; skip/fail if impossible."""
    from_env = os.environ.get(spec.env_var)
    if from_env:
        yield from_env
        return
    if port_open(spec.host, spec.port):
        yield spec.url
        return
    if spec.launcher is not None:
        with spec.launcher() as url:
            yield url
        return
    if spec.container is not None and _docker_available():
        container, to_url = spec.container()
        with container as started:
            yield to_url(started)
        return
    unavailable(
        f"no {spec.name} server: set {spec.env_var}, start one on {spec.host}:{spec.port},"
        " or make a Docker engine available for testcontainers"
    )


def _redis_container() -> tuple[Any, Callable[[Any], str]]:
    from testcontainers.community.redis import RedisContainer

    def url(started: Any) -> str:
        return f"redis://{started.get_container_host_ip()}:{started.get_exposed_port(6379)}/0"

    return RedisContainer("redis:7"), url


def _nats_container() -> tuple[Any, Callable[[Any], str]]:
    from testcontainers.community.nats import NatsContainer

    return NatsContainer("nats:2", jetstream=True), lambda started: str(started.nats_uri())


def _kafka_container() -> tuple[Any, Callable[[Any], str]]:
    from testcontainers.community.kafka import KafkaContainer

    return KafkaContainer(), lambda started: f"kafka://{started.get_bootstrap_server()}"


#: Redis: ``CONVEYOR_TEST_REDIS_URL``, else 127.0.0.1:6379, else a ``redis:7`` container.
REDIS = ServerSpec(
    "Redis",
    "CONVEYOR_TEST_REDIS_URL",
    "127.0.0.1",
    6379,
    "redis://127.0.0.1:6379/0",
    container=_redis_container,
)
#: NATS with JetStream: ``CONVEYOR_TEST_NATS_URL``, else 127.0.0.1:4222, else a container.
NATS = ServerSpec(
    "NATS",
    "CONVEYOR_TEST_NATS_URL",
    "127.0.0.1",
    4222,
    "nats://127.0.0.1:4222",
    container=_nats_container,
)
#: Kafka: ``CONVEYOR_TEST_KAFKA_URL``, else 127.0.0.1:9092, else a container (the Kafka
#: backend's tests add a Tansu launcher before the container with `dataclasses.replace`).
KAFKA = ServerSpec(
    "Kafka",
    "CONVEYOR_TEST_KAFKA_URL",
    "127.0.0.1",
    9092,
    "kafka://127.0.0.1:9092",
    container=_kafka_container,
)
