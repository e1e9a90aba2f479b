"""Jinja filters: ages, counts, rates and pretty JSON, as the pages print them."""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["age", "num", "pretty", "rate", "since"]


def age(seconds: float | None) -> str:
    """``42 s``, ``5 min``, ``3.2 h``, ``2.0 d``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def since(timestamp: float | None) -> str:
    """Age of an epoch `timestamp`, as ``… ago``."""
    return "" if timestamp is None else f"{age(max(0.0, time.time() - timestamp))} ago"


def num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def rate(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def pretty(value: Any) -> str:
    """Indented JSON (unicode kept); anything JSON cannot carry as its ``str``."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
