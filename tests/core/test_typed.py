"""Typed payloads: a handler's first parameter annotated with a pydantic model, a msgspec
Struct, a dataclass or a TypedDict gets the payload validated and converted; an invalid
payload is dead-lettered at once (delivery 1, no retry) with the errors in the record;
`publish` takes those types too. On memory, plus a round trip on every backend."""

from __future__ import annotations

import dataclasses
import datetime
import sys
from typing import TYPE_CHECKING, Any

import msgspec
import pydantic
import pytest
import typing_extensions

import conveyor
from conveyor import Message
from conveyor.errors import PayloadValidationError, UnserializablePayloadError
from conveyor.handlers import check_handler
from conveyor.middleware import CallNext, HandlerContext, PublishNext, PublishRequest
from conveyor.testing import dead_letters, run_until_idle
from conveyor.typed import first_annotation, payload_adapter, payload_kind, to_payload
from conveyor_memory import MemoryBackend

if TYPE_CHECKING:
    from tests.conftest import EngineEnv

    from conveyor.testing import FakeClock


class Item(pydantic.BaseModel):
    sku: str
    qty: int = 1


class Order(pydantic.BaseModel):
    order_id: int
    items: list[Item]
    placed_at: datetime.datetime | None = None


class Refund(msgspec.Struct):
    order_id: int
    amount: float
    reason: str = ""


@dataclasses.dataclass
class Shipment:
    order_id: int
    carrier: str
    tracking: list[str] = dataclasses.field(default_factory=list)


class Cancel(typing_extensions.TypedDict):
    order_id: int
    why: typing_extensions.NotRequired[str]


class Aliased(pydantic.BaseModel):
    order_id: int = pydantic.Field(alias="orderId")


# -- detection --------------------------------------------------------------------------


def test_each_kind_is_recognised_and_the_rest_is_not() -> None:
    assert payload_kind(Order) == "pydantic"
    assert payload_kind(Refund) == "msgspec"
    assert payload_kind(Shipment) == "dataclass"
    assert payload_kind(Cancel) == "typeddict"
    for plain in (dict, dict[str, Any], Any, Message, int, "Order", None, Order | None):
        assert payload_kind(plain) is None, plain


def test_string_annotations_are_resolved() -> None:
    async def handle(order: "Order") -> None: ...  # noqa: UP037 - the point of the test

    assert first_annotation(handle) is Order
    handler, takes_message = check_handler(handle)
    assert takes_message is False
    assert handler is not handle  # wrapped: converts before the call


def test_plain_and_message_handlers_are_left_alone() -> None:
    async def plain(payload: dict[str, Any]) -> None: ...

    async def bare(payload):  # type: ignore[no-untyped-def]
        ...

    async def whole(msg: Message) -> None: ...

    assert check_handler(plain) == (plain, False)
    assert check_handler(bare) == (bare, False)
    assert check_handler(whole) == (whole, True)


def test_forcing_message_style_skips_conversion() -> None:
    async def handle(order: Order) -> None: ...

    assert check_handler(handle, message=True) == (handle, True)


# -- handling on memory -------------------------------------------------------------------


async def consume(
    backend: conveyor.StreamBackend,
    handler: Any,
    clock: FakeClock | None = None,
    stream: str = "orders",
    **options: Any,
) -> conveyor.StreamProcessor:
    processor = conveyor.StreamProcessor(backend, stream, "billing", "c1", clock=clock, **options)
    processor.set_callback(handler)
    async with processor:
        await run_until_idle(processor, clock=clock, raise_errors=False)
    return processor


def recording(kind: type, seen: list[object]) -> Any:
    """A handler whose first parameter is annotated `kind`, appending what it gets."""

    async def handle(value: Any) -> None:
        seen.append(value)

    handle.__annotations__["value"] = kind
    return handle


@pytest.mark.parametrize(
    ("kind", "good", "expected"),
    [
        (
            Order,
            {"order_id": "7", "items": [{"sku": "a"}]},  # pydantic's lax mode: "7" -> 7
            Order(order_id=7, items=[Item(sku="a", qty=1)]),
        ),
        (Refund, {"order_id": 7, "amount": 2.5}, Refund(order_id=7, amount=2.5)),
        (Shipment, {"order_id": 7, "carrier": "ups"}, Shipment(7, "ups")),
        (Cancel, {"order_id": 7}, {"order_id": 7}),
    ],
)
async def test_each_kind_arrives_converted(
    memory: MemoryBackend, clock: FakeClock, kind: type, good: dict[str, Any], expected: object
) -> None:
    seen: list[object] = []
    handle = recording(kind, seen)
    await memory.publish("orders", good)
    processor = await consume(memory, handle, clock)
    assert seen == [expected]
    assert type(seen[0]) is type(expected)
    assert processor.stats.handled == 1
    assert await dead_letters(memory, "orders") == []


@pytest.mark.parametrize(
    ("kind", "bad", "errors"),
    [
        (
            Order,
            {"order_id": "seven", "items": [{"qty": 2}]},
            [
                "order_id: Input should be a valid integer",
                "items.0.sku: Field required",
            ],
        ),
        (
            Refund,
            {"order_id": 7, "amount": "lots"},
            ["Expected `float`, got `str` - at `$.amount`"],
        ),
        (Shipment, {"order_id": 7}, ["carrier: Field required"]),
        (Cancel, {"order_id": "x"}, ["order_id: Input should be a valid integer"]),
    ],
)
async def test_an_invalid_payload_is_dead_lettered_at_once_with_its_errors(
    memory: MemoryBackend, clock: FakeClock, kind: type, bad: dict[str, Any], errors: list[str]
) -> None:
    called: list[object] = []
    failures: list[BaseException] = []
    handle = recording(kind, called)
    await memory.publish("orders", bad)
    processor = await consume(
        memory, handle, clock, max_deliveries=5, on_error=lambda m, e: failures.append(e)
    )
    assert called == []
    (record,) = await dead_letters(memory, "orders")
    assert record["delivery_count"] == 1  # no retry
    assert record["original"] == bad
    assert record["error_type"] == "PayloadValidationError"
    assert record["error"].startswith(f"payload is not a valid {kind.__qualname__} (")
    for error in errors:
        assert error in record["error"]
    assert record["traceback"] is None  # the errors say it; a traceback would not
    assert processor.stats.dead_lettered == 1
    assert processor.stats.retried == 0
    (failure,) = failures  # the on_error hook still hears of it
    assert isinstance(failure, PayloadValidationError)
    assert failure.errors


async def test_every_pydantic_error_is_listed(memory: MemoryBackend, clock: FakeClock) -> None:
    async def handle(order: Order) -> None: ...

    await memory.publish("orders", {"items": [{}, {"sku": 1, "qty": "x"}]})
    await consume(memory, handle, clock)
    (record,) = await dead_letters(memory, "orders")
    assert record["error"] == (
        "payload is not a valid Order (4 validation errors): order_id: Field required;"
        " items.0.sku: Field required; items.1.sku: Input should be a valid string;"
        " items.1.qty: Input should be a valid integer, unable to parse string as an integer"
    )


async def test_a_bad_message_does_not_hold_up_the_good_ones(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    seen: list[int] = []

    async def handle(refund: Refund) -> None:
        seen.append(refund.order_id)

    for payload in (
        {"order_id": 1, "amount": 1.0},
        {"order_id": "2"},
        {"order_id": 3, "amount": 3},
    ):
        await memory.publish("orders", payload)
    await consume(memory, handle, clock, concurrency=4)
    assert sorted(seen) == [1, 3]
    assert [r["original"] for r in await dead_letters(memory, "orders")] == [{"order_id": "2"}]


async def test_a_handler_failure_after_conversion_is_retried_as_usual(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    async def handle(refund: Refund) -> None:
        raise RuntimeError("ledger down")

    await memory.publish("orders", {"order_id": 1, "amount": 1.0})
    processor = await consume(memory, handle, clock, max_deliveries=3)
    (record,) = await dead_letters(memory, "orders")
    assert record["delivery_count"] == 3
    assert record["error_type"] == "RuntimeError"
    assert processor.stats.retried == 2


async def test_app_handlers_and_router_routes_are_typed(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    app = conveyor.App("shop")
    router = conveyor.Router()
    seen: list[object] = []

    @app.handler("orders", clock=clock)
    async def on_order(order: Order) -> None:
        seen.append(order)

    @router.route("refund")
    async def on_refund(refund: Refund) -> None:
        seen.append(refund)

    app.add_handler("events", router, clock=clock)
    await memory.publish("orders", Order(order_id=1, items=[]))
    await memory.publish("events", {"type": "refund", "order_id": 2, "amount": 5.0})
    await memory.publish("events", {"type": "refund", "order_id": 3})  # no amount
    for processor in app.processors(memory, consumer="c1"):
        async with processor:
            await run_until_idle(processor, clock=clock, raise_errors=False)
    assert seen == [Order(order_id=1, items=[]), Refund(order_id=2, amount=5.0)]
    (record,) = await dead_letters(memory, "events")
    assert record["delivery_count"] == 1
    assert "Object missing required field `amount`" in record["error"]


class Outcomes(conveyor.Middleware):
    """Records what each middleware sees: the message, and the failure's outcome."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], str]] = []
        self.published: list[list[dict[str, Any]]] = []

    async def handle(self, message: Message, call_next: CallNext, context: HandlerContext) -> None:
        try:
            await call_next(message)
        except Exception as exc:
            self.seen.append((message.data, context.failure_outcome(message, exc)))
            raise
        self.seen.append((message.data, "success"))

    async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
        self.published.append(request.items)
        return await call_next(request)


async def test_middleware_see_the_raw_payload_and_a_dead_letter_outcome(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    outcomes = Outcomes()
    seen: list[Refund] = []

    async def handle(refund: Refund) -> None:
        seen.append(refund)

    await memory.publish("orders", {"order_id": 1, "amount": 1.5})
    await memory.publish("orders", {"order_id": 2})
    await consume(memory, handle, clock, middleware=[outcomes], max_deliveries=5)
    assert seen == [Refund(order_id=1, amount=1.5)]
    assert outcomes.seen == [
        ({"order_id": 1, "amount": 1.5}, "success"),
        ({"order_id": 2}, "dead_letter"),  # at its first delivery: not "retry"
    ]
    (record,) = await dead_letters(memory, "orders")
    assert record["delivery_count"] == 1


def test_a_validation_error_raised_by_hand_is_a_dead_letter_outcome() -> None:
    context = HandlerContext("s", "g", "c", "memory", 5, "s.dead", None, None, None)  # type: ignore[arg-type]
    message = Message("1", "s", {})
    assert context.failure_outcome(message) == "retry"
    assert context.failure_outcome(message, ValueError()) == "retry"
    assert context.failure_outcome(message, PayloadValidationError("bad")) == "dead_letter"


def test_the_validator_is_built_once_per_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real = pydantic.TypeAdapter

    def counting(tp: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(tp)
        return real(tp, *args, **kwargs)

    monkeypatch.setattr(pydantic, "TypeAdapter", counting)

    async def handle(shipment: Shipment) -> None: ...

    handler, _ = check_handler(handle)
    for n in range(5):
        handler({"order_id": n, "carrier": "ups"}).close()  # type: ignore[attr-defined]
    assert built == [Shipment]


def test_typing_typeddict_follows_pydantics_rule() -> None:
    import typing

    class Plain(typing.TypedDict):
        order_id: int

    if sys.version_info >= (3, 12):
        adapter = payload_adapter(Plain)
        assert adapter is not None
        assert adapter.convert({"order_id": "3"}) == {"order_id": 3}
    else:  # pydantic refuses typing.TypedDict before 3.12: said at registration
        with pytest.raises(TypeError, match=r"typing_extensions\.TypedDict"):
            payload_adapter(Plain)


# -- publishing typed values --------------------------------------------------------------


async def test_publish_takes_typed_values_as_json_dicts(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    outcomes = Outcomes()
    memory.add_middleware(outcomes)
    when = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.timezone.utc)
    await memory.publish("orders", Order(order_id=1, items=[Item(sku="a")], placed_at=when))
    await memory.publish("orders", Refund(order_id=2, amount=1.5))
    await memory.publish("orders", Shipment(3, "dhl", ["t1"]))
    await memory.publish_many("orders", [Aliased(orderId=4), {"order_id": 5}])
    stored = [m.data for m in await memory.peek("orders", count=10)]
    assert stored == [
        {
            "order_id": 1,
            "items": [{"sku": "a", "qty": 1}],
            "placed_at": "2026-11-28T12:00:00Z",
        },
        {"order_id": 2, "amount": 1.5, "reason": ""},
        {"order_id": 3, "carrier": "dhl", "tracking": ["t1"]},
        {"orderId": 4},  # by alias: what the model validates from
        {"order_id": 5},
    ]
    assert [items for items in outcomes.published] == [[s] for s in stored[:3]] + [stored[3:]]
    seen: list[Aliased] = []

    async def handle(value: Aliased) -> None:
        seen.append(value)

    await memory.publish("aliased", Aliased(orderId=9))
    await consume(memory, handle, clock, stream="aliased")
    assert seen == [Aliased(orderId=9)]


async def test_a_plain_dict_is_published_as_it_is(memory: MemoryBackend) -> None:
    outcomes = Outcomes()
    memory.add_middleware(outcomes)
    payload = {"order_id": 1}
    await memory.publish("orders", payload)
    assert outcomes.published[0][0] is payload  # no copy, no conversion


async def test_what_publish_refuses_it_still_refuses(memory: MemoryBackend) -> None:
    with pytest.raises(UnserializablePayloadError, match="payload must be a dict"):
        await memory.publish("orders", ["not", "a", "dict"])

    class Opaque:
        pass

    @dataclasses.dataclass
    class Odd:
        value: Any

    with pytest.raises(UnserializablePayloadError, match="Odd: Unable to serialize"):
        await memory.publish("orders", Odd(Opaque()))
    assert await memory.peek("orders", count=10) == []


def test_to_payload_leaves_other_values_alone() -> None:
    payload = {"a": 1}
    assert to_payload(payload) is payload
    assert to_payload("text") == "text"
    assert to_payload(Refund(order_id=1, amount=2.0)) == {
        "order_id": 1,
        "amount": 2.0,
        "reason": "",
    }


# -- every backend ------------------------------------------------------------------------


async def test_typed_round_trip_and_invalid_payload_on_every_backend(engine: EngineEnv) -> None:
    backend, stream = engine.backend, engine.stream
    seen: list[Order] = []

    async def handle(order: Order) -> None:
        seen.append(order)

    good = Order(order_id=7, items=[Item(sku="ü-1", qty=2)])
    await backend.publish(stream, good)
    await backend.publish(stream, {"order_id": "seven", "items": []})
    processor = engine.processor(max_deliveries=5, retry_delay=0.1)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, raise_errors=False, timeout=60)
    assert seen == [good]
    (record,) = await dead_letters(backend, stream)
    assert record["delivery_count"] == 1
    assert record["error_type"] == "PayloadValidationError"
    assert "order_id: Input should be a valid integer" in record["error"]
    assert record["original"] == {"order_id": "seven", "items": []}
    assert processor.stats.retried == 0


def test_the_module_exports_exactly_this() -> None:
    import conveyor.asyncapi
    import conveyor.typed

    assert sorted(conveyor.typed.__all__) == [
        "Kind",
        "Payload",
        "PayloadAdapter",
        "first_annotation",
        "payload_adapter",
        "payload_kind",
        "required_keys",
        "to_payload",
        "typed_handler",
    ]
    assert sorted(conveyor.asyncapi.__all__) == [
        "ASYNCAPI_VERSION",
        "asyncapi_document",
        "servers",
    ]
