"""Discovery on JetStream: the conveyor streams a `NatsBackend` can address, and their groups.

A conveyor stream ``s`` is the JetStream stream ``<stream_prefix><escaped s>`` capturing
``<subject_prefix>.<escaped s>`` (`conveyor_nats.names`). ``STREAM.LIST`` filtered on
``<subject_prefix>.>`` finds them (paged, as the server answers); names that do not
un-escape, or whose subject is not the one conveyor would use, are left out. Groups are the
durable consumers of each stream (``CONSUMER.LIST``), un-escaped the same way. The raw
list reply is read (not nats-py's ``streams_info``) because its parsed state drops
``first_ts``, the oldest entry's time.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js import JetStreamContext, api

from conveyor.discovery import StreamInfo
from conveyor_nats.names import unescape_name
from conveyor_nats.settings import NatsSettings

__all__ = ["list_groups", "list_streams", "parse_time"]


def parse_time(text: object) -> float | None:
    """Seconds since the epoch of a JetStream RFC 3339 time (nanoseconds cut to micro-
    seconds); None for the zero time or anything unreadable."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    head, dot, tail = text.partition(".")
    if dot:
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits) :]
        head = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(head.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _request(nc: Client, subject: str, body: dict[str, Any], timeout: float) -> Any:
    try:
        reply = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except NoRespondersError:
        raise nats.js.errors.ServiceUnavailableError from None
    data = json.loads(reply.data)
    if "error" in data:
        nats.js.errors.APIError.from_error(data["error"])  # raises
    return data


def _conveyor_name(raw: dict[str, Any], settings: NatsSettings) -> str | None:
    config = raw.get("config") or {}
    name = str(config.get("name", ""))
    if not name.startswith(settings.stream_prefix):
        return None
    escaped = name[len(settings.stream_prefix) :]
    try:
        stream = unescape_name(escaped)
    except ValueError:
        return None
    if f"{settings.subject_prefix}.{escaped}" not in (config.get("subjects") or ()):
        return None
    return stream


async def list_groups(js: JetStreamContext, jetstream_name: str) -> list[str]:
    """Un-escaped names of the durable consumers of JetStream stream `jetstream_name`.

    Raises:
        nats.js.errors.NotFoundError: no such stream.
    """
    out: list[str] = []
    offset = 0
    while True:
        page = await js.consumers_info(jetstream_name, offset)
        for consumer in page:
            durable = consumer.config.durable_name if consumer.config else None
            try:
                out.append(unescape_name(durable or ""))
            except ValueError:
                continue  # ephemeral, or not named by conveyor
        offset += len(page)
        if not page:
            return sorted(out)


async def list_streams(
    nc: Client, js: JetStreamContext, settings: NatsSettings
) -> list[StreamInfo]:
    """Every conveyor stream under `settings`' prefixes, with length, oldest entry and
    groups. Client errors are raised as they are (the backend maps them)."""
    subject = f"{api.DEFAULT_PREFIX}.STREAM.LIST"
    found: list[StreamInfo] = []
    offset = 0
    while True:
        body = {"offset": offset, "subject": f"{settings.subject_prefix}.>"}
        data = await _request(nc, subject, body, settings.request_timeout)
        page = data.get("streams") or []
        for raw in page:
            stream = _conveyor_name(raw, settings)
            if stream is None:
                continue
            state = raw.get("state") or {}
            messages = int(state.get("messages", 0))
            groups: list[str] = []
            if state.get("consumer_count"):
                try:
                    groups = await list_groups(js, raw["config"]["name"])
                except nats.js.errors.NotFoundError:
                    continue  # deleted since the listing
            oldest = parse_time(state.get("first_ts")) if messages else None
            found.append(StreamInfo(stream, messages, tuple(groups), oldest))
        offset += len(page)
        if not page or offset >= int(data.get("total", 0)):
            return found
