"""redis-py clients as the backend wants them, their connection limit, and the server
version check.

Callers wait for a connection rather than fail: redis-py 8's asyncio pools raise
``MaxConnectionsError`` past ``max_connections`` (100 by default) instead of waiting. Every
call goes through a `Pool`, whose `Gate` of ``max_connections`` places queues commands and
pipelines before they reach the client. Each call in flight holds one connection (per node
on a cluster) and returns it before it leaves the gate, so the client's own pool never
needs more. The same gate serves redis-py's asyncio ``RedisCluster``, which has no waiting
pool at all. On one server it costs far less per command than redis-py's
``BlockingConnectionPool`` (a lock, a timeout and a condition on every checkout) or an
``asyncio.Semaphore``: while a place is free, entering it neither suspends nor allocates.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor.gate import Gate
from conveyor.timeouts import within
from conveyor_redis.errors import (
    ERRORS,
    HandshakeTimeoutError,
    NotRedisServerError,
    SentinelHandshakeTimeoutError,
)
from conveyor_redis.settings import RedisSettings

__all__ = [
    "Client",
    "Gate",
    "Pool",
    "handshake",
    "make_pool",
    "pack_args",
    "sentinel_handshake",
    "server_version",
]

#: Commands whose replies are parsed here rather than by redis-py's callbacks.
_RAW_COMMANDS = ("XREADGROUP", "XAUTOCLAIM", "XCLAIM", "XPENDING", "XRANGE", "XREVRANGE", "XADD")

Client = Redis | RedisCluster


def _raw(response: Any, **options: Any) -> Any:
    """Keep a reply as hiredis built it (the backend parses stream replies itself)."""
    return response


class Pool:
    """A redis-py client whose callers wait for a free connection instead of failing.

    Args:
        client: ``Redis`` or ``RedisCluster``.
        size: Calls in flight at most (the client's pool must allow that many
            connections, per node on a cluster).
    """

    __slots__ = ("_gate", "_helpers", "client")

    def __init__(self, client: Client, size: int, helpers: tuple[Redis, ...] = ()) -> None:
        self.client = client
        self._gate = Gate(size)
        self._helpers = helpers  # clients the pool's client relies on (Sentinels)

    async def command(self, *args: Any) -> Any:
        """Run one command; its reply. Client errors are raised as they are: callers map
        them with ``ERRORS.mapping`` (group creation looks at ``BUSYGROUP`` first)."""
        gate = self._gate
        if not gate.try_enter():
            await gate.enter()
        try:
            return await self.client.execute_command(*args)
        finally:
            gate.leave()

    def pipeline(self, *, transaction: bool = False) -> Pipeline | ClusterPipeline:
        """A new pipeline (``MULTI``/``EXEC`` when `transaction`), to hand to `run`."""
        return self.client.pipeline(transaction=transaction)

    async def run(
        self,
        pipe: Pipeline | ClusterPipeline,
        action: str,
        closed: Callable[[], bool] | None = None,
    ) -> list[Any]:
        """Run a pipeline of this pool's client; the replies in order.

        Raises:
            ConveyorError: the first failed command's error, mapped by `ERRORS` (as is
                any client error around the call, see ``ERRORS.mapping`` for `closed`)
                with `action` as its context.
        """
        gate = self._gate
        with ERRORS.mapping(action, closed=closed):
            if not gate.try_enter():
                await gate.enter()
            try:
                results: list[Any] = await pipe.execute(raise_on_error=False)
            finally:
                gate.leave()
        for result in results:
            if isinstance(result, Exception):
                raise ERRORS.translate(result, action) from result
        return results

    @property
    def packs(self) -> bool:
        """True when `run_packed` can be used (one server, not a cluster)."""
        return isinstance(self.client, Redis)

    async def run_packed(self, packed: bytes, count: int, action: str) -> list[Any]:
        """Send `count` commands already packed in RESP (`pack_args`) on one connection,
        in one write, and read their replies in order (one server only: `packs`).

        A pipeline without redis-py's per-command work: it packs every argument of
        every command in Python and arms a timer for every reply, which costs more than
        the server's work on an ``XADD``. Here the commands arrive packed and the
        replies are read under one `socket_timeout` for all of them. Connection errors
        are retried as redis-py retries a pipeline (the commands may then run twice).

        Raises:
            ConveyorError: as `run`.
        """
        client = self.client
        if not isinstance(client, Redis):
            raise TypeError("run_packed needs a single server's client (see `packs`)")
        pool = client.connection_pool
        gate = self._gate
        with ERRORS.mapping(action):
            if not gate.try_enter():
                await gate.enter()
            try:
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]
                try:
                    replies: list[Any] = await connection.retry.call_with_retry(
                        lambda: _exchange(connection, packed, count),
                        lambda error: connection.disconnect(),
                    )
                finally:
                    await pool.release(connection)
            finally:
                gate.leave()
        for reply in replies:
            if isinstance(reply, Exception):
                raise ERRORS.translate(reply, action) from reply
        return replies

    async def info(self, section: str) -> dict[str, Any]:
        """``INFO section``, parsed (a cluster's: one dict per node)."""
        gate = self._gate
        if not gate.try_enter():
            await gate.enter()
        try:
            return await self.client.info(section)
        finally:
            gate.leave()

    async def aclose(self) -> None:
        """Close the client and its connections (and the Sentinel clients)."""
        try:
            await self.client.aclose()
        finally:
            for helper in self._helpers:
                await helper.aclose()


async def _exchange(connection: AbstractConnection, packed: bytes, count: int) -> list[Any]:
    """Write `packed`, then read `count` replies (error replies as exceptions), all
    within the connection's socket timeout.

    Both run under `within`, not under redis-py's own ``asyncio.wait_for`` (its write
    uses one) alone: on Python 3.10/3.11 that returns instead of raising when the caller
    is cancelled as the write completes, and a cancelled publish loop went on."""

    async def exchange() -> list[Any]:
        await connection.send_packed_command(packed)
        replies: list[Any] = []
        for _ in range(count):
            try:  # math.inf: no timer per reply (redis-py 8); `within` bounds them all
                replies.append(await connection.read_response(timeout=math.inf))
            except ResponseError as exc:  # read_response raises error replies
                replies.append(exc)
        return replies

    try:
        return await within(exchange(), connection.socket_timeout)
    except asyncio.TimeoutError:  # read_response disconnected when it was cancelled
        raise RedisTimeoutError("Timeout reading pipelined replies") from None


async def handshake(connection: AbstractConnection) -> None:
    """redis-py's handshake of a new connection (``AUTH``/``HELLO``, ``CLIENT SETNAME``
    and ``SETINFO``, ``SELECT``) within ``socket_connect_timeout``.

    redis-py reads the handshake's replies with ``socket_timeout`` and retries a timeout
    as a lost connection, so a port that accepts connections and never answers held the
    first command for (1 + retries) x socket_timeout (40 s by default). Here the first
    contact fails once, within the connect timeout, with `HandshakeTimeoutError` (which
    redis-py does not retry), and a reply that is not RESP at all (another service on
    the port: NATS greets with ``INFO {...}``) with `NotRedisServerError`. Commands on
    the connection keep ``socket_timeout``. Passed to the clients as
    ``redis_connect_func``, which redis-py calls instead of ``on_connect`` once the
    TCP/TLS connection is up; it disconnects on any `RedisError` raised here.
    """
    await _bounded_handshake(connection, "a Redis server", HandshakeTimeoutError)


async def sentinel_handshake(connection: AbstractConnection) -> None:
    """`handshake` for the clients that ask the Sentinels: a silent one fails with
    `SentinelHandshakeTimeoutError`, a redis-py ``TimeoutError``, so that the discovery
    asks the next Sentinel (those clients do not retry by themselves)."""
    await _bounded_handshake(connection, "a Redis Sentinel", SentinelHandshakeTimeoutError)


async def _bounded_handshake(
    connection: AbstractConnection, what: str, timeout_error: type[RedisError]
) -> None:
    try:
        await within(connection.on_connect(), connection.socket_connect_timeout)
    except (asyncio.TimeoutError, RedisTimeoutError) as exc:
        # redis-py's own TimeoutError: its socket_timeout was the shorter of the two
        option = (
            "socket_timeout" if isinstance(exc, RedisTimeoutError) else "socket_connect_timeout"
        )
        raise timeout_error(
            f"{_address(connection)} accepted the connection but did not answer like"
            f" {what} within {getattr(connection, option)} s ({option})"
        ) from None
    except InvalidResponse as exc:
        raise NotRedisServerError(
            f"{_address(connection)} does not speak the Redis protocol (it answered: {exc})"
        ) from exc


def _address(connection: AbstractConnection) -> str:
    return _host_port(str(getattr(connection, "host", "?")), getattr(connection, "port", "?"))


def _host_port(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Sentinels(Sentinel):
    """redis-py's `Sentinel` whose failed discovery names each Sentinel by its address
    and says what went wrong there (redis-py's own text carries each Sentinel client's
    whole repr, a few hundred characters, and the errors' categories, not their texts)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        problems: list[str] = []
        for sentinel in list(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = _host_port(str(kwargs.get("host")), kwargs.get("port"))
            try:
                masters = await sentinel.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                text = str(exc)
                problems.append(text if where in text else f"{where}: {text}")
                continue
            except (ResponseError, InvalidResponse) as exc:  # a Redis server, another service
                problems.append(f"{where} is not a Sentinel ({exc})")
                continue
            state = masters.get(service_name) if isinstance(masters, dict) else None
            if state and self.check_master_state(state, service_name):
                # this one first from now on (looked up now: others may have moved meanwhile)
                index = self.sentinels.index(sentinel)
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return state["ip"], state["port"]
            known = "is down" if state else "is not monitored there"
            problems.append(f"{where}: the primary of {service_name!r} {known}")
        raise MasterNotFoundError(
            f"no Sentinel named a primary for {service_name!r}: {'; '.join(problems)}"
        )


def pack_args(head: Sequence[bytes], commands: Sequence[Sequence[bytes]]) -> bytes:
    """The RESP of one command per item of `commands`: `head` (packed once) followed by
    the item's arguments, all already bytes (nothing is encoded again)."""
    head_packed = b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in head)
    size = len(head)
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n%b" % (size + len(args), head_packed))
        for arg in args:
            append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


def make_pool(settings: RedisSettings, *, retries: int) -> Pool:
    """A `Pool` for `settings`: RESP2, str replies, hiredis when installed, at most
    ``settings.max_connections`` calls in flight and as many connections (per node on a
    cluster), callers waiting for one when all are busy."""
    retry = (
        Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries)
        if retries
        else Retry(NoBackoff(), 0)
    )
    common: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "decode_responses": True,
        "encoding_errors": "surrogateescape",  # undecodable bytes -> DecodeError per entry
        "protocol": 2,
        "retry": retry,
        "client_name": settings.client_name,
    }
    tls: dict[str, Any] = {}
    if settings.tls:
        tls = {
            "ssl_cert_reqs": settings.ssl_cert_reqs,
            "ssl_ca_certs": settings.ssl_ca_certs,
            "ssl_certfile": settings.ssl_certfile,
            "ssl_keyfile": settings.ssl_keyfile,
        }
        if settings.ssl_check_hostname is not None:
            tls["ssl_check_hostname"] = settings.ssl_check_hostname
    client: Client
    helpers: tuple[Redis, ...] = ()
    size = settings.max_connections
    if settings.cluster:
        nodes = [ClusterNode(host, port) for host, port in settings.hosts]
        # A cluster node hands a connection that needs reconnecting to a background task
        # on release; the cap leaves room for those, the gate keeps the calls at `size`.
        client = RedisCluster(
            startup_nodes=nodes, max_connections=2 * size, ssl=settings.tls, **common, **tls
        )
    elif settings.sentinel:
        sentinels = _Sentinels(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            list(settings.hosts),
            sentinel_kwargs={
                "username": settings.sentinel_username,
                "password": settings.sentinel_password,
                "socket_timeout": settings.socket_timeout,
                "socket_connect_timeout": settings.socket_connect_timeout,
                "redis_connect_func": sentinel_handshake,
                # each Sentinel asked once per discovery; the engine retries with backoff
                "retry": Retry(NoBackoff(), 0),
            },
        )
        client = sentinels.master_for(
            settings.service_name or "", redis_class=Redis, db=settings.db,
            max_connections=size, ssl=settings.tls, redis_connect_func=handshake, **common, **tls,
        )  # fmt: skip
        helpers = tuple(sentinels.sentinels)
    else:
        host, port = settings.hosts[0]
        client = Redis(
            host=host, port=port, db=settings.db, max_connections=size, ssl=settings.tls,
            redis_connect_func=handshake, **common, **tls,
        )  # fmt: skip
    for command in _RAW_COMMANDS:
        client.set_response_callback(command, _raw)
    # No deadline for the wait: each call holding a connection ends within socket_timeout
    # (times the retries), so the queue always moves.
    return Pool(client, size, helpers)


def server_version(info: dict[str, Any]) -> tuple[int, ...]:
    """``redis_version`` of an ``INFO server`` reply (a cluster's: the lowest of its nodes)."""
    versions = []
    for source in [info, *[v for v in info.values() if isinstance(v, dict)]]:
        text = source.get("redis_version")
        if text is not None:
            versions.append(tuple(int(p) for p in str(text).split(".")[:3] if p.isdigit()))
    return min(versions, default=(0,))
