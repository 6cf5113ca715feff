"""What a new user trips over in the Python API (issue 15), each pinned.

- ``content`` / ``text`` / ``json()`` before ``aread()``: ``ResponseNotRead``,
  inside the exception tree, saying what to do;
- ``content_length`` is the announced Content-Length, a HEAD's and a 304's too,
  while their bodies stay empty and the connection stays usable;
- ``Host`` is the first header on the HTTP/1.1 wire (RFC 9110 section 7.2);
- ``repr(AsyncClient)``;
- the verb methods and module functions have real signatures, for
  ``inspect`` and for mypy (run here on a small file, as a user's editor would);
- Digest refuses an algorithm it does not know with a message that names it
  (httpbin's "SHA-512" is answered as full SHA-512: tests/test_auth.py).
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import httpstream
from tests.peers.servers import FaultServer, HypercornServer, read_request

ROOT = Path(__file__).resolve().parent.parent


# -- ResponseNotRead --------------------------------------------------------------------


async def test_body_before_aread_raises_response_not_read(server: HypercornServer) -> None:
    assert issubclass(httpstream.ResponseNotRead, httpstream.StreamError)
    async with httpstream.AsyncClient() as client, client.stream("GET", server.url("/hello")) as r:
        for use in (lambda: r.content, lambda: r.text, r.json):
            with pytest.raises(httpstream.ResponseNotRead, match=r"await response\.aread\(\)"):
                use()
        assert await r.aread() == b"hello world\n"
        assert r.text == "hello world\n"
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", server.url("/hello")) as r:
            assert [chunk async for chunk in r.aiter_bytes()] == [b"hello world\n"]
            with pytest.raises(httpstream.ResponseNotRead, match=r"iterated, not kept.*aread\(\)"):
                r.json()
        async with client.stream("GET", server.url("/hello")) as r:
            pass
        with pytest.raises(httpstream.ResponseNotRead, match=r"closed before it was read.*inside the 'async with"):
            r.text  # noqa: B018 - the property is the call under test


# -- content_length -----------------------------------------------------------------------


async def test_head_and_304_report_the_announced_length_with_an_empty_body() -> None:
    """The raw server answers each request by its path; every answer goes on one
    connection, so a body read where there is none would break the next one."""
    answers = {
        b"/head": b"HTTP/1.1 200 OK\r\nContent-Length: 240\r\n\r\n",
        b"/not-modified": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 240\r\n\r\n",
        b"/head-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"/no-content": b"HTTP/1.1 204 No Content\r\n\r\n",
        b"/get": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    }
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(answers[head.split(b" ")[1]])
            await writer.drain()
        writer.close()

    async with FaultServer(handler) as fault, httpstream.AsyncClient() as client:
        r = await client.head(fault.url("/head"))
        assert (r.content_length, r.content) == (240, b"")
        r = await client.get(fault.url("/not-modified"))
        assert (r.content_length, r.content) == (240, b"")
        r = await client.head(fault.url("/head-chunked"))
        assert (r.content_length, r.content) == (None, b"")
        r = await client.delete(fault.url("/no-content"))
        assert (r.content_length, r.content) == (None, b"")
        r = await client.get(fault.url("/get"))
        assert (r.content_length, r.content) == (5, b"hello")
    assert connections == 1


@pytest.mark.parametrize("http2", [False, True])
async def test_head_length_over_hypercorn(h2_server: HypercornServer, cert_files: dict[str, str], http2: bool) -> None:
    async with httpstream.AsyncClient(http2=http2, verify=cert_files["ca"]) as client:
        r = await client.head(h2_server.url("/bytes/300000"))
        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert (r.content_length, r.content) == (300000, b"")
        calls: list[tuple[int, int | None]] = []
        async with client.stream(
            "GET", h2_server.url("/bytes/300000"), on_download_progress=lambda n, t: calls.append((n, t))
        ) as r:
            assert len(await r.aread()) == r.content_length == 300000
        assert calls[-1] == (300000, 300000)


# -- Host first ---------------------------------------------------------------------------


async def test_host_is_the_first_header_on_the_wire() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heads.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async with FaultServer(handler) as fault, httpstream.AsyncClient(headers={"X-Client": "c"}) as client:
        await client.post(fault.url("/a"), headers={"X-Req": "r"}, content=b"body")
        await client.get(fault.url("/b"), headers=[("X-First", "1"), ("host", "given.example")])
    names = [[line.split(b":")[0] for line in head.split(b"\r\n")[1:] if line] for head in heads]
    assert names[0][0] == b"Host"
    assert names[0][1:] == [b"User-Agent", b"Accept", b"Accept-Encoding", b"X-Client", b"X-Req", b"Content-Length"]
    # A Host the caller gave stays where the caller put it.
    assert names[1][names[1].index(b"X-First") + 1] == b"host"
    assert b"\r\nhost: given.example\r\n" in heads[1]


def test_request_headers_start_with_host_unless_given() -> None:
    r = httpstream.Request("GET", "http://example.test:8080/", headers={"Accept": "*/*"})
    assert r.headers.raw[0] == (b"Host", b"example.test:8080")
    r = httpstream.Request("CONNECT", "example.test:443", headers={"User-Agent": "u"})
    assert r.headers.raw[0] == (b"Host", b"example.test:443")
    r = httpstream.Request("GET", "http://example.test/", headers=[("A", "1"), ("Host", "other")])
    assert r.headers.raw == [(b"A", b"1"), (b"Host", b"other")]


# -- repr ---------------------------------------------------------------------------------


async def test_async_client_repr() -> None:
    client = httpstream.AsyncClient(base_url="http://example.test/api", http2=True)
    assert repr(client) == (
        "<AsyncClient base_url='http://example.test/api/' http1=True http2=True http3=False closed=False>"
    )
    await client.aclose()
    assert repr(client).endswith(" closed=True>")
    async with httpstream.AsyncClient(transport=httpstream.ConnectionPool()) as client:
        assert repr(client) == "<AsyncClient base_url=None transport=ConnectionPool closed=False>"


# -- signatures -----------------------------------------------------------------------------

VERBS = ("get", "head", "options", "delete", "post", "put", "patch")


def test_verbs_have_the_signature_of_request_without_method() -> None:
    request = inspect.signature(httpstream.AsyncClient.request)
    expected = [p for p in request.parameters.values() if p.name != "method"]
    for name in VERBS:
        method = getattr(httpstream.AsyncClient, name)
        assert inspect.iscoroutinefunction(method)
        assert list(inspect.signature(method).parameters.values()) == expected, name
        assert method.__name__ == name and method.__qualname__ == f"AsyncClient.{name}"
        assert {"url", "params", "headers", "json", "timeout", "follow_redirects"} <= set(
            inspect.signature(method).parameters
        )
    module_request = inspect.signature(httpstream.request)
    assert inspect.signature(httpstream.stream).parameters == module_request.parameters
    for name in VERBS:
        function = getattr(httpstream, name)
        parameters = inspect.signature(function).parameters
        assert list(parameters) == [p for p in module_request.parameters if p != "method"], name
        assert {"verify", "http2", "retry", "params", "json"} <= set(parameters)


async def test_verbs_send_their_method(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        for name in ("get", "options", "delete", "post", "put", "patch"):
            r = await getattr(client, name)(server.url("/echo"), params={"a": "1"})
            assert (r.json()["method"], r.json()["query"]) == (name.upper(), "a=1")
            r = await getattr(httpstream, name)(server.url("/echo"), params={"a": "1"}, http2=False)
            assert r.json()["method"] == name.upper()
    assert (await httpstream.head(server.url("/hello"))).content_length == 12


def test_mypy_sees_the_parameters(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import httpstream\n"
        "\n"
        "async def main(client: httpstream.AsyncClient) -> None:\n"
        '    await client.get("http://x/", params={"a": "1"}, follow_redirects=True)\n'
        '    await client.post("http://x/", jsn={})\n'
        '    await client.get("http://x/", timeout="soon")\n'
        '    await httpstream.get("http://x/", verify=False, http5=True)\n'
        '    async with httpstream.stream("GET", "http://x/", folow_redirects=True) as r:\n'
        "        r.status_code\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line.split(": error: ", 1)[1] for line in result.stdout.splitlines() if ": error: " in line]
    lines = sorted(int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error: " in line)
    assert lines == [5, 6, 7, 8], result.stdout + result.stderr
    assert any('Unexpected keyword argument "jsn"' in e for e in errors)
    assert any('"timeout"' in e and "incompatible type" in e for e in errors)
    assert any('Unexpected keyword argument "http5"' in e for e in errors)
    assert any('Unexpected keyword argument "folow_redirects"' in e for e in errors)


# -- Digest "SHA-512" ---------------------------------------------------------------------------


async def test_digest_refuses_an_unknown_algorithm_naming_it() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
            b'WWW-Authenticate: Digest realm="me@kennethreitz.com", nonce="n", qop="auth", algorithm=SHA3-256\r\n\r\n'
        )
        await writer.drain()
        writer.close()

    async with FaultServer(handler) as fault, httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.LocalProtocolError) as info:
            await client.get(fault.url("/digest-auth/auth/user/passwd/SHA3-256"), auth=httpstream.DigestAuth("u", "p"))
    message = str(info.value)
    assert "'SHA3-256' is not supported" in message
    assert "SHA-512-256" in message and "SHA-512" in message  # what it does answer
