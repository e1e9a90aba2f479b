"""RedisSettings: every URL option documented, validated, and credentials kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import ConfigurationError
from conveyor_redis import RedisSettings
from conveyor_redis.settings import SCHEMES

README = Path(__file__).parents[2] / "backends" / "redis" / "README.md"


def test_defaults_and_url_parts() -> None:
    settings = RedisSettings.from_url("redis://example.com:6380/3", {})
    assert settings.hosts == (("example.com", 6380),)
    assert settings.db == 3
    assert settings.key_prefix == ""
    assert settings.maxlen is None
    assert settings.tls is False
    assert settings.cluster is False
    assert settings.socket_timeout > settings.max_block
    assert settings.max_connections == 100  # per pool, callers wait beyond it
    assert settings.payload_format == "json"  # `fields` for the old module's readers
    assert RedisSettings.from_url("redis://", {}).hosts == (("localhost", 6379),)
    assert RedisSettings.from_url("redis://h", {}).db == 0


def test_query_options_are_converted() -> None:
    settings = RedisSettings.from_url(
        "rediss://h/0",
        {
            "key_prefix": "app1:",
            "maxlen": "1000",
            "exact_maxlen": "yes",
            "max_block": "0.5",
            "socket_timeout": "3",
            "socket_connect_timeout": "2",
            "retries": "0",
            "max_connections": "20",
            "client_name": "svc",
            "payload_format": "json",
            "ssl_cert_reqs": "none",
            "ssl_ca_certs": "/ca.pem",
            "ssl_check_hostname": "false",
        },
    )
    assert settings.tls is True
    assert (settings.key_prefix, settings.maxlen, settings.exact_maxlen) == ("app1:", 1000, True)
    assert (settings.max_block, settings.socket_timeout, settings.retries) == (0.5, 3.0, 0)
    assert settings.payload_format == "json"
    assert settings.ssl_cert_reqs == "none"
    assert settings.ssl_check_hostname is False
    assert settings.key("orders") == "app1:orders"


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        RedisSettings.from_url("redis://h", {"maxlenn": "5"})
    message = str(info.value)
    assert "maxlenn" in message
    for name in ("maxlen", "key_prefix", "max_block", "socket_timeout"):
        assert name in message
    listed = message.rsplit(":", 1)[1].replace(" ", "").split(",")
    assert "password" not in listed  # URL parts are not options
    assert "service_name" not in listed


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"maxlen": "many"}, "maxlen"),
        ({"maxlen": "0"}, "maxlen"),
        ({"max_block": "0"}, "max_block"),
        ({"max_block": "5", "socket_timeout": "5"}, "socket_timeout"),
        ({"socket_connect_timeout": "0"}, "socket_connect_timeout"),
        ({"retries": "-1"}, "retries"),
        ({"max_connections": "1"}, "max_connections"),
        ({"payload_format": "xml"}, "payload_format"),
        ({"ssl_cert_reqs": "maybe"}, "ssl_cert_reqs"),
        ({"exact_maxlen": "perhaps"}, "exact_maxlen"),
    ],
)
def test_invalid_values(options: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        RedisSettings.from_url("redis://h", options)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://h/zero", "database"),
        ("redis://h:port/0", "port"),
        ("http://h", "scheme"),
        ("redis+cluster://a:1,b:2/1", "database 0"),
        ("redis://h/0?maxlen=1", "query"),
    ],
)
def test_invalid_urls(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        RedisSettings.from_url(url, {})


def test_password_never_in_repr_or_errors() -> None:
    settings = RedisSettings.from_url("redis://alice:pa%40ss-w0rd@h:1/2", {})
    assert (settings.username, settings.password) == ("alice", "pa@ss-w0rd")
    for text in (repr(settings), settings.safe_url, str(settings)):
        assert "pa@ss" not in text
        assert "pa%40ss" not in text
    assert settings.safe_url == "redis://alice:***@h:1/2"
    with pytest.raises(ConfigurationError) as info:
        RedisSettings.from_url("redis://alice:pa%40ss-w0rd@h:1/x", {"nope": "1"})
    assert "pa@ss" not in str(info.value)
    token_only = RedisSettings.from_url("redis://:token@h", {})
    assert token_only.password == "token"
    assert "token" not in repr(token_only)


def test_cluster_hosts_and_hash_tags() -> None:
    settings = RedisSettings.from_url("redis+cluster://a:7000,b:7001,c", {"key_prefix": "p:"})
    assert settings.cluster is True
    assert settings.hosts == (("a", 7000), ("b", 7001), ("c", 6379))
    assert settings.key("orders") == "p:{orders}"
    assert settings.key("orders.dead") == "p:{orders}.dead"
    assert settings.key("events:bot") == "p:{events}:bot"
    assert settings.key("events:bot.dead") == "p:{events}:bot.dead"
    assert settings.key("a.b-c_d") == "p:{a}.b-c_d"
    assert settings.key("x{tag}y") == "p:x{tag}y"  # an explicit tag is kept
    assert RedisSettings.from_url("redis://h", {}).key("orders.dead") == "orders.dead"


def test_every_option_is_documented() -> None:
    doc = RedisSettings.__doc__ or ""
    readme = README.read_text()
    for name in RedisSettings.option_names():
        assert f"{name}:" in doc, name
        assert f"`{name}`" in readme, name
    for scheme in SCHEMES:
        assert f"{scheme}://" in readme
