"""Typed payloads: validate and convert a payload into the type a handler asks for.

A payload-style handler whose first parameter is annotated with a pydantic model, a
msgspec ``Struct``, a dataclass or a ``TypedDict`` receives the payload converted to that
type; `publish` accepts instances of those types too.

```python
class Order(pydantic.BaseModel):
    order_id: int

@app.handler("orders")
async def handle(order: Order) -> None: ...        # order.order_id is an int

await backend.publish("orders", Order(order_id=7))  # sent as {"order_id": 7}
```

Who validates what (the validator is built once per handler, never per message): a
pydantic model validates itself (``model_validate``, pydantic's lax mode unless the model
says strict); a msgspec Struct goes through ``msgspec.convert`` (strict: no str → int
coercion); a dataclass or a TypedDict through pydantic's ``TypeAdapter`` if pydantic is
installed, else ``msgspec.convert`` if msgspec is, else a built-in check that the required
keys are there (value types unchecked).

A payload that does not validate raises `PayloadValidationError`, whose text lists every
error (``field.path: what is wrong``); the engine dead-letters that message at once.
pydantic and msgspec are optional (``conveyor[pydantic]``, ``conveyor[msgspec]``): a type
is recognised by looking in ``sys.modules`` (a class of a library that was never imported
cannot exist), so the core never imports either unless a handler or a payload uses them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import sys
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from typing_extensions import is_typeddict

from conveyor.errors import PayloadValidationError, UnserializablePayloadError
from conveyor.message import Message

__all__ = [
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

#: What `publish` accepts: a dict of JSON values, or an instance of a pydantic model, a
#: msgspec Struct or a dataclass (a TypedDict is a dict already).
Payload: TypeAlias = Any

#: The kinds of typed payload.
Kind = Literal["pydantic", "msgspec", "dataclass", "typeddict"]

#: Most validation errors listed in one `PayloadValidationError` message.
MAX_LISTED = 20


def _installed(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a finder that refuses it (or a broken install): not there
        return False


def payload_kind(annotation: object) -> Kind | None:
    """The kind of typed payload `annotation` is, or None (a dict, Any, a Message...)."""
    if not inspect.isclass(annotation) or annotation is Message:  # Message: a dataclass
        return None  # nor dict[str, Any], Optional[...], "Order"...
    try:
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and issubclass(annotation, pydantic.BaseModel):
            return "pydantic"
        msgspec = sys.modules.get("msgspec")
        if msgspec is not None and issubclass(annotation, msgspec.Struct):
            return "msgspec"
    except TypeError:  # a class-like object issubclass refuses
        return None
    if dataclasses.is_dataclass(annotation):
        return "dataclass"
    if is_typeddict(annotation):
        return "typeddict"
    return None


def first_annotation(func: Callable[..., Any]) -> object:
    """The annotation of `func`'s first parameter, string annotations resolved where
    they can be (``inspect.Parameter.empty`` when there is none)."""
    target = func
    if not inspect.isroutine(func) and not isinstance(func, functools.partial):
        target = getattr(func, "__call__", func)  # noqa: B004 - an object with async __call__
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    if not params:
        return inspect.Parameter.empty
    annotation: object = params[0].annotation
    if isinstance(annotation, str):
        hinted = target.func if isinstance(target, functools.partial) else target
        try:
            hints = typing.get_type_hints(hinted)
        except Exception:  # noqa: BLE001 - an unresolvable annotation stays a string
            return annotation
        annotation = hints.get(params[0].name, annotation)
    return annotation


@dataclass(frozen=True, slots=True, eq=False)
class PayloadAdapter:
    """Validates payloads into one type (built once per handler by `payload_adapter`).

    Attributes:
        type: The payload type.
        kind: Which kind of type it is.
        validator: ``pydantic``, ``msgspec`` or ``builtin``: who validates.
        convert: ``convert(payload_dict)`` returns the typed value or raises
            `PayloadValidationError`.
    """

    type: type
    kind: Kind
    validator: str
    convert: Callable[[dict[str, Any]], Any]

    @property
    def name(self) -> str:
        """The type's name (its ``__name__``)."""
        return self.type.__name__


def payload_adapter(annotation: object) -> PayloadAdapter | None:
    """The adapter for `annotation` when it is a typed payload, else None.

    Raises:
        TypeError: the type is typed but its validator refuses it (pydantic's message
            says why, e.g. ``typing.TypedDict`` on Python < 3.12).
    """
    kind = payload_kind(annotation)
    if kind is None:
        return None
    tp = typing.cast(type, annotation)
    if kind == "pydantic":
        validate = (  # the model's compiled validator: model_validate without its wrapper
            tp.__pydantic_validator__.validate_python  # type: ignore[attr-defined]
            if getattr(tp, "__pydantic_complete__", False)
            else tp.model_validate  # type: ignore[attr-defined]  # built on first use
        )
        return PayloadAdapter(tp, kind, "pydantic", _pydantic_converter(tp, validate))
    if kind == "msgspec" or (not _installed("pydantic") and _installed("msgspec")):
        return PayloadAdapter(tp, kind, "msgspec", _msgspec_converter(tp))
    if _installed("pydantic"):
        from pydantic import TypeAdapter
        from pydantic.errors import PydanticUserError

        try:
            adapter: Any = TypeAdapter(tp)
        except PydanticUserError as exc:
            raise TypeError(f"pydantic cannot validate {tp.__qualname__}: {exc}") from None
        convert = _pydantic_converter(tp, adapter.validate_python)
        return PayloadAdapter(tp, kind, "pydantic", convert)
    return PayloadAdapter(tp, kind, "builtin", _builtin_converter(tp, kind))


def _pydantic_converter(
    tp: type, validate: Callable[[object], Any]
) -> Callable[[dict[str, Any]], Any]:
    from pydantic import ValidationError

    def convert(data: dict[str, Any]) -> Any:
        try:
            return validate(data)
        except ValidationError as exc:
            found = exc.errors(include_url=False, include_input=False)
            lines = [f"{_path(e['loc'])}: {e['msg']}" for e in found]
            errors: list[dict[str, object]] = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in found
            ]
            raise PayloadValidationError(_message(tp, lines), errors) from None

    return convert


def _msgspec_converter(tp: type) -> Callable[[dict[str, Any]], Any]:
    import msgspec

    convert_to = msgspec.convert

    def convert(data: dict[str, Any]) -> Any:
        try:
            return convert_to(data, tp)
        except msgspec.ValidationError as exc:
            text = str(exc)
            raise PayloadValidationError(
                _message(tp, [text]), [{"loc": [], "msg": text, "type": "msgspec"}]
            ) from None

    return convert


def _builtin_converter(tp: type, kind: Kind) -> Callable[[dict[str, Any]], Any]:
    """Required keys present (values unchecked): a dataclass instance, or the dict."""
    if kind == "typeddict":
        required = frozenset(required_keys(tp))
        names: frozenset[str] | None = None
    else:
        fields = [f for f in dataclasses.fields(tp) if f.init]
        names = frozenset(f.name for f in fields)
        required = frozenset(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )

    def convert(data: dict[str, Any]) -> Any:
        missing = sorted(required.difference(data))
        if missing:
            lines = [f"{name}: Field required" for name in missing]
            errors = [{"loc": [n], "msg": "Field required", "type": "missing"} for n in missing]
            raise PayloadValidationError(_message(tp, lines), errors)  # type: ignore[arg-type]
        if names is None:
            return data
        return tp(**{key: value for key, value in data.items() if key in names})

    return convert


def required_keys(tp: type) -> list[str]:
    """The required keys of TypedDict `tp`, in order; ``NotRequired[...]`` and
    ``Required[...]`` are honoured even as strings (``from __future__ import
    annotations`` hides them from ``__required_keys__``)."""
    required = set(getattr(tp, "__required_keys__", ()))
    for name, hint in getattr(tp, "__annotations__", {}).items():
        if isinstance(hint, typing.ForwardRef):
            hint = hint.__forward_arg__
        if isinstance(hint, str):
            head = hint.split("[", 1)[0].rsplit(".", 1)[-1].strip()
            if head == "NotRequired":
                required.discard(name)
            elif head == "Required":
                required.add(name)
    return [name for name in getattr(tp, "__annotations__", {}) if name in required]


def _path(loc: Iterable[object]) -> str:
    return ".".join(str(part) for part in loc) or "(payload)"


def _message(tp: type, lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    if len(lines) > MAX_LISTED:
        shown.append(f"... and {len(lines) - MAX_LISTED} more")
    count = f"{len(lines)} validation error{'s' if len(lines) != 1 else ''}"
    return f"payload is not a valid {tp.__qualname__} ({count}): " + "; ".join(shown)


def typed_handler(
    handler: Callable[[Any], Awaitable[Any]], adapter: PayloadAdapter
) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """`handler` taking the payload dict: converted by `adapter` before the call (a
    failure raises `PayloadValidationError` from the call itself)."""
    convert = adapter.convert

    def call(payload: dict[str, Any]) -> Awaitable[Any]:
        return handler(convert(payload))

    call.__qualname__ = getattr(handler, "__qualname__", repr(handler))
    call.__name__ = getattr(handler, "__name__", call.__qualname__)
    call.__wrapped__ = handler  # type: ignore[attr-defined]
    return call


# -- publishing typed values ----------------------------------------------------------

_dumpers: dict[type, Callable[[Any], Any]] = {}


def to_payload(value: object) -> Any:
    """`value` as a payload dict when it is a pydantic model, msgspec Struct or dataclass
    instance (JSON mode: datetimes become ISO strings, aliases are used); anything else
    is returned as it is (for `publish` to accept or refuse).

    Raises:
        UnserializablePayloadError: the library cannot turn a field into JSON.
    """
    kind = type(value)
    dump = _dumpers.get(kind)
    if dump is None:
        dump = _dumpers[kind] = _dumper(kind)
    return dump(value)


def _same(value: object) -> object:
    return value


def _dumper(kind: type) -> Callable[[Any], Any]:
    typed = payload_kind(kind)
    if typed is None:
        return _same
    if typed == "pydantic":
        return _pydantic_dumper(kind, kind.model_dump)  # type: ignore[attr-defined]
    if typed == "dataclass" and _installed("pydantic"):
        from pydantic import TypeAdapter
        from pydantic.errors import PydanticUserError

        try:
            adapter: Any = TypeAdapter(kind)
        except PydanticUserError:  # a field type pydantic cannot handle: try the rest
            pass
        else:
            return _pydantic_dumper(kind, adapter.dump_python)
    if typed == "msgspec" or _installed("msgspec"):
        return _msgspec_dumper(kind)
    return dataclasses.asdict


def _pydantic_dumper(kind: type, dump: Callable[..., Any]) -> Callable[[Any], Any]:
    from pydantic_core import PydanticSerializationError

    def to_json(value: object) -> Any:
        try:
            return dump(value, mode="json", by_alias=True)
        except PydanticSerializationError as exc:
            raise UnserializablePayloadError(f"{kind.__qualname__}: {exc}") from None

    return to_json


def _msgspec_dumper(kind: type) -> Callable[[Any], Any]:
    import msgspec

    def to_json(value: object) -> Any:
        try:
            return msgspec.to_builtins(value)
        except (TypeError, msgspec.ValidationError) as exc:
            raise UnserializablePayloadError(f"{kind.__qualname__}: {exc}") from None

    return to_json
