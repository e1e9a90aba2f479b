"""``sqlite://`` URLs and options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import conveyor
from conveyor.errors import ConfigurationError
from conveyor.options import split_options
from conveyor_sqlite import SqliteBackend, SqliteSettings


def settings(url: str) -> SqliteSettings:
    base, options = split_options(url)
    return SqliteSettings.from_url(base, options)


def test_relative_and_absolute_paths() -> None:
    relative = settings("sqlite:///data/conveyor.db")
    assert relative.path == "data/conveyor.db"
    assert relative.file == os.path.join(os.getcwd(), "data", "conveyor.db")
    absolute = settings("sqlite:////var/lib/app/queue.db")
    assert absolute.path == "/var/lib/app/queue.db"
    assert absolute.file == "/var/lib/app/queue.db"
    assert settings("sqlite:///with%20space.db").path == "with space.db"
    assert absolute.url == "sqlite:////var/lib/app/queue.db"


def test_options_are_converted_and_defaults_documented() -> None:
    default = settings("sqlite:///x.db")
    assert (default.synchronous, default.busy_timeout, default.max_message_bytes) == (
        "normal",
        5.0,
        1_048_576,
    )
    assert (default.maxlen, default.max_age, default.wakeup) == (None, None, "auto")
    tuned = settings(
        "sqlite:///x.db?synchronous=full&busy_timeout=0.5&maxlen=100&max_age=3600"
        "&max_message_bytes=2048&wakeup=poll&max_poll_interval=0.02"
    )
    assert tuned == SqliteSettings(
        path="x.db",
        synchronous="full",
        busy_timeout=0.5,
        maxlen=100,
        max_age=3600.0,
        max_message_bytes=2048,
        wakeup="poll",
        max_poll_interval=0.02,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db?frobnicate=1", "valid options: busy_timeout, create, max_age"),
        ("sqlite:///x.db?synchronous=off", "expected one of 'normal', 'full'"),
        ("sqlite:///x.db?maxlen=0", "maxlen=0: must be >= 1"),
        ("sqlite:///x.db?max_age=-1", "max_age=-1.0: must be > 0"),
        ("sqlite:///x.db?busy_timeout=soon", "expected float"),
        ("sqlite:///x.db?max_message_bytes=0", "between 1 and 1,000,000,000"),
        ("sqlite:///x.db?max_poll_interval=0", "between 0.001 and 60"),
        ("sqlite:///x.db?wakeup=magic", "expected one of 'auto', 'notify', 'poll'"),
        ("sqlite://", "has no file path"),
        ("sqlite:///", "has no file path"),
        ("sqlite://host/x.db", "has a host ('host')"),
        ("sqlite:///:memory:", "memory:// is the in-process broker"),
    ],
)
def test_bad_urls_and_options_are_refused(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(url)
    assert expected in str(caught.value)


async def test_connect_finds_the_backend_by_scheme(tmp_path: Path) -> None:
    assert "sqlite" in conveyor.available_backends()
    async with conveyor.connect(f"sqlite:///{tmp_path / 'a.db'}", maxlen=5) as backend:
        assert isinstance(backend, SqliteBackend)
        assert backend.settings.maxlen == 5
        assert repr(backend) == f"SqliteBackend('sqlite:///{tmp_path / 'a.db'}')"
