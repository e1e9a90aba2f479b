"""Pull requests for one durable consumer, received by a callback subscription.

nats-py's ``PullSubscription.fetch`` starts an asyncio task and a ``wait_for`` per message
it receives; that caps a consumer at a few thousand messages per second on small machines.
`Puller` speaks the same JetStream pull protocol (``$JS.API.CONSUMER.MSG.NEXT``, see
ADR-13 "Pull Subscribe internals" in nats-architecture-and-design) over one inbox whose
callback appends to a deque, so a batch costs one request and one wake-up.

A fetch first asks with ``no_wait`` (the server sends what is available, then a 404/408
status if that was less than the batch); when nothing came and the caller may wait, it asks
again with ``expires`` and returns as soon as something arrives. Messages of a request that
arrive after `fetch` returned stay in the deque and are handed out by the next `fetch`.

A `Puller` belongs to one `conveyor_nats.session.NatsSession`: `stop` (session close) and
`interrupt` (connection lost) make a waiting `fetch` return at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Puller"]

_STATUS = "Status"
_HEARTBEAT = "100"
_END_OF_BATCH = {"404", "408"}  # no messages / request expired: normal ends of a request


class Puller:
    """One worker's pull requests on one durable consumer (see the module docstring)."""

    def __init__(self, client: Client, api_prefix: str, stream: str, durable: str) -> None:
        self._nc = client
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = client.new_inbox()
        self._buffer: deque[Msg] = deque()
        self._waiter: asyncio.Future[bool] | None = None  # a waiting fetch's wake-up
        self._sub: Subscription | None = None
        self._closed = False
        self._interrupted = False
        #: Set when the server answered with an unexpected status (409 consumer deleted,
        #: 503 no JetStream...): the caller should check that the consumer still exists.
        self.suspect = False
        #: Serialises fetches of this worker; one request in flight at a time.
        self.lock = asyncio.Lock()
        #: monotonic time of the last existence check or delivery (set by the session).
        self.checked_at = time.monotonic()

    async def start(self) -> None:
        """Subscribe the inbox the server delivers to."""
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def stop(self) -> None:
        """Unsubscribe and wake a waiting `fetch` (which then returns what it has).

        Messages that arrived but were never returned stay unacknowledged: JetStream hands
        them out again after ``ack_wait``. (NAKing them here is not safe on nats-server
        2.9: while this worker's pull request is still open the server may redeliver into
        the dead inbox, or deliver a sequence twice with a reset count.)
        """
        self._closed = True
        self._wake(True)
        if self._sub is not None and not self._nc.is_closed:
            await self._sub.unsubscribe()
        self._sub = None
        self._buffer.clear()

    def interrupt(self) -> None:
        """Make a waiting `fetch` return what it has now (the connection was lost: its
        pull request is gone with it)."""
        self._interrupted = True
        self._wake(True)

    async def _on_message(self, msg: Msg) -> None:
        self._buffer.append(msg)
        self._wake(True)

    def _wake(self, arrived: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(arrived)

    def _take(self, count: int) -> tuple[list[Msg], bool]:
        """Up to `count` buffered messages, and whether a request's end status was seen."""
        out: list[Msg] = []
        ended = False
        while self._buffer and len(out) < count:
            msg = self._buffer.popleft()
            if msg.reply:  # a stream message (its reply subject is the $JS.ACK one)
                out.append(msg)
                continue
            status = msg.headers.get(_STATUS) if msg.headers else None
            if status is None:
                continue  # neither a message nor a status: ignore
            elif status in _END_OF_BATCH:
                ended = True
            elif status != _HEARTBEAT:
                self.suspect = True
                ended = True
        return out, ended

    async def _request(self, batch: int, *, no_wait: bool, expires: float | None) -> None:
        body: dict[str, object] = {"batch": batch}
        if no_wait:
            body["no_wait"] = True
        if expires is not None:
            body["expires"] = max(1_000_000, int(expires * 1_000_000_000))
        await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=self._inbox)

    async def _wait(self, deadline: float) -> bool:
        """Wait for the next delivery until `deadline`; False when it passed.

        A plain future and a timer rather than ``asyncio.wait_for``: on Python 3.11
        ``wait_for`` returns instead of raising when it is cancelled just as the wait it
        runs finishes, and a stopping processor's reader then went on for a second."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self._closed or self._interrupted:
            return False
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(remaining, self._wake, False)
        try:
            arrived = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return arrived and not (self._closed or self._interrupted)

    async def fetch(self, count: int, *, block: float, answer_within: float) -> list[Msg]:
        """Return up to `count` messages, waiting up to `block` seconds for the first.

        `answer_within` bounds the wait for the server's reply to the ``no_wait`` request
        when `block` is shorter (a non-blocking read on a slow link). After an unexpected
        status (`suspect`) no new request is sent, but the call still waits out `block`
        so that a caller looping on it does not spin.
        """
        self._interrupted = False
        out, _ = self._take(count)
        if out:
            return out
        await self._request(count, no_wait=True, expires=None)
        started = time.monotonic()
        deadline = started + max(block, answer_within)
        while len(out) < count:
            more, ended = self._take(count - len(out))
            out += more
            if ended or len(out) >= count:
                break
            if not self._buffer and not await self._wait(deadline):
                break
        remaining = started + block - time.monotonic()
        if out or self._closed or self._interrupted or remaining <= 0.001:
            return out
        if not self.suspect:
            await self._request(count, no_wait=False, expires=remaining)
        deadline = time.monotonic() + remaining
        while not out:
            out, _ = self._take(count)
            if out or (not self._buffer and not await self._wait(deadline)):
                break
        if out:
            await asyncio.sleep(0)  # let messages of the same batch already read land
            more, _ = self._take(count - len(out))
            out += more
        return out
