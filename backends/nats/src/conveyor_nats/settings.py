"""`NatsSettings`: everything a ``nats://`` or ``tls://`` URL can say, validated."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from conveyor.errors import ConfigurationError
from conveyor.options import parse_url_options, redact_url
from conveyor_nats.names import validate_prefix

__all__ = ["NatsSettings"]

_URL_PARTS = ("servers", "tls", "user", "password", "token")


@dataclass(frozen=True)
class NatsSettings:
    """Connection and JetStream settings of ``nats://[user:password@|token@]host[:port][,host...]``.

    ``tls://`` (or any ``tls_*`` option) connects with TLS. Several comma-separated hosts
    form a cluster seed list; the client discovers the rest and fails over between them.
    Credentials come from the URL (``user:password@`` or ``token@``) or a creds file.

    Query options (all optional):

    Attributes:
        creds: Path of a NATS ``.creds`` file (user JWT + NKey seed).
        tls_ca: CA bundle file to verify the server with (default: system CAs).
        tls_cert: Client certificate file (PEM) for mutual TLS.
        tls_key: Private key file of `tls_cert`.
        tls_hostname: Server name to verify instead of the host in the URL.
        name: Connection name shown in the server's monitoring. Default ``conveyor``.
        connect_timeout: Seconds to wait for a connection. Default 2.
        reconnect_wait: Seconds between reconnect attempts to one server. Default 2.
        max_reconnect_attempts: Reconnect attempts before giving up; -1 (default): forever.
        request_timeout: Seconds to wait for a JetStream API reply or a publish ack.
            Default 5.
        subject_prefix: First subject tokens; a conveyor stream ``s`` is stored under the
            subject ``<subject_prefix>.<escaped s>``. Default ``conveyor``.
        stream_prefix: Prepended to the escaped conveyor name to form the JetStream stream
            name. Default empty (stream ``orders`` is JetStream stream ``orders``).
        storage: ``file`` (default) or ``memory``, for streams conveyor creates.
        replicas: Replicas of streams conveyor creates (1-5). Default 1.
        max_age: Seconds a message is kept in streams conveyor creates; 0 (default):
            forever.
        max_msgs: Most messages kept per stream; -1 (default): unlimited.
        maxlen: The cross-backend name of `max_msgs` (the option Redis, SQLite and memory
            use); giving both with different values is refused.
        max_bytes: Most bytes kept per stream; -1 (default): unlimited.
        duplicate_window: Seconds over which a repeated ``Nats-Msg-Id`` (publish's
            `msg_id`) is dropped. Default 120.
        ack_wait: Seconds a delivered message may stay unacknowledged before JetStream
            delivers it again, for groups opened without ``claim_idle``. Default 30.
        max_deliver_margin: The consumer's ``max_deliver`` is ``max_deliveries`` plus this
            margin, a backstop behind the engine's dead-lettering; -1: unlimited. Default 3.
        max_ack_pending: Most unacknowledged messages per group. Default 1000.
        group_check_interval: An idle reader checks at most this often (seconds) that its
            consumer still exists, so a deleted group is reported. Default 5.
        ack_confirm: Wait for the server's reply to the last ack of each `ack` batch (and
            to a dead letter's ``+TERM``), so that an ack that returned has been applied.
            One round trip per batch, never per message. Default true; false sends every
            ack without waiting.

    The remaining fields come from the URL: `servers`, `tls`, `user`, `password`, `token`.
    Stream options apply when conveyor creates a stream; an existing stream (or consumer)
    whose configuration differs raises `conveyor.errors.ConfigConflictError`.
    """

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    tls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None
    name: str = "conveyor"
    connect_timeout: float = 2.0
    reconnect_wait: float = 2.0
    max_reconnect_attempts: int = -1
    request_timeout: float = 5.0
    subject_prefix: str = "conveyor"
    stream_prefix: str = ""
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    max_age: float = 0.0
    max_msgs: int = -1
    maxlen: int | None = None
    max_bytes: int = -1
    duplicate_window: float = 120.0
    ack_wait: float = 30.0
    max_deliver_margin: int = 3
    max_ack_pending: int = 1000
    group_check_interval: float = 5.0
    ack_confirm: bool = True

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> NatsSettings:
        """Build settings from a URL without query string plus its options.

        Raises:
            ConfigurationError: a malformed URL, an unknown option (the message lists the
                valid ones) or an out-of-range value.
        """
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("nats", "tls"):
            raise ConfigurationError(
                f"not a NATS URL: {redact_url(url)!r} (expected nats://host:port or tls://...)"
            )
        netloc = rest.split("/", 1)[0].split("?", 1)[0]
        userinfo, at, hosts = netloc.rpartition("@")
        user = password = token = None
        if at:
            name, colon, secret = userinfo.partition(":")
            if colon:
                user, password = unquote(name), unquote(secret)
            else:
                token = unquote(name)
        servers = tuple(_server(scheme, host, url) for host in (hosts or "127.0.0.1").split(","))
        kwargs = parse_url_options(scheme, cls, options, exclude=_URL_PARTS)
        wants_tls = scheme == "tls" or any(
            kwargs.get(k) is not None for k in ("tls_ca", "tls_cert", "tls_key", "tls_hostname")
        )
        settings = cls(
            servers=servers, tls=wants_tls, user=user, password=password, token=token, **kwargs
        )
        settings._validate()
        return settings

    def __post_init__(self) -> None:
        """`maxlen` becomes `max_msgs` (the JetStream limit)."""
        if self.maxlen is None:
            return
        if self.maxlen < 1:
            raise ConfigurationError(f"nats:// option maxlen={self.maxlen!r}: must be >= 1")
        if self.max_msgs not in (-1, self.maxlen):
            raise ConfigurationError(
                f"nats:// options maxlen={self.maxlen} and max_msgs={self.max_msgs} disagree:"
                " maxlen is another name for max_msgs, give one of them"
            )
        object.__setattr__(self, "max_msgs", self.maxlen)

    def _validate(self) -> None:
        def bad(option: str, why: str) -> ConfigurationError:
            value = getattr(self, option)
            return ConfigurationError(f"nats:// option {option}={value!r}: {why}")

        for option in ("connect_timeout", "request_timeout", "ack_wait", "group_check_interval"):
            if getattr(self, option) <= 0:
                raise bad(option, "must be > 0")
        for option in ("reconnect_wait", "max_age", "duplicate_window"):
            if getattr(self, option) < 0:
                raise bad(option, "must be >= 0")
        for option in ("max_reconnect_attempts", "max_msgs", "max_bytes", "max_deliver_margin"):
            value = getattr(self, option)
            if value < -1 or (option == "max_msgs" and value == 0):
                raise bad(option, "must be -1 (unlimited) or a positive number")
        if not 1 <= self.replicas <= 5:
            raise bad("replicas", "must be between 1 and 5")
        if self.max_ack_pending < 1:
            raise bad("max_ack_pending", "must be >= 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("nats:// options tls_cert and tls_key go together")
        validate_prefix(self.subject_prefix, option="subject_prefix", dotted=True)
        validate_prefix(self.stream_prefix, option="stream_prefix", dotted=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to connect with, or None for plain TCP."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert is not None and self.tls_key is not None:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def redacted_servers(self) -> str:
        """The server list for logs and reprs (credentials are never part of it)."""
        return ",".join(self.servers)


def _server(scheme: str, host: str, url: str) -> str:
    host = host.strip()
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        hostname = None
        port = None
    if not hostname:
        raise ConfigurationError(f"bad host {host!r} in NATS URL {redact_url(url)!r}")
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{port or 4222}"
