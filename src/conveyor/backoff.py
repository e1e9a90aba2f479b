"""Exponential backoff with jitter, for retries of failed messages and of broker calls."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

_rng = random.Random()


def backoff_delay(attempt: int, base: float, cap: float, jitter: float = 0.5) -> float:
    """Delay before retry number `attempt` (1 = first retry).

    ``min(cap, base * 2 ** (attempt - 1))``, then scaled by a random factor in
    ``[1 - jitter, 1]`` so that many consumers failing together do not retry in lockstep.
    """
    if attempt < 1:
        attempt = 1
    raw = min(cap, base * (2.0 ** min(attempt - 1, 62)))
    return raw * (1.0 - jitter * _rng.random())
