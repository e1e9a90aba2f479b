"""JetStream stream and consumer configurations conveyor asks for, and how an existing
one conflicts with them (each conflict phrased for a `ConfigConflictError` message)."""

from __future__ import annotations

from nats.js import api

from conveyor_nats.settings import NatsSettings

__all__ = ["consumer_conflicts", "stream_config", "stream_conflicts"]


def _ns(seconds: float | None) -> int:
    return round((seconds or 0.0) * 1_000_000_000)


def stream_config(settings: NatsSettings, name: str, subject: str) -> api.StreamConfig:
    """The configuration of a stream conveyor creates: limits retention, one subject."""
    return api.StreamConfig(
        name=name,
        subjects=[subject],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE if settings.storage == "file" else api.StorageType.MEMORY,
        num_replicas=settings.replicas,
        max_age=settings.max_age,
        max_msgs=settings.max_msgs,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window,
        discard=api.DiscardPolicy.OLD,
    )


def stream_conflicts(have: api.StreamConfig, want: api.StreamConfig) -> list[str]:
    """What differs between an existing stream and `want` (empty: compatible)."""
    problems: list[str] = []
    subject = (want.subjects or [""])[0]
    if subject not in (have.subjects or []):
        problems.append(f"its subjects are {have.subjects}, conveyor publishes on {subject!r}")
    if have.retention != api.RetentionPolicy.LIMITS:
        problems.append(
            f"retention is {have.retention}; conveyor needs 'limits' so that every group"
            " sees every message"
        )
    for label, got, expected in (
        ("storage", have.storage, want.storage),
        ("replicas", have.num_replicas, want.num_replicas),
        ("max_msgs", have.max_msgs, want.max_msgs),
        ("max_bytes", have.max_bytes, want.max_bytes),
    ):
        if got != expected:
            problems.append(f"{label} is {got!r}, the URL asks for {expected!r}")
    for label, seconds, wanted in (
        ("max_age", have.max_age, want.max_age),
        ("duplicate_window", have.duplicate_window, want.duplicate_window),
    ):
        if _ns(seconds) != _ns(wanted):
            problems.append(f"{label} is {seconds or 0}s, the URL asks for {wanted or 0}s")
    return problems


def consumer_conflicts(
    have: api.ConsumerConfig,
    want: api.ConsumerConfig,
    claim_idle: float | None,
    max_deliveries: int | None,
) -> list[str]:
    """What makes an existing consumer unusable for the request (empty: compatible).

    ``ack_wait`` is compared only when `claim_idle` was given, ``max_deliver`` only when
    `max_deliveries` was (and only a limit at or below it conflicts); the deliver policy
    only applies on creation.
    """
    problems: list[str] = []
    if have.deliver_subject:
        problems.append("it is a push consumer; conveyor groups are pull consumers")
    if have.ack_policy != api.AckPolicy.EXPLICIT:
        problems.append(f"ack_policy is {have.ack_policy}; conveyor needs 'explicit'")
    if (have.filter_subject or "") != want.filter_subject or have.filter_subjects:
        shown = have.filter_subjects or have.filter_subject
        problems.append(f"it filters {shown!r}, conveyor needs {want.filter_subject!r}")
    if claim_idle is not None and _ns(have.ack_wait) != _ns(claim_idle):
        problems.append(
            f"ack_wait is {have.ack_wait}s but claim_idle={claim_idle}s was asked"
            f" (pass claim_idle={have.ack_wait} to use it as it is)"
        )
    limit = have.max_deliver
    if max_deliveries is not None and limit is not None and 0 < limit <= max_deliveries:
        problems.append(
            f"max_deliver is {limit}, not above max_deliveries={max_deliveries}: JetStream"
            " would stop delivering before conveyor can dead-letter"
        )
    return problems
