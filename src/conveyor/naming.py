"""Default consumer names: stable across restarts of one worker, distinct between workers."""

from __future__ import annotations

import re
import socket

from conveyor.errors import ConfigurationError

__all__ = ["default_consumer_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_consumer_name(app_name: str, index: int | None = None, host: str | None = None) -> str:
    """``<host>-<app_name>[-<index>]``.

    The same worker restarted on the same host gets the same name, so it re-reads its own
    pending messages; several workers on one host pass distinct `index` values.
    """
    base = f"{host or socket.gethostname()}-{app_name}"
    if index is not None:
        if index < 0:
            raise ConfigurationError(f"worker index must be >= 0, got {index}")
        base = f"{base}-{index}"
    return _UNSAFE.sub("_", base)
