"""Name mapping, URL settings and the error table of conveyor_nats (no server needed)."""

from __future__ import annotations

import asyncio
import random
import string

import nats.errors
import nats.js.errors
import pytest

import conveyor_nats
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    ConfigConflictError,
    ConfigurationError,
    GroupNotFoundError,
)
from conveyor_nats import ERRORS, NatsSettings, escape_name, unescape_name

# Characters JetStream refuses in stream/consumer names or subject tokens.
_FORBIDDEN = set(">*. /\\\t\r\n") | set(string.whitespace)

_SAMPLES = [
    "events:bot",
    "a.b-c_d",
    "with space/and#hash",
    "orders",
    "~",
    "~7E",
    "a~b",
    "*",
    ">",
    "a.*.>",
    "заказы",
    "日本語🚀",
    "👩‍💻",
    "tab\there",
    "new\nline",
    "UPPER_lower-09",
    "$JS.API",
    "%41",
]


def _random_name(rng: random.Random) -> str:
    alphabet = string.printable + "~.:*>/\\ äöü€日本🚀\u200d\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))


def test_public_api() -> None:
    assert set(conveyor_nats.__all__) == {
        "CAPABILITIES",
        "ERRORS",
        "NatsBackend",
        "NatsSession",
        "NatsSettings",
        "open_backend",
        "escape_name",
        "unescape_name",
    }


@pytest.mark.parametrize("name", _SAMPLES)
def test_escape_round_trips_and_is_valid(name: str) -> None:
    escaped = escape_name(name)
    assert unescape_name(escaped) == name
    assert not set(escaped) & _FORBIDDEN
    assert escaped.isascii()


def test_escape_examples() -> None:
    assert escape_name("orders") == "orders"
    assert escape_name("events:bot") == "events~3Abot"
    assert escape_name("a.b-c_d") == "a~2Eb-c_d"
    assert escape_name("~") == "~7E"


def test_escape_is_injective_and_reversible_over_many_names() -> None:
    rng = random.Random(20261128)
    names = {_random_name(rng) for _ in range(5000)} | set(_SAMPLES)
    escaped = {escape_name(n) for n in names}
    assert len(escaped) == len(names)  # no collisions
    for name in names:
        token = escape_name(name)
        assert unescape_name(token) == name
        assert not set(token) & _FORBIDDEN


@pytest.mark.parametrize("bad", ["", "~", "~4", "~zz", "a.b", "~41", "~FF", "a b"])
def test_unescape_rejects_what_escape_never_produces(bad: str) -> None:
    with pytest.raises(ValueError, match="escaped"):
        unescape_name(bad)


def test_escape_rejects_empty_and_too_long_names() -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):
        escape_name("")
    with pytest.raises(ConfigurationError, match="limit"):
        escape_name("日" * 100)  # 900 characters escaped
    with pytest.raises(ConfigurationError, match="Unicode"):
        escape_name("\ud800")


def test_settings_from_a_cluster_url_with_credentials() -> None:
    settings = NatsSettings.from_url(
        "nats://alice:s%40cret@n1:4222,n2,[::1]:4333", {"ack_wait": "12.5", "replicas": 3}
    )
    assert settings.servers == ("nats://n1:4222", "nats://n2:4222", "nats://[::1]:4333")
    assert (settings.user, settings.password, settings.token) == ("alice", "s@cret", None)
    assert settings.ack_wait == 12.5
    assert settings.replicas == 3
    assert settings.tls is False
    assert "s@cret" not in repr(settings)


def test_settings_token_and_tls() -> None:
    settings = NatsSettings.from_url("tls://tok3n@broker.example:4443", {})
    assert settings.token == "tok3n"
    assert settings.user is None
    assert settings.tls is True
    assert settings.servers == ("tls://broker.example:4443",)
    assert "tok3n" not in repr(settings)
    assert NatsSettings.from_url("nats://h", {"tls_hostname": "x"}).tls is True


def test_settings_defaults() -> None:
    settings = NatsSettings.from_url("nats://", {})
    assert settings.servers == ("nats://127.0.0.1:4222",)
    assert settings.subject_prefix == "conveyor"
    assert settings.stream_prefix == ""
    assert settings.max_reconnect_attempts == -1


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"valid options: .*ack_wait.*creds"):
        NatsSettings.from_url("nats://h", {"ackwait": "1"})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ack_wait": "0"}, "ack_wait"),
        ({"ack_wait": "soon"}, "expected float"),
        ({"replicas": "7"}, "replicas"),
        ({"storage": "disk"}, "storage"),
        ({"subject_prefix": "a.*"}, "subject_prefix"),
        ({"subject_prefix": "a..b"}, "subject_prefix"),
        ({"stream_prefix": "a.b"}, "stream_prefix"),
        ({"tls_cert": "c.pem"}, "tls_key"),
        ({"max_msgs": "0"}, "max_msgs"),
        ({"password": "x"}, "unknown option"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        NatsSettings.from_url("nats://h", options)


@pytest.mark.parametrize("url", ["redis://h", "nats://user:pw@h:99999", "nats://user:pw@h:port"])
def test_bad_urls_are_rejected_without_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        NatsSettings.from_url(url, {})
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (nats.js.errors.NotFoundError(code=404, err_code=10059), GroupNotFoundError),
        (nats.js.errors.NotFoundError(code=404, err_code=10014), GroupNotFoundError),
        (nats.js.errors.BadRequestError(code=400, err_code=10058), ConfigConflictError),
        (nats.js.errors.BadRequestError(code=400, err_code=10148), ConfigConflictError),
        (nats.js.errors.BadRequestError(code=400, err_code=10065), ConfigConflictError),
        (nats.js.errors.BadRequestError(code=400, err_code=10013), ConfigConflictError),
        (nats.js.errors.ServerError(code=500, err_code=10012), BackendError),
        (nats.js.errors.NotFoundError(code=404, err_code=10037), BackendError),
        (nats.js.errors.ServiceUnavailableError(code=503), BrokerUnavailableError),
        (nats.js.errors.NoStreamResponseError(), GroupNotFoundError),
        (nats.js.errors.TooManyStalledMsgsError(), BrokerUnavailableError),
        (nats.errors.NoRespondersError(), GroupNotFoundError),
        (nats.errors.TimeoutError(), BrokerUnavailableError),
        (nats.errors.ConnectionClosedError(), BrokerUnavailableError),
        (nats.errors.NoServersError(), BrokerUnavailableError),
        (nats.errors.UnexpectedEOF(), BrokerUnavailableError),
        (nats.errors.BadHeaderError(), BackendError),
        (asyncio.TimeoutError(), BrokerUnavailableError),
        (ConnectionRefusedError(), BrokerUnavailableError),
    ],
)
def test_errors_by_code_and_class(exc: Exception, expected: type[Exception]) -> None:
    mapped = ERRORS.translate(exc, "doing it")
    assert type(mapped) is expected
    assert str(mapped).startswith("doing it")


def test_api_errors_keep_their_code_and_description() -> None:
    exc = nats.js.errors.NotFoundError(code=404, err_code=10059, description="stream not found")
    assert "err_code=10059" in str(ERRORS.translate(exc, "read"))
    assert "stream not found" in str(ERRORS.translate(exc, "read"))


def test_mapping_raises_conveyor_errors_and_closed_after_close() -> None:
    with pytest.raises(GroupNotFoundError), ERRORS.mapping("read"):
        raise nats.js.errors.NotFoundError(code=404, err_code=10014)
    with pytest.raises(BackendClosedError), ERRORS.mapping("read", closed=lambda: True):
        raise nats.errors.ConnectionClosedError
    with pytest.raises(KeyError), ERRORS.mapping("read"):  # not a client error: untouched
        raise KeyError("x")
