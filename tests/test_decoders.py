"""Content decoding: gzip, deflate (zlib and raw), br, zstd, stacked; limits; the Response wiring."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import zlib
from collections.abc import Iterator
from itertools import pairwise

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import httpstream
from httpstream import _codings
from httpstream._codings import MAX_OUTPUT_CHUNK, accept_encoding, content_decoder
from httpstream._streams import ByteStream

from .peers.decoding_servers import GIB, bomb, encode, header_value, payload, start_server
from .peers.servers import HypercornServer

CODINGS = ["gzip", "deflate", "deflate-raw", "br", "zstd"]
BODY = payload(200_000)


@pytest.fixture(scope="module")
def dserver() -> Iterator[HypercornServer]:
    server = start_server()
    yield server
    server.stop()


def decode_all(codings: list[str], blob: bytes, step: int | None = None, cap: int = MAX_OUTPUT_CHUNK) -> list[bytes]:
    """Decode ``blob`` fed ``step`` bytes at a time; the pieces as the decoder gave them."""
    decoder = content_decoder([header_value(codings).decode()], max_output_chunk=cap)
    assert decoder is not None
    step = step or len(blob) or 1
    pieces: list[bytes] = []
    for start in range(0, len(blob), step):
        pieces.extend(decoder.decode(blob[start : start + step]))
    pieces.extend(decoder.flush())
    return pieces


# -- unit: each coding, every chunk boundary -------------------------------------------------


@pytest.mark.parametrize("coding", CODINGS)
def test_each_coding_one_byte_at_a_time(coding: str) -> None:
    body = BODY[:20_000]
    blob = encode(body, [coding])
    for step in (1, 3, 1000, None):
        pieces = decode_all([coding], blob, step, cap=4096)
        assert b"".join(pieces) == body, step
        assert max(map(len, pieces)) <= 4096


@pytest.mark.parametrize(
    "codings", [["gzip", "br"], ["br", "gzip"], ["deflate", "zstd"], ["zstd", "deflate-raw", "gzip"], ["identity", "gzip"]]
)
def test_stacked_codings(codings: list[str]) -> None:
    blob = encode(BODY, codings)
    assert b"".join(decode_all(codings, blob)) == BODY
    assert b"".join(decode_all(codings, blob, 7, cap=1000)) == BODY


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([["gzip"], ["zstd"], ["br"], ["deflate-raw"], ["gzip", "zstd"], ["br", "deflate"]]),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_split_points(codings: list[str], cuts: list[int]) -> None:
    body = BODY[:8000]
    blob = encode(body, codings)
    points = sorted({min(c, len(blob)) for c in cuts} | {0, len(blob)})
    decoder = content_decoder([header_value(codings).decode()], max_output_chunk=1500)
    assert decoder is not None
    out = bytearray()
    for a, b in pairwise(points):
        for piece in decoder.decode(blob[a:b]):
            assert len(piece) <= 1500
            out += piece
    out += b"".join(decoder.flush())
    assert out == body


def test_gzip_members_and_zstd_frames_back_to_back() -> None:
    assert b"".join(decode_all(["gzip"], gzip.compress(b"one ") + gzip.compress(b"two"), 1)) == b"one two"
    frames = (
        zstandard.ZstdCompressor(write_checksum=True).compress(b"one ")
        + b"\x50\x2a\x4d\x18\x03\x00\x00\x00abc"  # a skippable frame
        + zstandard.ZstdCompressor(write_content_size=False).compress(b"two")
    )
    for step in (1, 2, None):
        assert b"".join(decode_all(["zstd"], frames, step)) == b"one two"


def test_header_values_identity_unknown_and_case() -> None:
    assert content_decoder([]) is None
    assert content_decoder(["identity"]) is None
    assert content_decoder(["identity", " "]) is None
    assert content_decoder(["GZip"]) is not None
    assert content_decoder(["x-gzip"]) is not None
    assert content_decoder(["gzip", "br"]) is not None  # two header lines stack like one list
    # a coding we do not know: the body is handed over undecoded, all or nothing
    assert content_decoder(["gzip, x-unknown"]) is None
    assert content_decoder(["x-unknown, gzip"]) is None


def test_too_many_stacked_codings() -> None:
    assert content_decoder(["gzip, gzip, gzip, gzip, gzip"]) is not None
    with pytest.raises(httpstream.DecodingError, match="6 stacked content codings; at most 5"):
        content_decoder(["gzip, gzip, gzip", "gzip, gzip, gzip"])


@pytest.mark.parametrize("coding", CODINGS)
def test_corrupt_stream_is_a_decoding_error(coding: str) -> None:
    name = coding.split("-")[0]
    with pytest.raises(httpstream.DecodingError, match=f"invalid {name} data in the body"):
        decode_all([coding], b"this is not compressed at all, not even a little bit")
    if coding in ("deflate-raw", "br"):
        return  # no checksum: a flipped byte mid-stream may decode to other bytes unnoticed
    blob = bytearray(encode(BODY, [coding]))
    middle = len(blob) // 2
    blob[middle : middle + 16] = bytes(b ^ 0x55 for b in blob[middle : middle + 16])
    with pytest.raises(httpstream.DecodingError, match=f"invalid {name} data in the body"):
        decode_all([coding], bytes(blob))


@pytest.mark.parametrize("coding", CODINGS)
def test_truncated_stream_is_a_decoding_error(coding: str) -> None:
    blob = encode(BODY, [coding])
    for cut in (1, 4, len(blob) // 2, len(blob) - 1):
        with pytest.raises(httpstream.DecodingError, match="truncated|invalid"):
            decode_all([coding], blob[:cut])
    with pytest.raises(httpstream.DecodingError, match="truncated"):
        decode_all([coding], blob[:-1], 1)


@pytest.mark.parametrize("coding", ["deflate", "deflate-raw", "br", "zstd"])
def test_trailing_garbage_is_a_decoding_error(coding: str) -> None:
    with pytest.raises(httpstream.DecodingError):
        decode_all([coding], encode(b"hello", [coding]) + b"junk!")


def test_empty_body_with_a_coding_is_fine() -> None:
    for coding in CODINGS:
        assert decode_all([coding], b"") == []


def test_missing_extras_are_not_advertised_and_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert accept_encoding() == "gzip, deflate, br, zstd"
    monkeypatch.setitem(sys.modules, "brotli", None)  # import brotli now raises ImportError
    monkeypatch.setitem(sys.modules, "zstandard", None)
    _codings._installed.cache_clear()
    try:
        assert accept_encoding() == "gzip, deflate"
        with pytest.raises(httpstream.DecodingError, match=r"pip install 'httpstream\[brotli\]'"):
            content_decoder(["br"])
        with pytest.raises(httpstream.DecodingError, match=r"pip install 'httpstream\[zstd\]'"):
            content_decoder(["gzip, zstd"])
    finally:
        monkeypatch.undo()
        _codings._installed.cache_clear()
    assert accept_encoding() == "gzip, deflate, br, zstd"


def _zero_bomb(coding: str, size: int) -> bytes:
    zeros = bytes(1024 * 1024)
    if coding == "br":
        c = brotli.Compressor(quality=5, lgwin=24)
        return b"".join(c.process(zeros) for _ in range(size // len(zeros))) + c.finish()
    if coding == "zstd":
        z = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(z.compress(zeros) for _ in range(size // len(zeros))) + z.flush()
    g = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(g.compress(zeros) for _ in range(size // len(zeros))) + g.flush()


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_one_input_chunk_expands_in_capped_pieces(coding: str) -> None:
    """64 MiB from one small input chunk, pulled piece by piece, none above the cap."""
    size = 64 * 1024 * 1024
    blob = _zero_bomb(coding, size)
    assert len(blob) < 100_000
    for cap in (MAX_OUTPUT_CHUNK, 100_000):
        decoder = content_decoder([coding], max_output_chunk=cap)
        assert decoder is not None
        total = biggest = count = 0
        for piece in decoder.decode(blob):
            total += len(piece)
            biggest = max(biggest, len(piece))
            count += 1
        assert list(decoder.flush()) == []
        assert total == size
        assert biggest <= cap
        assert count >= size // cap


def test_stacked_bomb_pieces_are_capped() -> None:
    inner = _zero_bomb("gzip", 64 * 1024 * 1024)
    blob = gzip.compress(inner, 9)
    decoder = content_decoder(["gzip, gzip"], max_output_chunk=65536)
    assert decoder is not None
    sizes = [len(piece) for piece in decoder.decode(blob)]
    assert sum(sizes) == 64 * 1024 * 1024
    assert max(sizes) <= 65536


# -- the Response, over the network ----------------------------------------------------------


@pytest.mark.parametrize("coding", CODINGS)
async def test_response_decodes_each_coding(dserver: HypercornServer, coding: str) -> None:
    blob = encode(BODY, [coding])
    url = dserver.url(f"/encoded?ce={coding}&size={len(BODY)}&chunk=997&cl=1")
    async with httpstream.AsyncClient() as client:
        r = await client.get(url)
        assert r.content == BODY
        assert r.num_bytes_downloaded == len(blob)
        async with client.stream("GET", url) as r:
            raw = [chunk async for chunk in r.aiter_raw()]
        assert b"".join(raw) == blob  # aiter_raw: the compressed bytes as they came
        async with client.stream("GET", url) as r:
            counts: list[int] = []
            r.on_download = lambda done, total: counts.append(done)
            raw = [chunk async for chunk in r.aiter_raw(1000)]
        assert b"".join(raw) == blob
        assert all(len(chunk) == 1000 for chunk in raw[:-1])
        assert counts[-1] == r.num_bytes_downloaded == len(blob)
        async with client.stream("GET", url) as r:
            progress: list[tuple[int, int | None]] = []
            r.on_download = lambda done, total: progress.append((done, total))
            sizes = [len(c) async for c in r.aiter_bytes(4096)]
            assert r.num_bytes_downloaded == len(blob)
        assert sum(sizes) == len(BODY)
        assert all(size == 4096 for size in sizes[:-1])
        assert progress[-1] == (len(blob), len(blob))
        assert [done for done, _ in progress] == sorted({done for done, _ in progress})
        async with client.stream("GET", url) as r:
            text = "".join([t async for t in r.aiter_text()])
        assert text == BODY.decode()
        async with client.stream("GET", url) as r:
            lines = [line async for line in r.aiter_lines()]
        assert lines == BODY.decode().splitlines()
        assert client.transport.stats().in_use == 0


async def test_response_decodes_stacked_codings(dserver: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        r = await client.get(dserver.url(f"/encoded?ce=gzip,br&size={len(BODY)}&chunk=5"))
        assert r.headers["content-encoding"] == "gzip, br"
        assert r.content == BODY


@pytest.mark.parametrize("mode", ["corrupt", "truncated"])
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_response_bad_body_raises_and_releases(dserver: HypercornServer, coding: str, mode: str) -> None:
    async with httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.DecodingError):
            await client.get(dserver.url(f"/encoded?ce={coding}&mode={mode}"))
        async with client.stream("GET", dserver.url(f"/encoded?ce={coding}&mode={mode}")) as r:
            with pytest.raises(httpstream.DecodingError):
                async for _ in r.aiter_bytes():
                    pass
            assert r.is_closed
        assert client.transport.stats().in_use == 0
        r = await client.get(dserver.url("/encoded?ce=gzip&size=10"))  # the pool still works
        assert r.content == BODY[:10]


async def test_aread_max_body_size_counts_decoded_bytes(dserver: HypercornServer) -> None:
    url = dserver.url("/encoded?ce=gzip&size=200000&chunk=100000")
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", url) as r:
            with pytest.raises(httpstream.DecodingError, match="max_body_size"):
                await r.aread(max_body_size=150_000)
            assert r.is_closed
            assert r.num_bytes_downloaded < 150_000  # the compressed bytes are far fewer
        async with client.stream("GET", url) as r:
            assert await r.aread(max_body_size=200_000) == BODY[:200_000]
        assert client.transport.stats().in_use == 0


async def test_unknown_coding_is_passed_through(dserver: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        r = await client.get(dserver.url("/encoded?ce=gzip,x-unknown&size=1000"))
    assert r.content == encode(payload(1000), ["gzip"])


async def test_in_memory_response_is_already_decoded() -> None:
    r = httpstream.Response(200, headers={"Content-Encoding": "gzip"}, content=b"plain text")
    assert await r.aread() == b"plain text"
    assert [c async for c in r.aiter_bytes(4)] == [b"plai", b"n te", b"xt"]
    assert r.num_bytes_downloaded == 0


def test_identity_hot_path_is_aiter_raw_itself() -> None:
    """Without Content-Encoding, aiter_bytes adds no generator layer over aiter_raw."""
    plain = httpstream.Response(200, stream=ByteStream(b"x"))
    assert plain.aiter_bytes().__qualname__ == "Response.aiter_raw"
    encoded = httpstream.Response(200, headers={"Content-Encoding": "gzip"}, stream=ByteStream(b"x"))
    assert encoded.aiter_bytes().__qualname__ == "Response._aiter_decoded"


# -- a decompression bomb read with flat memory, in a subprocess ---------------------------------

CLIENT = r"""
import asyncio, json, resource, sys
import httpstream

async def main(url):
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = biggest = 0
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", url) as r:
            async for chunk in r.aiter_bytes():
                total += len(chunk)
                biggest = max(biggest, len(chunk))
            raw = r.num_bytes_downloaded
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"total": total, "raw": raw, "biggest": biggest, "growth_kb": peak - base}))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["br", "zstd", "gzip-gzip"])
async def test_bomb_is_read_with_flat_memory(dserver: HypercornServer, kind: str) -> None:
    """1 GiB of zeros from under 35 KiB on the wire (br: under 1 KiB): RSS grows by less than 50 MB."""
    blob = await asyncio.to_thread(bomb, kind)
    assert len(blob) < (1024 if kind == "br" else 35 * 1024)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, dserver.url(f"/bomb/{kind}"), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 80)
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["total"] == GIB
    assert result["raw"] == len(blob)
    assert result["biggest"] <= MAX_OUTPUT_CHUNK
    assert result["growth_kb"] < 50 * 1024, f"peak RSS grew by {result['growth_kb']} KiB"


def test_lines_before_an_over_long_one_are_handed_out_first() -> None:
    from httpstream._text import LineDecoder

    decoder = LineDecoder(max_line_length=5)
    assert decoder.decode("ab\ncd\n" + "x" * 10 + "\nef\n") == ["ab", "cd"]
    with pytest.raises(httpstream.DecodingError, match="max_line_length"):
        decoder.decode("more\n")
    with pytest.raises(httpstream.DecodingError):
        decoder.flush()
    with pytest.raises(httpstream.DecodingError):
        LineDecoder(max_line_length=5).decode("x" * 10 + "\n")  # nothing before it: at once
