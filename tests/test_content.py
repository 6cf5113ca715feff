"""Request bodies (httpstream._content) sent to hypercorn and parsed there by the stdlib."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import pathlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import httpstream
from httpstream._content import MultipartStream, ProgressBody, encode_request, with_progress

from .peers.content_servers import ContentApp
from .peers.servers import HypercornServer

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def content_server() -> Iterator[HypercornServer]:
    server = HypercornServer(ContentApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["h1", "h2"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[httpstream.ConnectionPool]:
    """A pool speaking HTTP/1.1, or HTTP/2 by prior knowledge (h2c) to the same server."""
    options: dict[str, Any] = {"http2": True, "http2_prior_knowledge": True} if request.param == "h2" else {}
    async with httpstream.ConnectionPool(**options) as p:
        yield p


async def post(pool: httpstream.ConnectionPool, url: str, **kwargs: Any) -> dict[str, Any]:
    headers, body = encode_request(**kwargs)
    return await post_body(pool, url, headers, body)


async def post_body(
    pool: httpstream.ConnectionPool, url: str, headers: list[tuple[bytes, bytes]], body: Any
) -> dict[str, Any]:
    async with asyncio.timeout(20):
        response = await pool.handle_request(httpstream.Request("POST", url, headers=headers, content=body))
        try:
            data = await response.aread()
        finally:
            await response.aclose()
    assert response.status_code == 200, data
    result: dict[str, Any] = json.loads(data)
    return result


def payload(part: dict[str, Any]) -> bytes:
    return base64.b64decode(part["payload"])


async def collect(body: Any) -> bytes:
    return b"".join([chunk async for chunk in body])


# -- forms and JSON -----------------------------------------------------------------


async def test_form_fields_unicode_and_repeated_keys(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    data = {"name": "Zoë & co", "tag": ["a b", "ç/=?"], "yes": True, "no": False, "none": None, "n": 3, "x": 1.5}
    got = await post(pool, content_server.url("/form"), data=data)
    assert got["content_type"] == "application/x-www-form-urlencoded"
    assert got["content_length"] == str(got["body_length"])
    assert got["fields"] == [
        ["name", "Zoë & co"],
        ["tag", "a b"],
        ["tag", "ç/=?"],
        ["yes", "true"],
        ["no", "false"],
        ["none", ""],
        ["n", "3"],
        ["x", "1.5"],
    ]


async def test_form_as_list_of_pairs_keeps_order(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    got = await post(pool, content_server.url("/form"), data=[("b", "1"), ("a", "2"), ("b", "3")])
    assert got["fields"] == [["b", "1"], ["a", "2"], ["b", "3"]]


async def test_json_is_compact_utf8(content_server: HypercornServer, pool: httpstream.ConnectionPool) -> None:
    value = {"text": "héllo ✓", "list": [1, 2.5, None, True], "nested": {"k": "v"}}
    got = await post(pool, content_server.url("/json"), json=value)
    assert got["content_type"] == "application/json"
    assert got["value"] == value
    assert got["raw"] == '{"text":"héllo ✓","list":[1,2.5,null,true],"nested":{"k":"v"}}'
    assert got["content_length"] == str(len(got["raw"].encode("utf-8")))


# -- raw content ----------------------------------------------------------------------


async def test_str_and_bytes_content_go_with_content_length(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    got = await post(pool, content_server.url("/raw"), content="naïve")
    assert base64.b64decode(got["body"]) == "naïve".encode()
    assert got["content_length"] == str(len("naïve".encode()))
    assert got["content_type"] is None  # raw content says nothing about its type
    got = await post(pool, content_server.url("/raw"), content=b"\x00\xff")
    assert base64.b64decode(got["body"]) == b"\x00\xff"


async def test_async_iterator_content_is_streamed_chunked(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"piece {i};".encode()
            await asyncio.sleep(0)

    got = await post(pool, content_server.url("/raw"), content=gen())
    assert base64.b64decode(got["body"]) == b"".join(f"piece {i};".encode() for i in range(5))
    assert got["content_length"] is None
    if got["http_version"] == "1.1":
        assert got["transfer_encoding"] == "chunked"


async def test_sync_iterator_content_is_wrapped(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    got = await post(pool, content_server.url("/raw"), content=(b"%d," % i for i in range(100)))
    assert base64.b64decode(got["body"]) == b"".join(b"%d," % i for i in range(100))
    assert got["content_length"] is None


# -- multipart ------------------------------------------------------------------------


async def test_multipart_with_files_and_fields(
    content_server: HypercornServer, pool: httpstream.ConnectionPool, tmp_path: pathlib.Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"line one\nline two\n")
    image = tmp_path / "pic.png"
    image.write_bytes(bytes(range(256)) * 40)
    with open(image, "rb") as opened:  # noqa: ASYNC230 - a small local file, opened once
        files = [
            ("doc", notes),
            ("doc", ("renamed.csv", io.BytesIO(b"a,b\r\n1,2\r\n"))),
            ("img", opened),
            ("blob", b"\x00\x01raw"),
            ("custom", ("x.dat", b"payload", "application/x-custom", {"X-Part": "42"})),
            ("nameless", (None, b"no filename")),
        ]
        got = await post(pool, content_server.url("/multipart"), data={"title": "Été", "n": [1, 2]}, files=files)
    assert got["defects"] == []
    assert got["content_type"].startswith("multipart/form-data; boundary=")
    assert got["content_length"] == str(got["body_length"])  # length known up front: no chunking
    assert got["transfer_encoding"] is None
    parts = got["parts"]
    assert [(p["name"], p["filename"]) for p in parts] == [
        ("title", None),
        ("n", None),
        ("n", None),
        ("doc", "notes.txt"),
        ("doc", "renamed.csv"),
        ("img", "pic.png"),
        ("blob", "upload"),
        ("custom", "x.dat"),
        ("nameless", None),
    ]
    assert [payload(p) for p in parts[:3]] == ["Été".encode(), b"1", b"2"]
    assert payload(parts[3]) == notes.read_bytes()
    assert parts[3]["content_type"] == "text/plain"
    assert payload(parts[4]) == b"a,b\r\n1,2\r\n"
    assert parts[4]["content_type"] == "text/csv"
    assert payload(parts[5]) == image.read_bytes()
    assert parts[5]["content_type"] == "image/png"
    assert payload(parts[6]) == b"\x00\x01raw"
    assert parts[6]["content_type"] == "application/octet-stream"
    assert parts[7]["content_type"] == "application/x-custom"
    assert ["X-Part", "42"] in parts[7]["headers"]
    assert payload(parts[8]) == b"no filename"


async def test_multipart_names_and_filenames_are_escaped(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    evil = 'a"b\r\nContent-Type: text/html\r\n\r\nc.txt'
    files = {'fi"eld\n': (evil, b"x"), "u": ("résumé ✓.pdf", b"%PDF")}
    got = await post(pool, content_server.url("/multipart"), files=files, boundary=b"fixed-Boundary_1")
    assert got["content_type"] == "multipart/form-data; boundary=fixed-Boundary_1"
    first, second = got["parts"]
    # The HTML standard's escapes keep the whole name on one header line, inside its quotes.
    assert first["disposition"] == (
        'form-data; name="fi%22eld%0A"; filename="a%22b%0D%0AContent-Type: text/html%0D%0A%0D%0Ac.txt"'
    )
    assert [k for k, _ in first["headers"]] == ["Content-Disposition", "Content-Type"]  # nothing injected
    assert first["content_type"] == "text/plain"  # guessed from the real name, which ends in .txt
    assert payload(first) == b"x"
    assert second["filename"] == "résumé ✓.pdf"
    assert second["content_type"] == "application/pdf"


async def test_multipart_from_unseekable_file_goes_chunked(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"from a pipe\n" * 100)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        headers, body = encode_request(files={"p": ("pipe.log", pipe)})
        assert isinstance(body, MultipartStream)
        assert (body.content_length, body.replayable) == (None, False)
        assert all(name.lower() != b"content-length" for name, _ in headers)
        got = await post_body(pool, content_server.url("/multipart"), headers, body)
        with pytest.raises(httpstream.LocalProtocolError, match="only once"):
            body.__aiter__()
    assert payload(got["parts"][0]) == b"from a pipe\n" * 100
    assert got["content_length"] is None
    if got["http_version"] == "1.1":
        assert got["transfer_encoding"] == "chunked"


async def test_multipart_body_replays_identical_bytes(
    content_server: HypercornServer, pool: httpstream.ConnectionPool, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(300_000))
    with open(path, "rb") as opened:  # noqa: ASYNC230 - a small local file, opened once
        opened.seek(1000)  # read from where the caller left the file, every time
        headers, body = encode_request(data={"k": "v"}, files={"a": path, "b": opened, "c": b"tiny" * 50_000})
        assert isinstance(body, MultipartStream)
        assert body.replayable
        first = await collect(body)
        second = await collect(body)
        assert first == second
        assert len(first) == body.content_length
        assert path.read_bytes()[1000:] in first
        sent = [await post_body(pool, content_server.url("/count"), headers, body) for _ in range(2)]
    expected = hashlib.sha256(first).hexdigest()
    assert [s["sha256"] for s in sent] == [expected, expected]
    assert all(s["content_length"] == str(len(first)) for s in sent)


async def test_file_that_grows_or_shrinks_while_sending_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "moving.bin"
    path.write_bytes(b"x" * 200_000)
    _, body = encode_request(files={"f": path})
    path.write_bytes(b"x" * 200_001)
    with pytest.raises(httpstream.LocalProtocolError, match="grew"):
        await collect(body)
    path.write_bytes(b"x" * 100_000)
    with pytest.raises(httpstream.LocalProtocolError, match="shrank"):
        await collect(body)
    path.write_bytes(b"x" * 200_000)
    assert len(await collect(body)) == body.content_length  # type: ignore[union-attr]


async def test_shrunk_file_fails_the_request_without_leaks(
    content_server: HypercornServer, tmp_path: pathlib.Path, no_leaks: object
) -> None:
    path = tmp_path / "shrinks.bin"
    path.write_bytes(b"y" * 1_000_000)
    headers, body = encode_request(files={"f": path})
    path.write_bytes(b"y" * 10)
    async with httpstream.ConnectionPool() as pool:
        with pytest.raises(httpstream.LocalProtocolError, match="shrank"):
            await post_body(pool, content_server.url("/count"), headers, body)
        # the connection that carried the broken body is not reused; a new one works
        path.write_bytes(b"y" * 1_000_000)
        got = await post_body(pool, content_server.url("/count"), headers, body)
    assert got["received"] == body.content_length  # type: ignore[union-attr]


# -- progress ---------------------------------------------------------------------------


async def test_progress_on_bytes_keeps_content_length(
    content_server: HypercornServer, pool: httpstream.ConnectionPool
) -> None:
    data = os.urandom(300_000)
    calls: list[tuple[int, int | None]] = []
    body = with_progress(data, lambda sent, total: calls.append((sent, total)))
    assert (body.content_length, body.replayable) == (len(data), True)
    headers, content = encode_request(content=body)
    assert (b"Content-Length", b"300000") in headers
    got = await post_body(pool, content_server.url("/count"), headers, content)
    assert got["received"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["content_length"] == "300000"
    assert [sent for sent, _ in calls] == [65536, 131072, 196608, 262144, 300000]
    assert {total for _, total in calls} == {len(data)}


async def test_progress_on_streams(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"z" * 150_000)
    _, multipart = encode_request(files={"f": path})
    assert isinstance(multipart, MultipartStream)
    calls: list[tuple[int, int | None]] = []
    wrapped = ProgressBody(multipart, lambda sent, total: calls.append((sent, total)))
    assert (wrapped.content_length, wrapped.replayable) == (multipart.content_length, True)
    assert await collect(wrapped) == await collect(multipart)
    assert calls[-1] == (multipart.content_length, multipart.content_length)
    assert [sent for sent, _ in calls] == sorted(sent for sent, _ in calls)

    async def gen() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"de"

    calls.clear()
    unknown = ProgressBody(gen(), lambda sent, total: calls.append((sent, total)))
    assert (unknown.content_length, unknown.replayable) == (None, False)
    assert await collect(unknown) == b"abcde"
    assert calls == [(3, None), (5, None)]


# -- caller errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"content": b"x", "data": {"a": "1"}}, httpstream.LocalProtocolError, "content= cannot be combined"),
        ({"content": b"x", "json": {}}, httpstream.LocalProtocolError, "content= cannot be combined"),
        ({"json": {}, "files": {"f": b""}}, httpstream.LocalProtocolError, "json= cannot be combined"),
        ({"data": {"a": 1}, "boundary": b"b"}, httpstream.LocalProtocolError, "boundary= is only used"),
        (
            {"files": {"f": b""}, "boundary": b"bad boundary"},
            httpstream.LocalProtocolError,
            "invalid multipart boundary",
        ),
        ({"files": {"f": b""}, "boundary": b"x" * 71}, httpstream.LocalProtocolError, "invalid multipart boundary"),
        ({"json": float("nan")}, httpstream.LocalProtocolError, "cannot be encoded as JSON"),
        ({"json": {"a": object()}}, httpstream.LocalProtocolError, "cannot be encoded as JSON"),
        ({"content": 12}, TypeError, "content= must be"),
        ({"content": {"a": 1}}, TypeError, "pass data= for a form"),
        ({"data": b"a=1"}, TypeError, "pass raw bytes as content="),
        ({"data": {"a": {"nested": 1}}}, TypeError, "form values must be"),
        ({"data": {1: "a"}}, TypeError, "field names must be str"),
        ({"files": {"f": "/etc/passwd"}}, TypeError, "ambiguous"),
        ({"files": {"f": io.StringIO("text")}}, TypeError, "text mode"),
        ({"files": {"f": 3.5}}, TypeError, "binary file object"),
        ({"files": {"f": ("a", b"", "t", {}, "extra")}}, TypeError, "file tuple"),
        ({"files": {"f": ("a", b"", None, {"Bad\r\nName": "v"})}}, httpstream.LocalProtocolError, "header name"),
        ({"files": {"f": ("a", b"", None, {"X": "v\r\nInjected: 1"})}}, httpstream.LocalProtocolError, "CR, LF"),
        (
            {"files": {"f": pathlib.Path("/nonexistent/file.bin")}},
            httpstream.LocalProtocolError,
            "cannot read upload file",
        ),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        encode_request(**kwargs)


def test_nothing_to_send() -> None:
    assert encode_request() == ([], None)


# -- memory ------------------------------------------------------------------------------------


def write_blocks(path: pathlib.Path, block: bytes, count: int) -> None:
    """Write a large file without holding it in memory (sync: the loop has nothing else to do)."""
    with open(path, "wb") as f:
        for _ in range(count):
            f.write(block)


UPLOAD_CLIENT = r"""
import asyncio, json, pathlib, sys
import httpstream
from httpstream._content import encode_request

def peak_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

async def main(url, path):
    headers, body = encode_request(
        data={"note": "big"}, files={"file": ("big.iso", pathlib.Path(path), "application/octet-stream")}, boundary=b"BOUNDARY"
    )
    async with httpstream.ConnectionPool() as pool:
        r = await pool.handle_request(httpstream.Request("POST", url, headers=headers, content=body))
        data = await r.aread()
    print(json.dumps({"server": json.loads(data), "peak_kb": peak_kb()}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.timeout(60)
async def test_multipart_upload_of_200_mib_holds_memory_flat(
    content_server: HypercornServer, tmp_path: pathlib.Path
) -> None:
    size = 200 * 1024 * 1024
    path = tmp_path / "big.iso"
    block = os.urandom(1024 * 1024)
    write_blocks(path, block, size // len(block))
    head = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="note"\r\n\r\nbig\r\n'
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="big.iso"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n--BOUNDARY--\r\n"
    expected = hashlib.sha256(head)
    for _ in range(size // len(block)):
        expected.update(block)
    expected.update(tail)

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        UPLOAD_CLIENT,
        content_server.url("/count"),
        str(path),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0
    result = json.loads(out)
    server = result["server"]
    assert server["received"] == len(head) + size + len(tail)
    assert server["content_length"] == str(server["received"])  # sent with Content-Length, not chunked
    assert server["head"].encode("latin-1").startswith(head)
    assert server["tail"].encode("latin-1").endswith(tail)
    assert server["sha256"] == expected.hexdigest()
    assert result["peak_kb"] < 80 * 1000, f"client peak RSS {result['peak_kb']} KiB"
