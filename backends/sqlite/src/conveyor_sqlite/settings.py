"""`SqliteSettings`: everything a ``sqlite://`` URL can say, validated in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from conveyor.errors import ConfigurationError
from conveyor.options import parse_url_options

__all__ = ["SqliteSettings"]

#: SQLite's own cap on one string or blob (SQLITE_MAX_LENGTH as compiled by default).
_SQLITE_MAX_LENGTH = 1_000_000_000

_USAGE = "use sqlite:///relative/path.db or sqlite:////absolute/path.db"


@dataclass(frozen=True)
class SqliteSettings:
    """Options of ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``.

    The URL's path is the database file (`path`); a relative path is resolved against the
    working directory when the backend opens. The file is created when missing (its
    directory must exist; see `create`); a file that is not a conveyor database is
    refused untouched.

    Query options:
        synchronous: ``normal`` (default) or ``full``. With either, a publish that
            returned survives a crash of any process (``kill -9``): its transaction is in
            the operating system's cache. ``normal`` does not flush the write-ahead log to
            disk at each commit, so a power loss or OS crash may undo the last
            transactions (the database stays consistent); ``full`` flushes it at every
            commit (``fsync``), so confirmed publishes and acks also survive power loss,
            at the cost of one flush per write transaction.
        busy_timeout: Seconds a write waits for another process's transaction to finish
            (default 5.0). Past it, the call raises `BrokerUnavailableError` naming the
            file, and a processor retries with backoff.
        maxlen: Keep at most this many entries per stream, trimming the oldest when
            publishing (exact). None (default) keeps everything.
        max_age: Seconds an entry is kept; older entries are trimmed when publishing to
            their stream. None (default) keeps everything. Entries trimmed while pending
            are dropped from the pending lists (logged as a warning).
        max_message_bytes: Largest message (JSON payload plus headers, UTF-8 bytes) a
            publish may write (default 1 MiB, NATS' and Kafka's default too); a larger one
            raises `PayloadTooLargeError` before anything is written.
        wakeup: How a blocked read learns that another process published: ``auto``
            (default: ``notify`` where available, else ``poll``), ``notify`` (Linux
            inotify on the write-ahead log: no CPU while idle) or ``poll`` (checks the
            database at adaptive intervals, from 1 ms after activity up to
            `max_poll_interval`). Publishes through the same backend wake its readers at
            once in every mode.
        max_poll_interval: Longest pause between two checks of a blocked read in
            ``poll`` mode, in seconds (default 0.1): the most an entry published after a
            quiet spell waits there, against about ten checks a second while idle.
        create: ``true`` (default): a database file that does not exist is created.
            ``false``: opening refuses it with `ConfigurationError` (``no SQLite database
            at ...``) — what the CLI's commands that only read (``inspect``, ``dlq``,
            ``ui``) pass, so that a mistyped path is not created empty.
    """

    path: str
    synchronous: Literal["normal", "full"] = "normal"
    busy_timeout: float = 5.0
    maxlen: int | None = None
    max_age: float | None = None
    max_message_bytes: int = 1_048_576
    wakeup: Literal["auto", "notify", "poll"] = "auto"
    max_poll_interval: float = 0.1
    create: bool = True

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigurationError(f"sqlite:// URL has no file path: {_USAGE}")
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ConfigurationError(
                f"sqlite:// needs a file that several processes can open, not {self.path!r};"
                " memory:// is the in-process broker"
            )
        if not self.busy_timeout >= 0:
            raise ConfigurationError(f"sqlite:// option busy_timeout={self.busy_timeout}: >= 0")
        if self.maxlen is not None and self.maxlen < 1:
            raise ConfigurationError(f"sqlite:// option maxlen={self.maxlen}: must be >= 1")
        if self.max_age is not None and not self.max_age > 0:
            raise ConfigurationError(f"sqlite:// option max_age={self.max_age}: must be > 0")
        if not 1 <= self.max_message_bytes <= _SQLITE_MAX_LENGTH:
            raise ConfigurationError(
                f"sqlite:// option max_message_bytes={self.max_message_bytes}: must be"
                f" between 1 and {_SQLITE_MAX_LENGTH:,} (SQLite's limit)"
            )
        if not 0.001 <= self.max_poll_interval <= 60:
            raise ConfigurationError(
                f"sqlite:// option max_poll_interval={self.max_poll_interval}: must be"
                " between 0.001 and 60 seconds"
            )

    @property
    def file(self) -> str:
        """The database file as an absolute path (resolved against the working directory)."""
        return os.path.abspath(self.path)

    @property
    def url(self) -> str:
        """The URL of this database, without options."""
        return f"sqlite:///{self.path}"

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any] | None = None) -> SqliteSettings:
        """Build settings from a URL (without query string) and its options.

        Raises:
            ConfigurationError: a URL with a host or without a path, an unknown option
                (the message lists the valid ones) or an invalid value.
        """
        scheme, sep, rest = url.partition("://")
        if scheme.lower() != "sqlite" or not sep:
            raise ConfigurationError(f"not a sqlite:// URL: {url!r}; {_USAGE}")
        if "?" in rest:
            raise ConfigurationError(
                "pass query options separately (conveyor.options.split_options)"
            )
        if not rest.startswith("/"):
            host = rest.partition("/")[0]
            what = f"a host ({host!r})" if host else "no file path"
            raise ConfigurationError(f"sqlite:// URL {url!r} has {what}: {_USAGE}")
        kwargs = parse_url_options("sqlite", cls, options or {}, exclude=("path",))
        return cls(path=unquote(rest[1:]), **kwargs)
