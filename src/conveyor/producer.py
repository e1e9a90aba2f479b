"""Publishing typed events (the seed's producer and its ``add_event``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from conveyor.base import check_name
from conveyor.errors import ConfigurationError
from conveyor.protocol import StreamBackend

__all__ = ["Producer"]


class Producer:
    """Publish events with a ``type`` field to one stream.

    ```python
    orders = Producer(backend, "orders")
    await orders.add_event("order.paid", {"order_id": 7})
    ```
    """

    def __init__(self, backend: StreamBackend, stream: str, *, type_field: str = "type") -> None:
        self.backend = backend
        self.stream = check_name("stream name", stream)
        self.type_field = type_field

    def _payload(self, event_type: str, data: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(event_type, str) or not event_type:
            raise ConfigurationError(f"event type must be a non-empty str, got {event_type!r}")
        payload = dict(data or {})
        existing = payload.get(self.type_field, event_type)
        if existing != event_type:
            raise ConfigurationError(
                f"data already has {self.type_field}={existing!r}, conflicting with {event_type!r}"
            )
        payload[self.type_field] = event_type
        return payload

    async def add_event(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Publish `data` with ``type=event_type`` (and `headers`); return the message id."""
        return await self.backend.publish(
            self.stream, self._payload(event_type, data), headers=headers
        )

    async def add_events(
        self, events: Iterable[tuple[str, dict[str, Any] | None]]
    ) -> Sequence[str]:
        """Publish many ``(type, data)`` events in one batch; return their ids in order."""
        payloads = [self._payload(t, d) for t, d in events]
        return await self.backend.publish_many(self.stream, payloads)
