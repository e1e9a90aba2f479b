"""The first contact with the bootstrap servers, bounded by ``connect_timeout_ms``.

aiokafka bounds every step of a bootstrap (TCP connect, ``ApiVersions``, ``Metadata``)
by ``request_timeout_ms`` (40 s by default; ``AIOKafkaClient.bootstrap`` and
``aiokafka.conn.create_conn``), so a port that accepts connections and never answers
held ``conveyor.connect("kafka://...")`` for 40 s per server before one unclear error.
`answering_servers` asks every bootstrap server at once, within ``connect_timeout_ms``,
whether it accepts a TCP connection and answers ``ApiVersions`` like a Kafka broker;
the backend's clients then bootstrap from the servers that did, with the full request
timeout for everything after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import errors as kafka_errors
from aiokafka.conn import collect_hosts, create_conn

from conveyor.errors import BrokerUnavailableError
from conveyor.timeouts import within
from conveyor_kafka.settings import KafkaSettings

__all__ = ["answering_servers"]

log = logging.getLogger("conveyor.kafka")


async def answering_servers(settings: KafkaSettings) -> list[str]:
    """The bootstrap servers that answered like Kafka brokers within
    ``connect_timeout_ms`` (those that did not are logged, with why).

    Raises:
        BrokerUnavailableError: none did; the message says what each one did.
    """
    servers = settings.bootstrap_servers
    problems = await asyncio.gather(*(_probe(settings, server) for server in servers))
    answering = [
        server for server, problem in zip(servers, problems, strict=True) if problem is None
    ]
    found = [problem for problem in problems if problem is not None]
    if not answering:
        raise BrokerUnavailableError(f"kafka connect to {','.join(servers)}: {'; '.join(found)}")
    for problem in found:
        log.warning("bootstrap server left out: %s", problem)
    return answering


async def _probe(settings: KafkaSettings, server: str) -> str | None:
    """None when `server` accepted a TCP connection and answered ``ApiVersions`` within
    ``connect_timeout_ms``; else what it did instead."""
    timeout = settings.connect_timeout_ms / 1000
    [(host, port, _family)] = collect_hosts(server, randomize=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:  # the TCP connection alone first, to tell a silent service from no service
        _, writer = await within(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        return f"{server} did not accept a connection within {timeout:g} s (connect_timeout_ms)"
    except OSError as exc:
        return f"{server}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    kwargs = settings.client_kwargs()
    tls = settings.security_protocol in ("SSL", "SASL_SSL")
    try:  # ApiVersions needs no authentication, so SASL is left to the real clients
        conn = await within(
            create_conn(
                host,
                port,
                client_id=settings.client_id,
                request_timeout_ms=settings.connect_timeout_ms,
                ssl_context=kwargs.get("ssl_context"),
                security_protocol="SSL" if tls else "PLAINTEXT",
            ),
            max(deadline - loop.time(), 0.001),
        )
    except asyncio.TimeoutError:
        return (
            f"{server} accepted the connection but did not answer like a Kafka server"
            f" within {timeout:g} s (connect_timeout_ms)"
        )
    except (OSError, kafka_errors.KafkaError) as exc:
        return f"{server} accepted the connection but did not answer like a Kafka server: {exc!r}"
    await conn.close()
    return None
