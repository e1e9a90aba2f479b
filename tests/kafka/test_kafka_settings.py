"""KafkaSettings.from_url and the stream-name mapping (no broker needed)."""

from __future__ import annotations

import pytest

import conveyor_kafka
from conveyor.errors import ConfigurationError
from conveyor_kafka import KafkaSettings, stream_name, topic_name


def test_public_api() -> None:
    assert sorted(conveyor_kafka.__all__) == sorted(
        [
            "CAPABILITIES",
            "KafkaBackend",
            "KafkaSession",
            "KafkaSettings",
            "open_backend",
            "stream_name",
            "topic_name",
        ]
    )
    caps = conveyor_kafka.CAPABILITIES
    assert (caps.name, caps.redelivery, caps.claim, caps.blocking_read) == (
        "kafka",
        "engine",
        "broker",
        True,
    )
    assert conveyor_kafka.KafkaBackend.capabilities is caps


def test_hosts_ports_and_defaults() -> None:
    settings = KafkaSettings.from_url("kafka://a:9093,b,[::1]:9094", {})
    assert settings.bootstrap_servers == ("a:9093", "b:9092", "[::1]:9094")
    assert settings.partitions == 1
    assert settings.idempotent is True
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.group_ids == "per_stream"


def test_query_options_are_converted() -> None:
    settings = KafkaSettings.from_url(
        "kafka://h:1",
        {
            "partitions": "6",
            "replication_factor": "3",
            "fetch_max_wait_ms": "10",
            "idempotent": "false",
            "security_protocol": "SSL",
            "ssl_check_hostname": "no",
        },
    )
    assert settings.partitions == 6
    assert settings.replication_factor == 3
    assert settings.fetch_max_wait_ms == 10
    assert settings.idempotent is False
    assert settings.client_kwargs()["security_protocol"] == "SSL"
    assert settings.client_kwargs()["ssl_context"].check_hostname is False


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="partitions") as info:
        KafkaSettings.from_url("kafka://h:1", {"partitons": "3"})
    assert "partitons" in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"partitions": "0"},
        {"partitions": "x"},
        {"security_protocol": "TLS"},
        {"sasl_mechanism": "GSSAPI"},
        {"security_protocol": "SASL_SSL"},
    ],
)
def test_bad_values_are_rejected(options: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        KafkaSettings.from_url("kafka://h:1", options)


def test_credentials_from_the_url_never_show() -> None:
    settings = KafkaSettings.from_url(
        "kafka://alice:s%40cret@h:9092",
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
    )
    assert settings.sasl_username == "alice"
    assert settings.sasl_password == "s@cret"
    assert "s@cret" not in repr(settings)
    kwargs = settings.client_kwargs()
    assert kwargs["sasl_plain_password"] == "s@cret"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"


def test_session_timeout_follows_claim_idle_unless_set() -> None:
    default = KafkaSettings.from_url("kafka://h", {})
    assert default.session_timeout_for(None) == 10_000
    assert default.session_timeout_for(30.0) == 30_000
    assert default.session_timeout_for(0.5) == 6_000  # Kafka's minimum
    assert default.heartbeat_for(30_000) == 3_000
    fixed = KafkaSettings.from_url("kafka://h", {"session_timeout_ms": "2000"})
    assert fixed.session_timeout_for(30.0) == 2_000
    assert fixed.heartbeat_for(2_000) == 666


@pytest.mark.parametrize(
    ("stream", "topic"),
    [
        ("orders", "orders"),
        ("events:bot", "events_3abot"),
        ("a.b-c_d", "a.b-c_5fd"),
        ("with space/and#hash", "with_20space_2fand_23hash"),
        ("é", "_c3_a9"),
        (".", "_2e"),
        ("_5f", "_5f5f"),
    ],
)
def test_topic_names_are_valid_and_reversible(stream: str, topic: str) -> None:
    assert topic_name(stream) == topic
    assert stream_name(topic) == stream
    assert all((c.isalnum() and c.isascii()) or c in "._-" for c in topic)


def test_topic_name_limits() -> None:
    with pytest.raises(ConfigurationError):
        topic_name("")
    with pytest.raises(ConfigurationError):
        topic_name(":" * 100)


@pytest.mark.parametrize(
    ("group", "stream", "group_id"),
    [
        ("billing", "orders", "billing:orders"),
        ("billing", "events:bot", "billing:events_3abot"),
        ("a:b", "c", "a:b:c"),  # the topic never holds ':', so the split is unambiguous
        ("a", "b:c", "a:b_3ac"),
    ],
)
def test_group_ids_are_per_stream_by_default(group: str, stream: str, group_id: str) -> None:
    settings = KafkaSettings.from_url("kafka://h", {})
    assert settings.group_id(group, stream) == group_id
    assert group_id.rpartition(":") == (group, ":", topic_name(stream))


def test_group_ids_as_is_keep_the_group_name() -> None:
    settings = KafkaSettings.from_url("kafka://h", {"group_ids": "as_is"})
    assert settings.group_id("billing", "orders") == "billing"
    with pytest.raises(ConfigurationError, match="per_stream"):
        KafkaSettings.from_url("kafka://h", {"group_ids": "global"})


def test_the_topic_size_limit_is_read_from_a_describe_configs_reply() -> None:
    """Apache Kafka answers DescribeConfigs (Tansu does not, so this is the parser alone)."""
    from aiokafka.protocol.admin import DescribeConfigsResponse_v0, DescribeConfigsResponse_v1

    from conveyor_kafka.backend import _max_message_bytes

    v0 = DescribeConfigsResponse_v0(
        throttle_time_ms=0,
        resources=[(0, None, 2, "t", [("max.message.bytes", "2097152", False, False, False)])],
    )
    v1 = DescribeConfigsResponse_v1(
        throttle_time_ms=0,
        resources=[(0, None, 2, "t", [("max.message.bytes", "512", False, 5, False, [])])],
    )
    assert _max_message_bytes([v0]) == 2_097_152
    assert _max_message_bytes([v1]) == 512
    assert _max_message_bytes([]) is None
