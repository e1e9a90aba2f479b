"""`UiSettings`: what `conveyor ui` serves, as one frozen record."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.errors import ConfigurationError

__all__ = ["UiSettings", "parse_group"]


def parse_group(value: str) -> tuple[str, str]:
    """``STREAM:GROUP`` as ``(stream, group)`` (split at the last colon).

    Raises:
        ConfigurationError: no colon, or an empty side.
    """
    stream, sep, group = value.rpartition(":")
    if not sep or not stream or not group:
        raise ConfigurationError(f"expected STREAM:GROUP, got {value!r}")
    return stream, group


@dataclass(frozen=True)
class UiSettings:
    """Options of the operations UI.

    Attributes:
        url: The backend URL (shown only through `conveyor.options.redact_url`).
        streams: Streams to show first, besides those the backend lists
            (`BaseBackend.streams`): for a backend that cannot list them, or before a
            stream exists.
        groups: ``(stream, group)`` pairs to show besides the groups the backend lists
            and those named in each stream's dead letters.
        read_only: Hide every action; the server refuses them too.
        token: When set, every page asks for it once (login form or ``?token=``).
        refresh: Seconds between the pages' automatic refreshes.
        sample_interval: Seconds between the server's samples of each group.
        history: Seconds of samples kept for throughput and the lag chart.
        page_size: Dead letters per page.
        peek_count: Latest entries shown on a stream's page.
        allowed_hosts: ``Host`` headers served (None: any); ``conveyor ui`` limits a
            loopback bind to loopback names, which stops DNS-rebinding pages.
    """

    url: str
    streams: tuple[str, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    read_only: bool = False
    token: str | None = None
    refresh: float = 5.0
    sample_interval: float = 5.0
    history: float = 600.0
    page_size: int = 25
    peek_count: int = 20
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("refresh", "sample_interval", "history"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("page_size", "peek_count"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.token is not None and not self.token:
            raise ConfigurationError("token must not be empty")

    def __repr__(self) -> str:  # never the URL's credentials nor the token
        from conveyor.options import redact_url

        return f"UiSettings(url={redact_url(self.url)!r}, read_only={self.read_only})"
