"""AsyncAPI 3.0: describe an `App` as an AsyncAPI document (``conveyor asyncapi``).

```python
from conveyor.asyncapi import asyncapi_document

document = asyncapi_document(app, "redis://localhost:6379/0")   # a JSON-ready dict
```

What the document holds:

* ``channels``: one per stream an app handler consumes (``address``: the stream name),
  and one per dead-letter stream its handlers write to;
* ``operations``: one ``receive`` per handler (named after the handler) and one ``send``
  of its dead letters (``<operation>.dead_letters``);
* ``components.messages`` / ``components.schemas``: one message per payload type. A
  typed handler's (`conveyor.typed`) schema comes from pydantic (models; dataclasses and
  TypedDicts too when pydantic is installed) or msgspec (Structs; dataclasses and
  TypedDicts when only msgspec is), else from the dataclass's or TypedDict's fields; a
  plain or `Message`-style handler gets a generic object; a `Router` one message per
  event type;
* ``servers``: from `url` (one per host), the URL's scheme as the protocol; user names,
  passwords and query options (which may hold tokens) are left out.

Schemas are made valid AsyncAPI Schema Objects (JSON Schema draft-07 plus ``discriminator``
as a property name): nested definitions live in ``components.schemas`` and every ``$ref``
points inside the document. The tests validate documents against the official AsyncAPI
3.0.0 JSON Schema.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from conveyor.app import App, HandlerSpec
from conveyor.errors import ConfigurationError
from conveyor.handlers import wants_message
from conveyor.options import redact_url
from conveyor.processor import ProcessorOptions
from conveyor.router import Router
from conveyor.typed import _installed, first_annotation, payload_kind, required_keys

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "servers"]

#: The AsyncAPI version of the documents written here.
ASYNCAPI_VERSION = "3.0.0"

SCHEMAS = "#/components/schemas/"
MESSAGES = "#/components/messages/"

#: The payload of a handler that takes any dict.
GENERIC = {"type": "object", "description": "A JSON object."}

#: What `conveyor.processor` writes to a dead-letter stream.
DEAD_LETTER = {
    "type": "object",
    "title": "DeadLetter",
    "description": "A message that could not be handled, and why.",
    "properties": {
        "original": {"description": "The payload (null when it could not be decoded)."},
        "error_type": {"type": "string"},
        "error": {"type": "string"},
        "traceback": {"type": ["string", "null"]},
        "delivery_count": {"type": "integer", "minimum": 1},
        "original_id": {"type": "string"},
        "stream": {"type": "string"},
        "group": {"type": "string"},
        "consumer": {"type": "string"},
        "dead_lettered_at": {"type": "number", "description": "Seconds since the epoch."},
    },
    "required": [
        "original",
        "error_type",
        "error",
        "traceback",
        "delivery_count",
        "original_id",
        "stream",
        "group",
        "consumer",
        "dead_lettered_at",
    ],
}

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def asyncapi_document(
    app: App,
    url: str | None = None,
    *,
    version: str = "0.1.0",
    description: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of `app` (see the module docstring), as a dict ready
    for ``json.dumps``.

    Args:
        app: The application.
        url: The backend URL it runs on; None leaves ``servers`` out.
        version: ``info.version`` (the version of the app's API).
        description: ``info.description``.

    Raises:
        ConfigurationError: `url` is not a URL.
    """
    builder = _Builder()
    for spec in app.handlers:
        builder.add(spec)
    info: dict[str, Any] = {"title": app.name, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    if url is not None:
        document["servers"] = servers(url)
    document["defaultContentType"] = "application/json"
    document["channels"] = builder.channels
    document["operations"] = builder.operations
    document["components"] = {"messages": builder.messages, "schemas": builder.schemas()}
    return document


def servers(url: str) -> dict[str, Any]:
    """AsyncAPI server objects for `url`: one per host, no credentials, no query.

    Raises:
        ConfigurationError: `url` has no ``scheme://``, or a port that is not a number
            from 0 to 65535.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(f"not a URL (expected scheme://...): {redact_url(url)!r}")
    parts = urlsplit(url)
    hosts = [h for h in parts.netloc.rpartition("@")[2].split(",") if h] or ["localhost"]
    for host in hosts:
        _check_port(host, url)
    out: dict[str, Any] = {}
    for index, host in enumerate(hosts, 1):
        server: dict[str, Any] = {"host": host, "protocol": scheme.lower()}
        if parts.path not in ("", "/"):
            server["pathname"] = parts.path
        out[_safe(scheme if len(hosts) == 1 else f"{scheme}-{index}")] = server
    return out


def _check_port(host: str, url: str) -> None:
    """Refuse ``host:port`` whose port is not a number 0-65535 (``[v6]:port`` too)."""
    port = host.rpartition("]")[2] if host.startswith("[") else host
    port = port.partition(":")[2]
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ConfigurationError(f"port {port!r} in {redact_url(url)!r} is not a number 0-65535")


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name) or "_"


def _unique(name: str, taken: Iterable[str]) -> str:
    used = set(taken)
    candidate, n = _safe(name), 1
    while candidate in used:
        n += 1
        candidate = f"{_safe(name)}_{n}"
    return candidate


class _Builder:
    """Channels, operations and messages, added one handler at a time."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self._channel_of: dict[str, str] = {}  # stream -> channel key
        self._message_of: dict[object, str] = {}  # payload type / marker -> message key
        self._typed: dict[str, type] = {}  # message key -> payload type (schema to come)

    def add(self, spec: HandlerSpec) -> None:
        channel = self._channel(spec.stream)
        messages = [self._message(key, value) for key, value in self._payloads(spec)]
        for message in messages:
            self.channels[channel]["messages"][message] = {"$ref": MESSAGES + message}
        name = getattr(spec.handler, "__name__", None) or type(spec.handler).__name__
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "title": getattr(spec.handler, "__qualname__", name),
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            "x-conveyor-group": spec.group,
        }
        doc = inspect.getdoc(spec.handler) if inspect.isroutine(spec.handler) else None
        if doc:
            operation["summary"] = doc.splitlines()[0]
            operation["description"] = doc
        key = _unique(name, self.operations)
        self.operations[key] = operation
        dead = ProcessorOptions.from_mapping(spec.options).dead_letter_stream_of(spec.stream)
        dead_channel = self._channel(dead)
        letter = self._message(("dead-letter",), ("DeadLetter", DEAD_LETTER))
        self.channels[dead_channel]["messages"][letter] = {"$ref": MESSAGES + letter}
        self.operations[_unique(f"{key}.dead_letters", self.operations)] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{dead_channel}"},
            "title": f"Dead letters of {name}",
            "messages": [{"$ref": f"#/channels/{dead_channel}/messages/{letter}"}],
        }

    def _channel(self, stream: str) -> str:
        key = self._channel_of.get(stream)
        if key is None:
            key = self._channel_of[stream] = _unique(stream, self.channels)
            self.channels[key] = {"address": stream, "messages": {}}
        return key

    def _payloads(self, spec: HandlerSpec) -> list[tuple[object, Any]]:
        """(identity, payload) of each message `spec`'s handler takes: identity is the
        payload type, or a tuple naming a generic payload; payload is the type or a
        (name, schema) pair."""
        handler = spec.handler
        if isinstance(handler, Router):
            return [
                (("route", handler.type_field, t), (t, _route_schema(handler.type_field, t)))
                for t in handler.types
            ] or [(("payload",), ("Payload", GENERIC))]
        message = spec.options.get("message")
        takes_message = wants_message(handler) if message is None else message
        annotation = None if takes_message else first_annotation(handler)
        if payload_kind(annotation) is not None:
            return [(annotation, annotation)]
        return [(("payload",), ("Payload", GENERIC))]

    def _message(self, identity: object, payload: Any) -> str:
        key = self._message_of.get(identity)
        if key is not None:
            return key
        name, schema = (payload.__name__, None) if isinstance(payload, type) else payload
        key = self._message_of[identity] = _unique(name, self.messages)
        self.messages[key] = {"name": key, "title": name, "contentType": "application/json"}
        if schema is None:
            self._typed[key] = payload
        else:
            self.messages[key]["payload"] = schema
        return key

    def schemas(self) -> dict[str, Any]:
        """Fill in the payloads of typed messages; return the schemas they refer to."""
        roots, schemas = _type_schemas(list(self._typed.values()))
        for key, tp in self._typed.items():
            self.messages[key]["payload"] = roots[tp]
        return schemas


def _route_schema(type_field: str, event_type: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {type_field: {"const": event_type}},
        "required": [type_field],
    }


# -- schemas of payload types ---------------------------------------------------------


def _type_schemas(types: list[type]) -> tuple[dict[type, Any], dict[str, Any]]:
    """(type -> payload schema, components.schemas) for the typed payloads, every
    reference pointing into components.schemas."""
    roots: dict[type, Any] = {}
    schemas: dict[str, Any] = {}
    by: dict[str, list[type]] = {"pydantic": [], "msgspec": [], "fields": []}
    for tp in types:
        by[_schema_source(tp)].append(tp)
    for source, make in (("pydantic", _pydantic_group), ("msgspec", _msgspec_group)):
        if by[source]:
            try:
                group_roots, group = make(by[source])
            except Exception:  # noqa: BLE001 - a type the library cannot describe: fields
                by["fields"].extend(by[source])
                continue
            _merge(group_roots, group, roots, schemas)
    for tp in by["fields"]:
        root = {"$ref": SCHEMAS + tp.__name__}
        _merge({tp: root}, {tp.__name__: _field_schema(tp)}, roots, schemas)
    return roots, {name: _asyncapi_schema(schema) for name, schema in schemas.items()}


def _schema_source(tp: type) -> str:
    kind = payload_kind(tp)
    if kind in ("pydantic", "msgspec"):
        return str(kind)
    if _installed("pydantic"):
        from pydantic import TypeAdapter
        from pydantic.errors import PydanticUserError

        try:
            TypeAdapter(tp)
        except PydanticUserError:
            pass
        else:
            return "pydantic"
    return "msgspec" if _installed("msgspec") else "fields"


def _pydantic_group(types: list[type]) -> tuple[dict[type, Any], dict[str, Any]]:
    from pydantic import TypeAdapter

    inputs: list[tuple[type, Literal["validation"], TypeAdapter[Any]]] = [
        (tp, "validation", TypeAdapter(tp)) for tp in types
    ]
    found, definitions = TypeAdapter.json_schemas(inputs, ref_template=SCHEMAS + "{model}")
    return {tp: found[(tp, "validation")] for tp in types}, dict(definitions.get("$defs", {}))


def _msgspec_group(types: list[type]) -> tuple[dict[type, Any], dict[str, Any]]:
    import msgspec

    found, components = msgspec.json.schema_components(types, ref_template=SCHEMAS + "{name}")
    return dict(zip(types, found, strict=True)), dict(components)


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _field_schema(tp: type) -> dict[str, Any]:
    """A schema from a dataclass's or TypedDict's fields (scalar types only)."""
    if dataclasses.is_dataclass(tp):
        fields = {f.name: f.type for f in dataclasses.fields(tp)}
        required = [
            f.name
            for f in dataclasses.fields(tp)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
    else:
        fields = dict(getattr(tp, "__annotations__", {}))
        required = required_keys(tp)
    try:
        fields.update(typing.get_type_hints(tp))
    except Exception:  # noqa: BLE001 - unresolvable hints: described as any value
        pass
    properties = {
        name: {"type": _JSON_TYPES[hint]} if hint in _JSON_TYPES else {}
        for name, hint in fields.items()
    }
    return {"type": "object", "title": tp.__name__, "properties": properties, "required": required}


def _merge(
    group_roots: dict[type, Any],
    group: dict[str, Any],
    roots: dict[type, Any],
    schemas: dict[str, Any],
) -> None:
    """Add one generator's schemas, renaming those whose name another one took (or that
    are not valid component names) and rewriting the references to them."""
    renames: dict[str, str] = {}
    for name, schema in group.items():
        if _safe(name) == name and schemas.get(name, schema) == schema:
            continue
        renames[name] = _unique(name, [*schemas, *group, *renames.values()])
    rename = _renamer({SCHEMAS + old: SCHEMAS + new for old, new in renames.items()})
    for name, schema in group.items():
        schemas[renames.get(name, name)] = rename(schema)
    for tp, root in group_roots.items():
        roots[tp] = rename(root)


def _renamer(refs: dict[str, str]) -> Callable[[Any], Any]:
    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: refs.get(v, v) if k == "$ref" and isinstance(v, str) else rename(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rename(item) for item in node]
        return node

    return rename if refs else (lambda node: node)


def _asyncapi_schema(node: Any) -> Any:
    """`node` as an AsyncAPI Schema Object: OpenAPI-style ``discriminator`` objects (from
    pydantic and msgspec tagged unions) become the property name AsyncAPI expects."""
    if isinstance(node, dict):
        out = {k: _asyncapi_schema(v) for k, v in node.items()}
        discriminator = out.get("discriminator")
        if isinstance(discriminator, dict):
            out["discriminator"] = discriminator.get("propertyName", "")
            if not out["discriminator"]:
                del out["discriminator"]
        return out
    if isinstance(node, list):
        return [_asyncapi_schema(item) for item in node]
    return node
