"""`Features`: how a backend differs in ways only tests need to know.

The engine reads `conveyor.Capabilities` (who redelivers, who claims, whether reads
block); everything merely descriptive lives here, declared by each backend's test module
(Watermill keeps its ``Features`` record in its test package for the same reason) and
stated in prose on the backend's docs page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Features"]


@dataclass(frozen=True, slots=True)
class Features:
    """What the conformance suite should expect of a backend.

    Attributes:
        ordering: ``"stream"``, ``"partition"`` or ``"none"``: the unit within which one
            consumer with concurrency 1 sees entries in publish order.
        exact_delivery_count: False where counts are emulated (Kafka: a count restarts at
            1 when a partition moves to another member).
        contiguous_ack: True where only a contiguous prefix of offsets is committed
            (Kafka): a member holds whole partitions, not single messages, and messages
            acked behind an unacked one may be delivered again after a crash.
        durable: False where data does not outlive the process (memory).
        range_reads: True where `range` pages through a stream (the dead-letter tools
            use it); False for backends that do not implement it.
        deletes: True where `delete` removes single entries (False: Kafka, whose
            dead-letter tools mark entries done instead).
        stream_listing: True where `streams` and `groups` list what the broker holds.
        stream_deletes: True where `delete_stream` removes a stream (which can be used
            again at once); False where it raises `NotImplementedError`.
        lists_idle_groups: True where a group is listed as soon as it is created; False
            where the broker lists a group only once a member joined it (Tansu's
            ListGroups).
        exact_group_names: False where the broker's group listing may alter a group name
            holding ``/`` or ``#`` (Tansu cuts it at ``/`` and percent-encodes ``#``).
    """

    ordering: Literal["stream", "partition", "none"] = "stream"
    exact_delivery_count: bool = True
    contiguous_ack: bool = False
    durable: bool = True
    range_reads: bool = True
    deletes: bool = True
    stream_listing: bool = True
    stream_deletes: bool = True
    lists_idle_groups: bool = True
    exact_group_names: bool = True
