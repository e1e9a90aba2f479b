"""`conveyor_nats.messages.delivery` reads an ack subject as nats-py's ``msg.metadata``
does (it is the per-message fast path of every read)."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from conveyor_nats.messages import delivery

SUBJECTS = [
    "$JS.ACK.ORDERS.billing.3.1234.17.1700000000123456789.42",  # v1, the server's usual
    "$JS.ACK.hub.ACCHASH.ORDERS.billing.3.1234.17.1700000000123456789.42.rnd",  # v2
    "$JS.ACK._.ACCHASH.ORDERS.billing.1.9.9.1700000000000000000.0",  # v2, no domain
]


@pytest.mark.parametrize("reply", SUBJECTS)
def test_delivery_matches_nats_py_metadata(reply: str) -> None:
    msg = Msg(None, subject="s", reply=reply, data=b"{}")  # type: ignore[arg-type]
    meta = msg.metadata
    seq, count, published_at = delivery(msg)
    assert (seq, count) == (str(meta.sequence.stream), meta.num_delivered)
    assert published_at == pytest.approx(meta.timestamp.timestamp(), abs=1e-6)
