"""What the proxy does to messages on the way through: hop-by-hop fields, the
streaming decision, body buffering with its switch to streaming, and the
``.stream`` transforms.

Theory of operation
-------------------
A body is *buffered* (read whole, so the ``request`` / ``response`` hooks can
read and change it) unless it *streams*: an addon set ``.stream`` in a
``*headers`` hook; its Content-Length is above ``stream_large_bodies``; it is
plainly a stream (``is_stream_type``); or, for a response, its request
streamed.  A buffered body of unknown length that passes the threshold switches
to streaming: ``read_body`` hands back what it has and the rest is relayed
after it (mitmproxy 7+ does the same).  A streamed body is relayed one read at
a time, never re-buffered.

The ``.stream`` value picks the transform (``transform``): ``True`` relays as
is; a generator function (sync or async) gets the chunk iterator and yields
what goes out (the seed documents' form); any other callable is called per
chunk and once more with ``b""`` at the end to flush (mitmproxy 7+).  A sync
generator over chunks that arrive asynchronously has to block between chunks,
so it runs in a worker thread, pulling each chunk from the event loop with
``run_coroutine_threadsafe``: one chunk in flight, so backpressure holds.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .._headers import Headers

__all__ = [
    "BodyTooLarge",
    "HOP_BY_HOP",
    "is_stream_type",
    "limited",
    "read_body",
    "strip_hop_by_hop",
    "transform",
]

# RFC 9110 section 7.6.1: Connection and the fields it names are for one hop;
# so are the classic hop-by-hop fields of RFC 2616 section 13.5.1 (Keep-Alive,
# Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"})

_STREAM_TYPES = frozenset({"text/event-stream", "application/x-ndjson", "multipart/x-mixed-replace"})


class BodyTooLarge(Exception):
    """A body passed ``body_size_limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than body_size_limit ({limit} bytes)")
        self.limit = limit


def strip_hop_by_hop(headers: Headers, *, keep_upgrade: bool = False) -> Headers:
    """A copy of ``headers`` without the hop-by-hop fields (``keep_upgrade`` for a 101 relay)."""
    listed: set[bytes] = set()
    for value in headers.get_raw(b"connection"):
        listed.update(token.strip().lower() for token in value.split(b",") if token.strip())
    if keep_upgrade:
        listed.discard(b"upgrade")
    kept = [
        triple
        for triple in headers.triples()
        if not (
            (triple[1] in HOP_BY_HOP and not (keep_upgrade and triple[1] in (b"upgrade", b"connection")))
            or triple[1].startswith(b"proxy-")
            or triple[1] in listed
        )
    ]
    return type(headers).from_triples(kept)


def media_type(headers: Headers) -> str:
    value = headers.get("content-type", "")
    return value.split(";", 1)[0].strip().lower()


def is_stream_type(headers: Headers, *, response: bool) -> bool:
    """A body that is plainly a stream: SSE, NDJSON, gRPC, a replacing multipart; ``X-Accel-Buffering: no``."""
    media = media_type(headers)
    if media in _STREAM_TYPES or media.startswith("application/grpc"):
        return True
    return response and headers.get("x-accel-buffering", "").strip().lower() == "no"


def content_length(headers: Headers) -> int | None:
    values = headers.get_raw(b"content-length")
    if len(values) == 1 and values[0].strip().isdigit():
        return int(values[0])
    return None


async def read_body(source: AsyncIterator[bytes], threshold: int | None, limit: int | None) -> tuple[bytes, bool]:
    """Buffer ``source``; return (bytes, True) as soon as it passes ``threshold`` (the rest streams)."""
    buffer = bytearray()
    async for chunk in source:
        buffer += chunk
        if limit is not None and len(buffer) > limit:
            raise BodyTooLarge(limit)
        if threshold is not None and len(buffer) > threshold:
            return bytes(buffer), True
    return bytes(buffer), False


async def limited(source: AsyncIterator[bytes], limit: int | None, prefix: bytes = b"") -> AsyncIterator[bytes]:
    """``prefix`` then ``source``, raising ``BodyTooLarge`` once past ``limit`` (the relay then aborts)."""
    seen = len(prefix)
    if prefix:
        yield prefix
    async for chunk in source:
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise BodyTooLarge(limit)
        yield chunk


async def recorded(
    source: AsyncIterator[bytes], bound: int, done: Callable[[bytes, bool], None]
) -> AsyncIterator[bytes]:
    """Relay ``source``, keeping its first ``bound`` bytes; ``done(prefix, truncated)`` at the end."""
    kept = bytearray()
    truncated = False
    async for chunk in source:
        room = bound - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
        yield chunk
    done(bytes(kept), truncated)


def transform(setting: object) -> Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None:
    """The body transform a ``.stream`` value asks for; None for ``True`` (relay as is)."""
    if not callable(setting) or isinstance(setting, bool):
        return None
    fn: Callable[..., Any] = setting
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is a generator
    if inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(call):
        return lambda source: _async_generator(fn, source)
    if inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(call):
        return lambda source: _sync_generator(fn, source)
    return lambda source: _per_chunk(fn, source)


def may_change_length(setting: object) -> bool:
    return transform(setting) is not None


def _outputs(result: object) -> list[bytes]:
    if result is None:
        return []
    if isinstance(result, (bytes, bytearray, memoryview)):
        return [bytes(result)] if result else []
    if isinstance(result, str):
        return [result.encode("utf-8")] if result else []
    if isinstance(result, Iterable):
        return [piece for item in result for piece in _outputs(item)]
    raise TypeError(f"a stream callable returned {type(result).__name__}, not bytes")


async def _per_chunk(fn: Callable[[bytes], Any], source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for data in source:
        result = fn(data)
        if inspect.isawaitable(result):
            result = await result
        for piece in _outputs(result):
            yield piece
    result = fn(b"")  # the flush: mitmproxy 7+ calls the callable once more with b"" at the end
    if inspect.isawaitable(result):
        result = await result
    for piece in _outputs(result):
        yield piece


async def _async_generator(fn: Callable[..., Any], source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for item in fn(source):
        for piece in _outputs(item):
            yield piece


async def _sync_generator(fn: Callable[..., Any], source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end = object()

    async def pull() -> object:
        try:
            return await source.__anext__()
        except StopAsyncIteration:
            return end

    def chunks() -> Iterable[bytes]:  # runs in the worker thread
        while True:
            item = asyncio.run_coroutine_threadsafe(pull(), loop).result()
            if item is end:
                return
            assert isinstance(item, bytes)
            yield item

    generator = fn(chunks())
    while True:
        item = await asyncio.to_thread(next, generator, end)
        if item is end:
            return
        for piece in _outputs(item):
            yield piece
