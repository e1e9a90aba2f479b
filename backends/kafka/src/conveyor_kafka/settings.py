"""``kafka://`` URLs: `KafkaSettings.from_url`, the stream-name to topic-name mapping and the
conveyor-group to Kafka-group-id mapping."""

from __future__ import annotations

import functools
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from conveyor.errors import ConfigurationError
from conveyor.options import parse_url_options, redact_url

__all__ = ["KafkaSettings", "stream_name", "topic_name"]

_SAFE = re.compile(r"[A-Za-z0-9.\-]")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")
_MAX_TOPIC = 249


@functools.lru_cache(maxsize=4096)
def topic_name(stream: str) -> str:
    """Map a conveyor stream name onto a valid Kafka topic name, reversibly.

    Kafka topics allow ``[a-zA-Z0-9._-]`` (at most 249 characters, not ``.`` or ``..``).
    Letters, digits, ``.`` and ``-`` are kept; every other UTF-8 byte, ``_`` included,
    becomes ``_`` plus two lowercase hex digits: ``events:bot`` -> ``events_3abot``,
    ``a.b-c_d`` -> ``a.b-c_5fd``. `stream_name` is the inverse.

    Raises:
        ConfigurationError: the name is empty or too long once mapped.
    """
    if not stream:
        raise ConfigurationError("stream name must not be empty")
    if stream in {".", ".."}:
        topic = "_2e" * len(stream)
    else:
        parts = []
        for char in stream:
            if _SAFE.fullmatch(char):
                parts.append(char)
            else:
                parts.extend(f"_{byte:02x}" for byte in char.encode())
        topic = "".join(parts)
    if len(topic) > _MAX_TOPIC:
        raise ConfigurationError(
            f"stream name {stream[:40]!r}... maps to a {len(topic)}-character topic name;"
            f" Kafka allows at most {_MAX_TOPIC}"
        )
    return topic


def stream_name(topic: str) -> str:
    """Inverse of `topic_name`."""
    out = bytearray()
    index = 0
    while index < len(topic):
        match = _ESCAPE.match(topic, index)
        if match:
            out.append(int(match.group(1), 16))
            index = match.end()
        else:
            out.extend(topic[index].encode())
            index += 1
    return out.decode()


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
GroupIds = Literal["per_stream", "as_is"]

_URL_FIELDS = ("bootstrap_servers",)


@dataclass(frozen=True)
class KafkaSettings:
    """Options of ``kafka://[user:password@]host:port[,host:port...][?option=value&...]``.

    Credentials in the URL's user part are the SASL username and password. A host
    without a port uses 9092.

    Attributes:
        bootstrap_servers: ``host:port`` strings from the URL.
        partitions: Partition count of topics the backend creates (streams and dead-letter
            streams are created explicitly with the admin client, never by the broker's
            metadata auto-create side effect). Default 1.
        replication_factor: Replication factor of created topics. Default 1.
        max_age: Seconds records are kept in topics the backend creates (topic config
            ``retention.ms``). None (default): the broker's default (7 days on Apache
            Kafka). Kafka retains by time and size only: there is no ``maxlen``.
        retention_bytes: Bytes kept per partition of topics the backend creates (topic
            config ``retention.bytes``). None (default): the broker's default.
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
        sasl_username: SASL user (prefer the URL's user part).
        sasl_password: SASL password (prefer the URL's user part; never logged).
        ssl_cafile: CA bundle that verifies the brokers (SSL / SASL_SSL).
        ssl_certfile: Client certificate for mutual TLS.
        ssl_keyfile: Private key of `ssl_certfile`.
        ssl_check_hostname: Verify the broker's host name against its certificate.
        group_ids: How a conveyor group becomes a Kafka consumer-group id. Kafka groups
            are global while conveyor groups are per stream, so by default
            (``per_stream``) group ``billing`` on stream ``orders`` is the Kafka group
            ``billing:orders`` (``group:topic``; injective since topic names cannot hold
            ``:``), and the same group name on two streams never rebalances one when a
            consumer of the other starts or stops. ``as_is``: the conveyor group name is
            the Kafka group id (what conveyor-kafka 0.1 did, for deployments that keep
            their committed offsets or share groups with other Kafka clients).
        fetch_max_wait_ms: How long the broker may hold a fetch that has no data. Apache
            Kafka answers as soon as records arrive; Tansu does not, so there this bounds
            delivery latency. Default 100.
        session_timeout_ms: Consumer-group session timeout: how long a dead member keeps
            its partitions before they move to another member. None: the `claim_idle` given to
            `open_consumer` (clamped to 6 s .. 30 min), else 10 s.
        heartbeat_interval_ms: Member heartbeat period. None: a third of the session
            timeout, at most 3 s.
        max_poll_interval_ms: Longest gap between reads before the client leaves the group.
        max_uncommitted: A partition is paused (still polled, no new records) while this
            many offsets were delivered past its commit point, e.g. behind a message that
            keeps failing; bounds the work redone after a crash. Default 10000.
        request_timeout_ms: Client request timeout.
        connect_timeout_ms: How long opening the backend waits for each bootstrap server
            to accept a connection and answer like a Kafka broker (``ApiVersions``).
            aiokafka itself bounds that first contact only by `request_timeout_ms`, so a
            port that accepts connections and never answers held it 40 s. When no
            bootstrap server answers in time, opening raises `BrokerUnavailableError`;
            later requests keep `request_timeout_ms`. Default 5000.
        client_id: Client id shown in broker logs.
        idempotent: Idempotent producer (``enable_idempotence``). Default True; Tansu's
            memory storage refuses InitProducerId, so tests against it set False.
        max_request_size: Largest record (value, headers and framing) the producer sends,
            in bytes (aiokafka's ``max_request_size``). A publish over it, or over the
            topic's ``max.message.bytes`` where the broker reports it, raises
            `PayloadTooLargeError` before anything is sent. Default 1048576.
        linger_ms: How long publishes wait for more publishes to share their record
            batches (0: send at once; concurrent publishes share batches anyway).
    """

    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    partitions: int = 1
    replication_factor: int = 1
    max_age: float | None = None
    retention_bytes: int | None = None
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    group_ids: GroupIds = "per_stream"
    fetch_max_wait_ms: int = 100
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    max_poll_interval_ms: int = 300_000
    max_uncommitted: int = 10_000
    request_timeout_ms: int = 40_000
    connect_timeout_ms: int = 5_000
    client_id: str = "conveyor"
    idempotent: bool = True
    linger_ms: int = 0
    max_request_size: int = 1_048_576

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any] | None = None) -> KafkaSettings:
        """Build settings from a ``kafka://`` URL (no query string) and its options.

        Raises:
            ConfigurationError: bad URL, unknown option (valid ones listed) or bad value.
        """
        parts = urlsplit(url)
        if parts.scheme != "kafka":
            raise ConfigurationError(f"not a kafka:// URL: {redact_url(url)!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        servers = tuple(_server(h, url) for h in hosts.split(",") if h.strip())
        if not servers:
            raise ConfigurationError(f"kafka:// URL names no broker: {redact_url(url)!r}")
        if "maxlen" in (options or {}):
            raise ConfigurationError(
                "kafka:// has no maxlen: Kafka retains records by time and size only"
                " (use max_age= or retention_bytes=)"
            )
        kwargs = parse_url_options("kafka", cls, options or {}, exclude=_URL_FIELDS)
        if userinfo:
            user, sep, password = userinfo.partition(":")
            kwargs.setdefault("sasl_username", unquote(user))
            if sep:
                kwargs.setdefault("sasl_password", unquote(password))
        settings = cls(bootstrap_servers=servers, **kwargs)
        settings._validate()
        return settings

    def _validate(self) -> None:
        positive = {
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "max_uncommitted": self.max_uncommitted,
            "request_timeout_ms": self.request_timeout_ms,
            "connect_timeout_ms": self.connect_timeout_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigurationError(f"kafka:// option {name}={value}: must be >= 1")
        for name, opt in {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "linger_ms": self.linger_ms,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
        }.items():
            if opt is not None and opt < 0:
                raise ConfigurationError(f"kafka:// option {name}={opt}: must be >= 0")
        if self.max_age is not None and not self.max_age > 0:
            raise ConfigurationError(f"kafka:// option max_age={self.max_age}: must be > 0")
        if self.retention_bytes is not None and self.retention_bytes < 1:
            raise ConfigurationError(
                f"kafka:// option retention_bytes={self.retention_bytes}: must be >= 1"
            )
        if self.security_protocol.startswith("SASL") and not self.sasl_username:
            raise ConfigurationError(
                f"kafka:// security_protocol={self.security_protocol} needs credentials:"
                " kafka://user:password@host:port or sasl_username/sasl_password"
            )

    def topic_configs(self) -> dict[str, str]:
        """Topic configs of the topics the backend creates (`max_age`, `retention_bytes`)."""
        configs: dict[str, str] = {}
        if self.max_age is not None:
            configs["retention.ms"] = str(max(1, round(self.max_age * 1000)))
        if self.retention_bytes is not None:
            configs["retention.bytes"] = str(self.retention_bytes)
        return configs

    def group_id(self, group: str, stream: str) -> str:
        """The Kafka consumer-group id of conveyor group `group` on `stream` (see
        `group_ids`): ``group:topic`` by default, `group` itself with ``as_is``."""
        if self.group_ids == "as_is":
            return group
        return f"{group}:{topic_name(stream)}"

    def session_timeout_for(self, claim_idle: float | None) -> int:
        """Session timeout in ms for a consumer opened with `claim_idle`."""
        if self.session_timeout_ms is not None:
            return self.session_timeout_ms
        if claim_idle is None:
            return 10_000
        return min(max(int(claim_idle * 1000), 6_000), 1_800_000)

    def heartbeat_for(self, session_timeout_ms: int) -> int:
        """Heartbeat interval in ms for a session timeout."""
        if self.heartbeat_interval_ms is not None:
            return self.heartbeat_interval_ms
        return max(100, min(session_timeout_ms // 3, 3_000))

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keywords shared by aiokafka's producer, consumer and admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in {"SSL", "SASL_SSL"}:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            context.check_hostname = self.ssl_check_hostname
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            kwargs["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs


def _server(host: str, url: str) -> str:
    host = host.strip()
    if host.startswith("["):  # [ipv6]:port
        addr, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
        if (rest and not rest.startswith(":")) or (port and not port.isdigit()):
            raise ConfigurationError(f"kafka:// URL has a bad port in {redact_url(url)!r}")
        return f"[{addr}]:{port or 9092}"
    name, sep, port = host.rpartition(":")
    if not sep:
        return f"{host}:9092"
    if not port.isdigit():
        raise ConfigurationError(f"kafka:// URL has a bad port in {redact_url(url)!r}")
    return f"{name}:{port}"
