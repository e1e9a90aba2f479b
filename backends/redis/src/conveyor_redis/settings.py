"""`RedisSettings`: everything a ``redis://`` URL can say, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from conveyor.errors import ConfigurationError
from conveyor.options import option_names as _option_names
from conveyor.options import parse_url_options

__all__ = ["SCHEMES", "RedisSettings"]

#: URL schemes this backend opens.
SCHEMES = (
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)

_URL_PARTS = ("scheme", "hosts", "db", "username", "password", "service_name")


@dataclass(frozen=True)
class RedisSettings:
    """Options of ``redis://[user:password@]host[:port][/db][?option=value&...]``.

    ``rediss://`` connects with TLS. ``redis+cluster://host:port,host:port`` (and
    ``rediss+cluster://``) opens a Redis Cluster client seeded with those nodes; there the
    database must be 0 and stream keys get a hash tag (see the README).
    ``redis+sentinel://host:26379,host2:26379/service_name[/db]`` (and
    ``rediss+sentinel://``) asks those Sentinels for the primary of `service_name` and
    follows it through failovers.

    URL parts (not options): `scheme`, `hosts` (``(host, port)`` pairs, default
    ``localhost:6379``, Sentinels' default port 26379), `db` (the path, default 0),
    `service_name` (Sentinel URLs), `username` and `password` (never shown in reprs, logs
    or errors).

    Query options:
        key_prefix: Prepended to every stream name to form the Redis key, so that several
            applications can share one Redis (``key_prefix=app1:``). Default none.
        maxlen: Cap each stream at about this many entries when publishing (``XADD
            MAXLEN ~``); None (default) keeps everything. Pending entries trimmed away
            are acknowledged and logged when a consumer meets them.
        exact_maxlen: Trim exactly (``MAXLEN =`` / ``MINID =``) instead of the cheaper
            approximate trim, which removes whole macro nodes only (100 entries by
            default). Applies to `max_age` too. Default false.
        max_age: Seconds an entry is kept: each publish trims entries older than that
            (``XADD ... MINID ~ <now - max_age>``, Redis 6.2+; with `maxlen` too, an
            ``XTRIM ... MINID`` follows the ``XADD``). None (default) keeps everything.
            The threshold comes from this client's clock, entry ids from the server's.
        ack_delete: Acknowledge with ``XACKDEL ... ACKED`` (Redis 8.2+): an entry is
            deleted from the stream once every group of the stream acknowledged it.
            Checked when the backend opens: an older server raises
            `ConfigurationError`. Default false.
        max_block: Longest single ``XREADGROUP ... BLOCK`` in seconds (default 1.0); a
            longer `block` asked by the engine is cut to this. Must stay well below
            `socket_timeout` so that an idle blocking read is never taken for a dead
            connection.
        socket_timeout: Seconds to wait for any reply before the connection counts as
            lost (default 10.0; redis-py's own default is 5 s since 8.0).
        socket_connect_timeout: Seconds to wait for a TCP/TLS connection (default 5.0).
        retries: How many times redis-py retries a command other than a read or claim
            after a connection error, with exponential backoff and jitter (default 3).
            Reads and claims are never retried by the client: a lost reply's entries
            stay in the consumer's pending list and are re-read from there.
        max_connections: Connections per pool (default 100; the backend has two pools,
            one for reads and claims and one for everything else; on a cluster, per node).
            When all are busy, callers wait for one to be free instead of failing, so any
            number of concurrent publishes succeeds; raise it above the number of
            consumers that read through one backend at once, or their blocking reads
            queue behind each other.
        client_name: ``CLIENT SETNAME`` for the connections (default ``conveyor``).
        sentinel_username: User for the Sentinels themselves (Sentinel URLs; the URL's
            user part authenticates to the Redis servers).
        sentinel_password: Password for the Sentinels (never shown).
        wait_replicas: After each publish (and dead letter), ``WAIT`` until this many
            replicas confirmed the write, at most `wait_timeout` seconds; fewer raises
            `BrokerUnavailableError` (the entry is on the primary: a retry may duplicate
            it). 0 (default): do not wait. With Sentinel failover, 1 keeps a confirmed
            publish from being lost when the primary dies before replicating it.
        wait_timeout: Seconds `wait_replicas` waits (default 1.0).
        max_message_bytes: Largest entry (all its fields, headers included) a publish
            may write; a larger one raises `PayloadTooLargeError` before anything is
            sent. None (default): the server's ``proto-max-bulk-len`` (asked once;
            512 MiB where ``CONFIG GET`` is not allowed).
        payload_format: How publishes write payloads. ``json`` (default): the whole
            payload as JSON in one ``conveyor.payload`` field (the fastest to write and
            read). ``fields``: one Redis field per payload key, non-string values as
            ``json:``-prefixed JSON: the old module's codec, for streams that its
            consumers still read. Both formats are always accepted when reading.
        ssl_cert_reqs: TLS certificate check for ``rediss://``: ``required`` (default),
            ``optional`` or ``none``.
        ssl_ca_certs: CA bundle file for ``rediss://``.
        ssl_certfile: Client certificate file for ``rediss://``.
        ssl_keyfile: Client key file for ``rediss://``.
        ssl_check_hostname: Check the server's host name against its certificate
            (default true when certificates are required).
    """

    scheme: str = "redis"
    hosts: tuple[tuple[str, int], ...] = (("localhost", 6379),)
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service_name: str | None = None

    key_prefix: str = ""
    maxlen: int | None = None
    exact_maxlen: bool = False
    max_age: float | None = None
    ack_delete: bool = False
    max_block: float = 1.0
    socket_timeout: float = 10.0
    socket_connect_timeout: float = 5.0
    retries: int = 3
    max_connections: int = 100
    client_name: str | None = "conveyor"
    payload_format: Literal["fields", "json"] = "json"
    max_message_bytes: int | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigurationError(
                f"not a Redis URL scheme: {self.scheme}:// (expected one of"
                f" {', '.join(s + '://' for s in SCHEMES)})"
            )
        if not self.hosts:
            raise ConfigurationError(f"{self.scheme}:// URL names no host")
        if self.cluster and self.db != 0:
            raise ConfigurationError(f"{self.scheme}:// supports database 0 only, not {self.db}")
        if self.db < 0:
            raise ConfigurationError(f"{self.scheme}:// database must be >= 0, not {self.db}")
        if self.maxlen is not None and self.maxlen < 1:
            raise ConfigurationError(f"{self.scheme}:// option maxlen={self.maxlen}: must be >= 1")
        if self.max_age is not None and not self.max_age > 0:
            raise ConfigurationError(f"{self.scheme}:// option max_age={self.max_age}: must be > 0")
        if not self.max_block > 0:
            raise ConfigurationError(
                f"{self.scheme}:// option max_block={self.max_block}: must be > 0"
            )
        if self.socket_timeout < self.max_block + 1.0:
            raise ConfigurationError(
                f"{self.scheme}:// option socket_timeout={self.socket_timeout} must exceed"
                f" max_block={self.max_block} by at least 1 second: a blocking read would"
                " otherwise time out as a lost connection"
            )
        if self.socket_connect_timeout <= 0:
            raise ConfigurationError(
                f"{self.scheme}:// option socket_connect_timeout="
                f"{self.socket_connect_timeout}: must be > 0"
            )
        if self.retries < 0:
            raise ConfigurationError(
                f"{self.scheme}:// option retries={self.retries}: must be >= 0"
            )
        if self.sentinel and not self.service_name:
            raise ConfigurationError(f"{self.scheme}:// needs a service name")
        if self.wait_replicas < 0:
            raise ConfigurationError(
                f"{self.scheme}:// option wait_replicas={self.wait_replicas}: must be >= 0"
            )
        if not self.wait_timeout > 0:
            raise ConfigurationError(
                f"{self.scheme}:// option wait_timeout={self.wait_timeout}: must be > 0"
            )
        if self.max_message_bytes is not None and self.max_message_bytes < 1:
            raise ConfigurationError(
                f"{self.scheme}:// option max_message_bytes={self.max_message_bytes}: must be >= 1"
            )
        if self.max_connections < 2:
            raise ConfigurationError(
                f"{self.scheme}:// option max_connections={self.max_connections}: must be >= 2"
            )

    def __repr__(self) -> str:
        return f"RedisSettings({self.safe_url!r})"

    @property
    def cluster(self) -> bool:
        """True for ``redis+cluster://`` and ``rediss+cluster://``."""
        return self.scheme.endswith("+cluster")

    @property
    def sentinel(self) -> bool:
        """True for ``redis+sentinel://`` and ``rediss+sentinel://``."""
        return self.scheme.endswith("+sentinel")

    @property
    def tls(self) -> bool:
        """True for ``rediss://`` and ``rediss+cluster://``."""
        return self.scheme.startswith("rediss")

    @property
    def safe_url(self) -> str:
        """The URL with the password replaced by ``***`` (for logs and reprs)."""
        auth = ""
        if self.username or self.password:
            auth = (self.username or "") + (":***" if self.password else "") + "@"
        hosts = ",".join(f"{host}:{port}" for host, port in self.hosts)
        service = f"{self.service_name}/" if self.sentinel else ""
        return f"{self.scheme}://{auth}{hosts}/{service}{self.db}"

    def key(self, stream: str) -> str:
        """The Redis key of conveyor stream `stream`.

        On a cluster the key carries a hash tag, so that a stream and the dead-letter
        streams derived from its name (``<stream>.<anything>`` or ``<stream>:<anything>``
        ...) land in one slot: the tag is the name up to its first ``.`` or ``:``, unless
        the name holds an explicit ``{tag}`` already.
        """
        if not self.cluster or ("{" in stream and "}" in stream.split("{", 1)[1]):
            return self.key_prefix + stream
        cut = min((i for i in (stream.find("."), stream.find(":")) if i > 0), default=len(stream))
        return f"{self.key_prefix}{{{stream[:cut]}}}{stream[cut:]}"

    @classmethod
    def option_names(cls) -> list[str]:
        """The query options a URL may carry."""
        return _option_names(cls, _URL_PARTS)

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any] | None = None) -> RedisSettings:
        """Build settings from a URL (without query string) and its options.

        Raises:
            ConfigurationError: a malformed URL, an unknown option (the message lists the
                valid ones) or an invalid value. Messages never include the password.
        """
        if "?" in url:
            raise ConfigurationError(
                "pass query options separately (conveyor.options.split_options)"
            )
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep:
            raise ConfigurationError("not a Redis URL: expected redis://host[:port][/db]")
        kwargs = parse_url_options(scheme, cls, options or {}, exclude=_URL_PARTS)
        netloc, _, path = rest.partition("/")
        userinfo, at, hostlist = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        default_port = 26379 if scheme.endswith("+sentinel") else 6379
        hosts = tuple(
            _host_port(scheme, item, default_port) for item in hostlist.split(",") if item
        )
        service_name = None
        if scheme.endswith("+sentinel"):
            service, _, path = path.strip("/").partition("/")
            service_name = unquote(service)
            if not service_name:
                raise ConfigurationError(
                    f"{scheme}:// URL names no service: expected"
                    f" {scheme}://host:26379[,host:port...]/service_name[/db]"
                )
        db_text = unquote(path.strip("/"))
        try:
            db = int(db_text) if db_text else 0
        except ValueError:
            raise ConfigurationError(
                f"{scheme}:// URL path must be a database number, not {db_text!r}"
            ) from None
        return cls(
            scheme=scheme,
            hosts=hosts or (("localhost", default_port),),
            db=db,
            username=username,
            password=password,
            service_name=service_name,
            **kwargs,
        )


def _host_port(scheme: str, item: str, default_port: int = 6379) -> tuple[str, int]:
    parts = urlsplit(f"//{item}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{scheme}:// URL has an invalid port in {item!r}") from None
    host = parts.hostname
    if not host:
        raise ConfigurationError(f"{scheme}:// URL has an empty host in {item!r}")
    return host, port or default_port
