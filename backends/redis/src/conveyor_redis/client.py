"""redis-py clients as the backend wants them, and the server version check."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from conveyor_redis.settings import RedisSettings

__all__ = ["Client", "make_client", "server_version"]

#: Commands whose replies are parsed here rather than by redis-py's callbacks.
_RAW_COMMANDS = ("XREADGROUP", "XAUTOCLAIM", "XCLAIM", "XPENDING", "XRANGE", "XREVRANGE", "XADD")

Client = Redis | RedisCluster


def _raw(response: Any, **options: Any) -> Any:
    """Keep a reply as hiredis built it (the backend parses stream replies itself)."""
    return response


def make_client(settings: RedisSettings, *, retries: int) -> Client:
    """A redis-py asyncio client for `settings` (RESP2, str replies, hiredis when installed)."""
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
    if settings.max_connections is not None:
        common["max_connections"] = settings.max_connections
    if settings.tls:
        common.update(
            ssl=True,
            ssl_cert_reqs=settings.ssl_cert_reqs,
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
        )
        if settings.ssl_check_hostname is not None:
            common["ssl_check_hostname"] = settings.ssl_check_hostname
    client: Client
    if settings.cluster:
        nodes = [ClusterNode(host, port) for host, port in settings.hosts]
        client = RedisCluster(startup_nodes=nodes, **common)
    else:
        host, port = settings.hosts[0]
        client = Redis(host=host, port=port, db=settings.db, **common)
    for command in _RAW_COMMANDS:
        client.set_response_callback(command, _raw)
    return client


def server_version(info: dict[str, Any]) -> tuple[int, ...]:
    """``redis_version`` of an ``INFO server`` reply (a cluster's: the lowest of its nodes)."""
    versions = []
    for source in [info, *[v for v in info.values() if isinstance(v, dict)]]:
        text = source.get("redis_version")
        if text is not None:
            versions.append(tuple(int(p) for p in str(text).split(".")[:3] if p.isdigit()))
    return min(versions, default=(0,))
