"""AsyncAPI 3.0 documents of apps, validated against the official AsyncAPI 3.0.0 JSON
Schema (tests/data/asyncapi-3.0.0.json, from the npm package @asyncapi/specs 6.11.1,
``schemas/3.0.0.json``, Apache-2.0), offline: every reference resolves inside that file
or to the draft-07 metaschema jsonschema ships. Also: every ``$ref`` of a document points
inside it, operations only name their channel's messages, and no credential leaks."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import msgspec
import pydantic
import pytest
import typing_extensions
from click.testing import CliRunner
from referencing import Registry
from referencing.jsonschema import DRAFT7

import conveyor
from conveyor import Message
from conveyor.asyncapi import asyncapi_document, servers
from conveyor.cli import main
from conveyor.errors import ConfigurationError

SPEC = Path(__file__).parent.parent / "data" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SPEC.read_text(encoding="utf-8"))
    # a Registry without `retrieve` fetches nothing: an unknown $ref fails, offline
    registry: Registry[Any] = Registry().with_resource(
        schema["$id"], DRAFT7.create_resource(schema)
    )
    metaschema = jsonschema.Draft7Validator.META_SCHEMA  # what "Schema Objects" extend
    registry = registry.with_resource(
        "http://json-schema.org/draft-07/schema", DRAFT7.create_resource(metaschema)
    ).crawl()
    return jsonschema.Draft7Validator(schema, registry=registry)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def check(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> None:
    """Valid AsyncAPI 3.0.0, and consistent the way the AsyncAPI parser checks."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    for ref in refs(document):
        resolve(document, ref)
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), (name, message)
    json.dumps(document)  # JSON-ready


# -- the validator is a real one ---------------------------------------------------------


def test_the_validator_rejects_what_asyncapi_rejects(
    validator: jsonschema.Draft7Validator,
) -> None:
    app = conveyor.App("shop")

    @app.handler("orders")
    async def handle(payload: dict[str, Any]) -> None: ...

    good = asyncapi_document(app)
    check(validator, good)
    broken: list[Callable[[dict[str, Any]], object]] = [
        lambda d: d["operations"]["handle"].update(action="eat"),
        lambda d: d.update(asyncapi="2.6.0"),
        lambda d: d["info"].pop("version"),
        lambda d: d["components"]["messages"]["Payload"].update(payload={"type": 5}),
        lambda d: d["components"]["messages"]["Payload"].update(
            payload={"discriminator": {"propertyName": "kind"}}
        ),
        lambda d: d.update(servers={"x": {"host": "h"}}),  # no protocol
    ]
    for breaks in broken:
        document = json.loads(json.dumps(good))
        breaks(document)
        assert list(validator.iter_errors(document)), document


# -- apps ----------------------------------------------------------------------------------


class Item(pydantic.BaseModel):
    sku: str
    qty: Annotated[int, pydantic.Field(gt=0)] = 1


class Card(pydantic.BaseModel):
    kind: Literal["card"] = "card"
    last4: str


class Cash(pydantic.BaseModel):
    kind: Literal["cash"] = "cash"


class Order(pydantic.BaseModel):
    """An order placed in the shop."""

    order_id: int = pydantic.Field(alias="orderId")
    items: list[Item]
    payment: Card | Cash = pydantic.Field(discriminator="kind")
    placed_at: datetime.datetime | None = None
    note: tuple[str, int] | None = None


class Line(msgspec.Struct):
    sku: str
    qty: int = 1


class Refund(msgspec.Struct, tag=True):
    order_id: int
    lines: list[Line]


class Chargeback(msgspec.Struct, tag=True):
    order_id: int


class Dispute(msgspec.Struct):
    case: Refund | Chargeback


@dataclasses.dataclass
class Shipment:
    order_id: int
    carrier: str
    items: list[Item] = dataclasses.field(default_factory=list)


class Cancel(typing_extensions.TypedDict):
    order_id: int
    why: typing_extensions.NotRequired[str]


def test_an_app_without_typed_handlers(validator: jsonschema.Draft7Validator) -> None:
    app = conveyor.App("plain")
    router = conveyor.Router()

    @app.handler("orders")
    async def on_order(payload: dict[str, Any]) -> None:
        """Bill an order.

        Longer text."""

    @app.handler("audit", group="auditors", dead_letter_stream="audit-failures")
    async def on_audit(msg: Message) -> None: ...

    @router.route("order.paid")
    async def paid(payload: dict[str, Any]) -> None: ...

    @router.route("order.shipped")
    async def shipped(payload: dict[str, Any]) -> None: ...

    app.add_handler("events", router)
    document = asyncapi_document(app)
    check(validator, document)
    assert "servers" not in document
    assert document["info"] == {"title": "plain", "version": "0.1.0"}
    assert {k: v["address"] for k, v in document["channels"].items()} == {
        "orders": "orders",
        "orders.dead": "orders.dead",
        "audit": "audit",
        "audit-failures": "audit-failures",
        "events": "events",
        "events.dead": "events.dead",
    }
    operation = document["operations"]["on_order"]
    assert operation["action"] == "receive"
    assert operation["summary"] == "Bill an order."
    assert operation["x-conveyor-group"] == "plain"
    assert document["operations"]["on_audit"]["x-conveyor-group"] == "auditors"
    assert document["operations"]["on_order.dead_letters"]["action"] == "send"
    messages = document["components"]["messages"]
    assert messages["Payload"]["payload"]["type"] == "object"
    assert set(document["channels"]["events"]["messages"]) == {"order.paid", "order.shipped"}
    assert messages["order.paid"]["payload"]["properties"] == {"type": {"const": "order.paid"}}
    assert "DeadLetter" in document["channels"]["audit-failures"]["messages"]


def test_pydantic_models_with_nesting_unions_and_aliases(
    validator: jsonschema.Draft7Validator,
) -> None:
    app = conveyor.App("shop")

    @app.handler("orders")
    async def on_order(order: Order) -> None: ...

    @app.handler("orders", group="analytics")
    async def count(order: Order) -> None: ...

    document = asyncapi_document(app)
    check(validator, document)
    assert document["channels"]["orders"]["messages"] == {
        "Order": {"$ref": "#/components/messages/Order"}  # one message, two operations
    }
    assert document["components"]["messages"]["Order"]["payload"] == {
        "$ref": "#/components/schemas/Order"
    }
    schemas = document["components"]["schemas"]
    assert set(schemas) == {"Order", "Item", "Card", "Cash"}
    order = schemas["Order"]
    assert "orderId" in order["properties"]  # the alias: what the model validates from
    assert order["properties"]["payment"]["discriminator"] == "kind"  # AsyncAPI's form
    assert order["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Item"}
    assert order["description"] == "An order placed in the shop."


def test_msgspec_structs_with_tagged_unions(validator: jsonschema.Draft7Validator) -> None:
    app = conveyor.App("support")

    @app.handler("disputes")
    async def on_dispute(dispute: Dispute) -> None: ...

    @app.handler("refunds")
    async def on_refund(refund: Refund) -> None: ...

    document = asyncapi_document(app)
    check(validator, document)
    schemas = document["components"]["schemas"]
    assert {"Dispute", "Refund", "Chargeback", "Line"} <= set(schemas)
    assert schemas["Dispute"]["properties"]["case"]["discriminator"] == "type"


def test_dataclasses_and_typeddicts_several_streams(
    validator: jsonschema.Draft7Validator,
) -> None:
    app = conveyor.App("warehouse")

    @app.handler("shipments")
    async def on_shipment(shipment: Shipment) -> None: ...

    @app.handler("cancellations")
    async def on_cancel(cancel: Cancel) -> None: ...

    @app.handler("refunds")
    async def on_refund(refund: Refund) -> None: ...

    @app.handler("orders:eu/1")
    async def on_order(order: Order) -> None: ...

    document = asyncapi_document(app, "redis://localhost:6379/0")
    check(validator, document)
    schemas = document["components"]["schemas"]
    assert schemas["Shipment"]["required"] == ["order_id", "carrier"]
    assert schemas["Cancel"]["required"] == ["order_id"]
    assert {"Item", "Order", "Refund", "Line"} <= set(schemas)
    assert document["channels"]["orders_eu_1"]["address"] == "orders:eu/1"


def test_two_types_of_one_name_both_stay(validator: jsonschema.Draft7Validator) -> None:
    class Item(msgspec.Struct):  # another Item than the pydantic one
        code: int

    app = conveyor.App("clash")

    @app.handler("orders")
    async def on_order(order: Order) -> None: ...

    async def on_item(item: Any) -> None: ...

    on_item.__annotations__["item"] = Item
    app.add_handler("items", on_item)
    document = asyncapi_document(app)
    check(validator, document)
    schemas = document["components"]["schemas"]
    assert schemas["Item"]["properties"]["sku"]["type"] == "string"  # the pydantic one
    assert schemas["Item_2"]["properties"]["code"]["type"] == "integer"
    messages = document["components"]["messages"]
    assert messages["Item"]["payload"] == {"$ref": "#/components/schemas/Item_2"}


def test_without_pydantic_or_msgspec_fields_describe_the_payload(
    validator: jsonschema.Draft7Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.asyncapi._installed", lambda name: False)

    @dataclasses.dataclass
    class Parcel:
        parcel_id: int
        weight: float
        fragile: bool = False

    app = conveyor.App("post")

    async def on_parcel(parcel: Any) -> None: ...

    on_parcel.__annotations__["parcel"] = Parcel
    app.add_handler("parcels", on_parcel)

    @app.handler("cancellations")
    async def on_cancel(cancel: Cancel) -> None: ...

    document = asyncapi_document(app)
    check(validator, document)
    assert document["components"]["schemas"]["Parcel"] == {
        "type": "object",
        "title": "Parcel",
        "properties": {
            "parcel_id": {"type": "integer"},
            "weight": {"type": "number"},
            "fragile": {"type": "boolean"},
        },
        "required": ["parcel_id", "weight"],
    }
    assert document["components"]["schemas"]["Cancel"]["required"] == ["order_id"]


# -- servers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://user:s3cret@cache.internal:6379/2?password=s3cret&max_connections=9",
            {"redis": {"host": "cache.internal:6379", "protocol": "redis", "pathname": "/2"}},
        ),
        ("rediss://:s3cret@[::1]:6380", {"rediss": {"host": "[::1]:6380", "protocol": "rediss"}}),
        (
            "nats://tok_s3cret@n1:4222,n2:4222,n3:4222",
            {
                "nats-1": {"host": "n1:4222", "protocol": "nats"},
                "nats-2": {"host": "n2:4222", "protocol": "nats"},
                "nats-3": {"host": "n3:4222", "protocol": "nats"},
            },
        ),
        ("tls://nats.example:4222", {"tls": {"host": "nats.example:4222", "protocol": "tls"}}),
        (
            "kafka://k1:9092,k2:9092?sasl_password=s3cret",
            {
                "kafka-1": {"host": "k1:9092", "protocol": "kafka"},
                "kafka-2": {"host": "k2:9092", "protocol": "kafka"},
            },
        ),
        (
            "sqlite:///var/lib/conveyor.db",
            {
                "sqlite": {
                    "host": "localhost",
                    "protocol": "sqlite",
                    "pathname": "/var/lib/conveyor.db",
                }
            },
        ),
        ("memory://", {"memory": {"host": "localhost", "protocol": "memory"}}),
        (
            "redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster",
            {
                "redis_sentinel-1": {
                    "host": "s1:26379",
                    "protocol": "redis+sentinel",
                    "pathname": "/mymaster",
                },
                "redis_sentinel-2": {
                    "host": "s2:26379",
                    "protocol": "redis+sentinel",
                    "pathname": "/mymaster",
                },
            },
        ),
    ],
)
def test_servers_from_each_scheme_without_credentials(
    validator: jsonschema.Draft7Validator, url: str, expected: dict[str, Any]
) -> None:
    app = conveyor.App("shop")

    @app.handler("orders")
    async def on_order(order: Order) -> None: ...

    document = asyncapi_document(app, url)
    check(validator, document)
    assert document["servers"] == expected
    text = json.dumps(document)
    assert "s3cret" not in text
    assert "user" not in text


def test_a_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a URL"):
        servers("localhost:6379")
    with pytest.raises(ConfigurationError, match="port 'notaport'"):
        servers("redis://127.0.0.1:notaport/0")
    with pytest.raises(ConfigurationError, match="port '70000'"):
        servers("kafka://k1:9092,k2:70000")
    assert list(servers("kafka://k1:9092,[::1]:9093")) == ["kafka-1", "kafka-2"]


# -- the command ---------------------------------------------------------------------------

APP_MODULE = '''
import pydantic
import conveyor

class Order(pydantic.BaseModel):
    order_id: int

app = conveyor.App("shop")
empty = conveyor.App("empty")

@app.handler("orders")
async def on_order(order: Order) -> None:
    """Bill an order."""
'''


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"asyncapi_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    return name


def test_the_command_writes_a_valid_document(
    validator: jsonschema.Draft7Validator, app_module: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["asyncapi", f"{app_module}:app"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    check(validator, document)
    assert "servers" not in document
    assert document["operations"]["on_order"]["summary"] == "Bill an order."
    target = tmp_path / "asyncapi.json"
    result = runner.invoke(
        main,
        ["asyncapi", f"{app_module}:app", "--url", "kafka://:pw@k1:9092", "-o", str(target)],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(target.read_text(encoding="utf-8"))
    check(validator, written)
    assert written["servers"] == {"kafka": {"host": "k1:9092", "protocol": "kafka"}}
    result = runner.invoke(
        main, ["asyncapi", f"{app_module}:app"], env={"CONVEYOR_URL": "nats://n1:4222"}
    )
    assert json.loads(result.stdout)["servers"]["nats"]["host"] == "n1:4222"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{m}:nope"], "has no attribute 'nope'"),
        (["no_such_module_here:app"], "cannot import module"),
        (["{m}:app", "--url", "localhost:6379"], "not a backend URL: 'localhost:6379'"),
        (["{m}:app", "--url", "nats://[::1"], "cannot parse the URL 'nats://[::1': Invalid IPv6"),
        (
            ["{m}:app", "--url", "bogus://x"],
            "error: UnknownSchemeError: no conveyor backend handles bogus:// URLs; installed"
            " schemes: ",
        ),
        (["{m}:app", "--url", "redis://127.0.0.1:notaport/0"], "port 'notaport'"),
        (["{m}:empty"], "{m}:empty has no handlers: register one with @empty.handler(STREAM)"),
        (["{m}:app", "-o", "/nonexistent-dir/out.json"], "cannot write /nonexistent-dir/out.json"),
    ],
)
def test_the_command_says_what_is_wrong_in_one_line(
    app_module: str, args: list[str], says: str
) -> None:
    result = CliRunner().invoke(main, ["asyncapi", *[a.format(m=app_module) for a in args]])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says.format(m=app_module) in lines[0]
