"""conveyor and FastStream with typed handlers: the handler's parameter is a pydantic
model or a msgspec Struct of the benchmark's order payload (`conveyor.typed` validates
and converts every message before the call; FastStream validates with pydantic).

Each row is a ratio to plain ``conveyor c=1`` of the same run (target: msgspec-typed
costs at most 10 %; pydantic-typed is reported) and faces FastStream's per-message
handler typed with the same pydantic model (target: conveyor ahead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
import pydantic
from benchmarks import conveyor_runs
from benchmarks.common import BenchResult
from benchmarks.report import Row, Target

from conveyor.protocol import StreamBackend

__all__ = [
    "KINDS",
    "Kind",
    "conveyor_name",
    "conveyor_row",
    "faststream_name",
    "faststream_row",
    "targets",
]

Kind = Literal["pydantic", "msgspec"]
KINDS: tuple[Kind, ...] = ("pydantic", "msgspec")

#: Most a kind may cost against plain c=1 (None: reported, no target).
COST: dict[Kind, float | None] = {"pydantic": None, "msgspec": 0.10}


class ItemModel(pydantic.BaseModel):
    sku: str
    qty: int


class OrderModel(pydantic.BaseModel):
    """`conveyor.bench.make_payload` as a pydantic model."""

    type: str
    order_id: int
    customer: str
    currency: str
    amount: float
    items: list[ItemModel]
    note: str


class ItemStruct(msgspec.Struct):
    sku: str
    qty: int


class OrderStruct(msgspec.Struct):
    """`conveyor.bench.make_payload` as a msgspec Struct."""

    type: str
    order_id: int
    customer: str
    currency: str
    amount: float
    items: list[ItemStruct]
    note: str


TYPES: dict[Kind, type] = {"pydantic": OrderModel, "msgspec": OrderStruct}


def conveyor_name(kind: Kind) -> str:
    return f"conveyor c=1 +{kind}"


def faststream_name() -> str:
    return "FastStream per-message handler +pydantic"


async def conveyor_row(
    kind: Kind, backend: StreamBackend, inspector: StreamBackend, label: str, stream: str, n: int
) -> BenchResult:
    """``conveyor c=1`` whose handler takes the order as `kind`'s type."""
    return await conveyor_runs.consume(
        backend, inspector, label, stream, n, name=conveyor_name(kind), payload_type=TYPES[kind]
    )


async def faststream_row(run: Callable[..., Awaitable[BenchResult]]) -> BenchResult:
    """FastStream's per-message handler taking an `OrderModel`: `run` is a
    ``faststream_runs.consume_*`` with its broker, names and count already given."""
    return await run(batch=False, payload_type=OrderModel, row=faststream_name())


def targets(rows: list[Row], plain: dict[str, list[str]]) -> list[Target]:
    """Each typed row against its plain c=1 row and (pydantic) against FastStream's."""
    out: list[Target] = []
    by_key = {(r.backend, r.name): r for r in rows}
    for backend, names in plain.items():
        for base_name in names:
            base = by_key.get((backend, base_name))
            suffix = base_name.removeprefix("conveyor c=1")
            for kind in KINDS:
                row = by_key.get((backend, conveyor_name(kind) + suffix))
                if row is None or base is None or not row.median or not base.median:
                    continue
                ratio = row.median / base.median
                cost = COST[kind]
                verified = row.verified and base.verified
                what = f"{backend}: {row.name} vs {base_name}"
                if cost is None:
                    out.append(Target(what, ratio, "reported", verified))
                else:
                    goal = 1.0 - cost
                    out.append(Target(what, ratio, f">= {goal:g}x", ratio >= goal and verified))
                peer = by_key.get((backend, faststream_name()))
                if kind == "pydantic" and peer is not None and peer.median:
                    ahead = row.median / peer.median
                    ok = ahead > 1.0 and row.verified and peer.verified
                    out.append(Target(f"{backend}: {row.name} vs {peer.name}", ahead, "> 1x", ok))
    return out
