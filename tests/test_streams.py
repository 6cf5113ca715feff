"""The body buffer and the stream objects (layer 2, ``_streams``): water marks, errors, release, re-chunking."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import httpstream
from httpstream._streams import BodyBuffer, ByteStream, ResponseStream, aiter_chunks


async def test_water_marks_pause_once_and_resume_once_with_credit_for_every_byte() -> None:
    calls: list[str] = []
    consumed: list[int] = []
    buffer = BodyBuffer(
        high_water=10,
        low_water=4,
        pause=lambda: calls.append("pause"),
        resume=lambda: calls.append("resume"),
        on_consumed=consumed.append,
    )
    for piece in (b"aaaa", b"bbbb", b"cccc", b"dddd"):  # 16 bytes: over the high mark at the third
        buffer.feed(piece)
    assert calls == ["pause"]
    assert buffer.size == 16
    assert await buffer.read() == b"aaaa"
    assert await buffer.read() == b"bbbb"
    assert calls == ["pause"]  # 8 unread: still above the low mark
    assert await buffer.read() == b"cccc"
    assert calls == ["pause", "resume"]  # 4 unread: at the low mark
    buffer.feed_eof()
    assert await buffer.read() == b"dddd"
    assert await buffer.read() == b""
    assert buffer.at_eof
    assert consumed == [4, 4, 4, 4]


async def test_a_peer_error_after_some_bytes_hands_them_out_then_says_the_body_is_incomplete() -> None:
    buffer = BodyBuffer()
    buffer.feed(b"12345")
    buffer.feed_error(httpstream.ReadError("connection lost"))
    buffer.feed(b"ignored")  # nothing is taken after the error
    assert await buffer.read() == b"12345"
    with pytest.raises(httpstream.IncompleteBody, match="incomplete after 5 bytes") as info:
        await buffer.read()
    assert info.value.received == 5
    assert isinstance(info.value.__cause__, httpstream.ReadError)
    assert buffer.failed


async def test_a_read_that_waits_past_its_timeout_raises_read_timeout() -> None:
    buffer = BodyBuffer(read_timeout=0.01)
    with pytest.raises(httpstream.ReadTimeout, match="read timeout"):
        await buffer.read()
    assert buffer.failed  # the body failed: its release must not wait for the rest


async def test_response_stream_releases_exactly_once_and_refuses_a_second_iteration() -> None:
    releases: list[None] = []
    buffer = BodyBuffer()
    buffer.feed(b"body")
    buffer.feed_eof()
    stream = ResponseStream(buffer, lambda: releases.append(None))
    assert [chunk async for chunk in stream] == [b"body"]
    assert stream.is_closed
    assert len(releases) == 1  # the end of the body released it
    await stream.aclose()
    stream.close()
    assert len(releases) == 1
    with pytest.raises(httpstream.StreamClosed):
        stream.__aiter__()


async def test_byte_stream_yields_its_bytes_once() -> None:
    stream = ByteStream(b"abc")
    assert [chunk async for chunk in stream] == [b"abc"]
    assert [chunk async for chunk in stream] == []
    assert [chunk async for chunk in ByteStream(b"")] == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=20), st.integers(min_value=1, max_value=40))
async def test_aiter_chunks_gives_exact_sizes(pieces: list[bytes], size: int) -> None:
    async def source() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    out = [chunk async for chunk in aiter_chunks(source(), size)]
    assert b"".join(out) == b"".join(pieces)
    assert all(len(chunk) == size for chunk in out[:-1])
    assert not out or 0 < len(out[-1]) <= size
