"""`NatsSession`: one conveyor consumer reading a group's durable pull consumer.

The session owns a `Puller` (its own inbox and pull requests). Acks, nacks, heartbeats
and terminations go to each message's ``$JS.ACK`` reply subject on the connection that
read it. Closing the session stops the puller without NAKing what it holds: those
messages come back after ``ack_wait`` (see `Puller.stop`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg

from conveyor.base import BaseSession
from conveyor.errors import BrokerUnavailableError, ConfigurationError, GroupNotFoundError
from conveyor.message import Message
from conveyor_nats.errors import ERRORS
from conveyor_nats.messages import to_message
from conveyor_nats.names import escape_name
from conveyor_nats.pull import Puller

if TYPE_CHECKING:
    from conveyor_nats.backend import NatsBackend

__all__ = ["NatsSession"]

log = logging.getLogger("conveyor.nats")

_ANSWER_WITHIN = 0.25  # longest wait for the reply to a no_wait pull request
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # header names nats-py sends


class NatsSession(BaseSession):
    """One consumer of one group (see the module docstring). Opened by
    `NatsBackend.open_consumer`."""

    backend: NatsBackend

    def __init__(
        self, backend: NatsBackend, stream: str, group: str, consumer: str, puller: Puller
    ) -> None:
        super().__init__(backend, stream, group, consumer)
        self._nc = backend._nc
        self._settings = backend.settings
        self._puller = puller
        self._where = f"(group {group!r} of stream {stream!r})"

    def _translate(self, action: str) -> contextlib.AbstractContextManager[None]:
        return ERRORS.mapping(f"{action} {self._where}", closed=lambda: self.closed)

    async def _close(self) -> None:
        self.backend._pullers.discard(self._puller)
        with contextlib.suppress(nats.errors.Error, OSError):
            await self._puller.stop()

    def _handle(self, message: Message) -> Msg | None:
        """The message's JetStream delivery, when it came from this backend's connection
        and is not acknowledged yet."""
        handle = message.handle
        if isinstance(handle, Msg) and handle._client is self._nc and not handle.is_acked:
            return handle
        return None

    # -- reading -----------------------------------------------------------------------

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        """Fetch up to `count` messages, waiting up to `block` seconds for the first.

        JetStream has no per-worker ownership: a consumer's unacknowledged messages from
        an earlier life come back to the group (to whichever session fetches) once their
        ``ack_wait`` has passed, with the delivery count raised.

        Raises:
            GroupNotFoundError: the group's consumer (or its stream) was deleted; noticed
                by an idle read within ``group_check_interval``.
            BrokerUnavailableError: the connection is down (a waiting read returns at
                once when it drops).
        """
        self._check_open()
        if count < 1:
            raise ConfigurationError(f"read: count must be >= 1, got {count}")
        puller = self._puller
        async with puller.lock:
            self._check_connected()
            with self._translate("read"):
                fetched = await puller.fetch(
                    count, block=block or 0.0, answer_within=_ANSWER_WITHIN
                )
            self._check_open()
            if not fetched:
                self._check_connected()
                await self._check_group()
                return []
        puller.checked_at = time.monotonic()
        stream = self.stream
        return [to_message(stream, msg) for msg in fetched]

    def _check_connected(self) -> None:
        if not self._nc.is_connected:
            raise BrokerUnavailableError(
                f"read {self._where}: not connected to NATS ({self._settings.redacted_servers()})"
            )

    async def _check_group(self) -> None:
        """After an idle fetch (at most every group_check_interval, or at once when the
        server sent an unexpected status): does the group's consumer still exist?"""
        puller = self._puller
        now = time.monotonic()
        if not puller.suspect and now - puller.checked_at < self._settings.group_check_interval:
            return
        puller.checked_at = now
        puller.suspect = False
        try:
            with self._translate("check"):
                await self.backend._js.consumer_info(
                    self.backend.stream_name(self.stream), self.backend.consumer_name(self.group)
                )
        except GroupNotFoundError:
            self.backend._forget_stream(self.stream)
            puller.suspect = True  # check again on the next idle read
            raise

    # -- acknowledging -----------------------------------------------------------------

    async def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages: one ``+ACK`` publish each, without waiting for replies,
        except the batch's last one when ``ack_confirm`` is on (the default): the server
        handles a consumer's acks in order, so its reply confirms the whole batch (one
        round trip per batch; `group_info` right after sees them).

        Messages without a delivery handle from this backend, or already acked: no-op.
        """
        self._check_open()
        handles = [h for h in map(self._handle, messages) if h is not None]
        if not handles:
            return
        with self._translate("ack"):
            last = handles.pop() if self._settings.ack_confirm else None
            for handle in handles:
                await handle.ack()
            if last is not None:
                try:
                    await last.ack_sync(timeout=self._settings.request_timeout)
                except nats.errors.NoRespondersError:  # consumer deleted: nothing to ack
                    log.debug("acks on %r/%r: the consumer is gone", self.stream, self.group)

    async def nack(self, message: Message, *, delay: float) -> None:
        """Ask JetStream to deliver `message` again after `delay` seconds (``-NAK``)."""
        self._check_open()
        handle = self._handle(message)
        if handle is None:
            return
        with self._translate("nack"):
            await handle.nak(delay=delay if delay > 0 else None)

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        """Restart the ack_wait timer of in-flight messages (``+WPI``); counts unchanged."""
        self._check_open()
        with self._translate("heartbeat"):
            for message in messages:
                handle = self._handle(message)
                if handle is not None:
                    await handle.in_progress()

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        """Publish `record` (with `message`'s headers) to `dead_letter_stream`, wait for
        its PubAck, then ``+TERM`` the message.

        The publish carries a ``Nats-Msg-Id`` derived from stream, group and id, so a
        retry after a crash between the two steps does not write the record twice
        (within the dead-letter stream's ``duplicate_window``).
        """
        self._check_open()
        dedup = f"conveyor-dlq.{escape_name(self.stream)}.{escape_name(self.group)}.{message.id}"
        headers = {k: v for k, v in message.headers.items() if _TOKEN.fullmatch(k)}
        headers["Nats-Msg-Id"] = dedup
        [entry] = await self.backend._publish(dead_letter_stream, [record], [headers])
        handle = self._handle(message)
        if handle is not None:
            with self._translate(f"terminate {message.id}"):
                if self._settings.ack_confirm:  # +TERM with a reply: done once it returns
                    with contextlib.suppress(nats.errors.NoRespondersError):  # consumer gone
                        await self._nc.request(
                            handle.reply, Msg.Ack.Term, timeout=self._settings.request_timeout
                        )
                        handle._ackd = True  # as Msg.term() would mark it
                else:
                    await handle.term()
        return entry
