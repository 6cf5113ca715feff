"""The client over HTTP/1.1 against hypercorn (plain and TLS)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest

import httpstream

from .peers.servers import HypercornServer, pattern


async def test_get_reads_body(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        r = await client.get(server.url("/hello"))
    assert r.status_code == 200
    assert r.reason_phrase == "OK"
    assert r.http_version == "HTTP/1.1"
    assert r.content == b"hello world\n"
    assert r.text == "hello world\n"
    assert r.content_length == 12
    assert r.headers["Content-Type"] == "text/plain"
    assert r.is_closed
    assert r.is_stream_consumed
    assert r.url == server.url("/hello")


async def test_stream_hands_over_at_head_and_counts_lengths(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", server.url("/bytes/300000")) as r:
            assert r.content_length == 300000
            assert not r.is_stream_consumed
            sizes = [len(c) async for c in r.aiter_bytes(65536)]
        assert sizes == [65536] * 4 + [300000 - 4 * 65536]
        async with client.stream("GET", server.url("/chunked/100000")) as r:
            assert r.content_length is None
            body = b"".join([c async for c in r.aiter_raw()])
        assert body == pattern(100000)


async def test_module_helpers(server: HypercornServer) -> None:
    r = await httpstream.get(server.url("/hello"))
    assert r.content == b"hello world\n"
    async with httpstream.stream("GET", server.url("/bytes/1000")) as r:
        assert await r.aread() == pattern(1000)
    r = await httpstream.post(server.url("/echo"), json={"x": [1, 2]})
    assert r.json()["body"] == '{"x":[1,2]}'


async def test_methods_params_headers_json(server: HypercornServer) -> None:
    async with httpstream.AsyncClient(base_url=server.url("/"), params={"a": "1"}, headers={"X-Client": "c"}) as client:
        for method in ("get", "delete", "options"):
            r = await getattr(client, method)("echo", params={"b": "two words"}, headers={"X-Req": "r"})
            info = r.json()
            assert info["method"] == method.upper()
            assert info["query"] == "a=1&b=two+words"
            names = {k: v for k, v in info["headers"]}
            assert names["x-client"] == "c"
            assert names["x-req"] == "r"
            assert names["host"] == f"127.0.0.1:{server.port}"
        for method in ("post", "put", "patch"):
            r = await getattr(client, method)("echo", json={"k": "v"})
            info = r.json()
            assert info["method"] == method.upper()
            assert info["body"] == '{"k":"v"}'
            assert ["content-type", "application/json"] in info["headers"]
        r = await client.head("hello")
        assert r.content == b""  # a HEAD has no body, whatever Content-Length says
        assert r.content_length == 12  # the length a GET would have: the announced one
        assert r.headers["content-length"] == "12"


async def test_upload_bytes_and_async_iterator(server: HypercornServer) -> None:
    size = 3 * 1024 * 1024 + 17

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = min(100_000, size - sent)
            yield pattern(piece, sent)
            sent += piece

    async with httpstream.AsyncClient() as client:
        r = await client.post(server.url("/upload"), content=pattern(size))
        assert r.json() == {"received": size, "pattern_ok": True}
        r = await client.post(server.url("/upload"), content=body())  # chunked
        assert r.json() == {"received": size, "pattern_ok": True}
        r = await client.post(server.url("/upload"), content=body(), headers={"Content-Length": str(size)})
        assert r.json() == {"received": size, "pattern_ok": True}
        r = await client.post(server.url("/echo"), content=body())
        assert ["transfer-encoding", "chunked"] in r.json()["headers"]
    assert server.app.connections == 1


async def test_upload_length_mismatch_is_refused(server: HypercornServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"12345"

    async with httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.LocalProtocolError, match="Content-Length"):
            await client.post(server.url("/upload"), content=body(), headers={"Content-Length": "10"})
        with pytest.raises(httpstream.LocalProtocolError, match="longer than its Content-Length"):
            await client.post(server.url("/upload"), content=body(), headers={"Content-Length": "2"})
        assert client.transport.stats().in_use == 0  # type: ignore[attr-defined]


async def test_text_and_lines(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", server.url("/lines/500")) as r:
            lines = [line async for line in r.aiter_lines()]
        assert lines == [f"line {i}" for i in range(500)]
        async with client.stream("GET", server.url("/lines/10")) as r:
            text = "".join([t async for t in r.aiter_text()])
        assert text.count("line") == 10


async def test_stream_consumed_and_closed(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", server.url("/bytes/10")) as r:
            assert await r.aread() == pattern(10)
            assert await r.aread() == pattern(10)  # aread is idempotent
        async with client.stream("GET", server.url("/bytes/10")) as r:
            async for _ in r.aiter_raw():
                pass
            with pytest.raises(httpstream.StreamConsumed):
                async for _ in r.aiter_raw():
                    pass
        async with client.stream("GET", server.url("/bytes/10")) as r:
            await r.aclose()
            assert r.is_closed
            with pytest.raises(httpstream.StreamClosed):
                async for _ in r.aiter_bytes():
                    pass
        with pytest.raises(httpstream.ResponseNotRead, match=r"closed before it was read.*aread\(\)"):
            _ = r.content


async def test_raise_for_status(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        r = await client.get(server.url("/status/404"))
        with pytest.raises(httpstream.HTTPStatusError, match="404") as info:
            r.raise_for_status()
        assert info.value.response is r
        assert (await client.get(server.url("/status/204"))).raise_for_status().status_code == 204


async def test_redirects(server: HypercornServer) -> None:
    async with httpstream.AsyncClient(follow_redirects=True, max_redirects=5) as client:
        r = await client.post(server.url("/redirect/3"), content=b"data")
        assert r.status_code == 200
        assert r.json()["method"] == "GET"  # 302 after POST becomes GET
        assert [h.status_code for h in r.history] == [302, 302, 302]
        r = await client.post(server.url("/redirect/2?status=307"), content=b"data")
        assert r.json()["method"] == "POST"
        assert r.json()["body"] == "data"
        with pytest.raises(httpstream.TooManyRedirects):
            await client.get(server.url("/redirect/9"))
        r = await client.get(server.url("/redirect/1"), follow_redirects=False)
        assert r.status_code == 302
    assert server.app.connections == 1  # redirect bodies were drained, not leaked


async def test_tls_with_trustme_ca(tls_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with httpstream.AsyncClient(verify=cert_files["ca"]) as client:
        r = await client.get(tls_server.url("/hello"))
        assert r.content == b"hello world\n"
        r = await client.get(tls_server.url("/hello").replace("127.0.0.1", "localhost"))
        assert r.status_code == 200
    ctx = ssl.create_default_context(cafile=cert_files["ca"])
    async with httpstream.AsyncClient(verify=ctx) as client:
        assert (await client.get(tls_server.url("/hello"))).status_code == 200
    assert tls_server.app.connections == 3


@pytest.mark.usefixtures("tls_failure_garbage")
async def test_tls_verification_is_on_by_default(tls_server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.ConnectError, match="certificate"):
            await client.get(tls_server.url("/hello"))
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]
    async with httpstream.AsyncClient(verify=False) as client:
        assert (await client.get(tls_server.url("/hello"))).status_code == 200


@pytest.mark.usefixtures("tls_failure_garbage")
async def test_tls_wrong_host_is_refused(ca: object, tmp_path: object) -> None:
    import asyncio
    import pathlib

    import trustme

    from .peers.servers import FaultServer

    assert isinstance(ca, trustme.CA)
    base = pathlib.Path(str(tmp_path))
    cert = ca.issue_cert("other.example")
    cert.private_key_and_cert_chain_pem.write_to_path(str(base / "server.pem"))
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(base / "server.pem"))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with FaultServer(handler, ssl_context=server_ctx) as srv:
        async with httpstream.AsyncClient(verify=str(base / "ca.pem")) as client:
            with pytest.raises(httpstream.ConnectError, match="(?i)hostname|IP address mismatch"):
                await client.get(srv.url())
            assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


async def test_timeouts_raise_their_own_exception(server: HypercornServer) -> None:
    async with httpstream.AsyncClient(timeout=httpstream.Timeout(read=0.3)) as client:
        with pytest.raises(httpstream.ReadTimeout, match="read timeout"):
            await client.get(server.url("/slow/5"))
        async with client.stream("GET", server.url("/stall")) as r:
            with pytest.raises(httpstream.ReadTimeout):
                async for _ in r.aiter_raw():
                    pass
        assert client.transport.stats().in_use == 0  # type: ignore[attr-defined]
        r = await client.get(server.url("/hello"), timeout=5.0)
        assert r.status_code == 200


async def test_connect_error_and_unsupported_scheme() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.ConnectError, match="cannot connect"):
            await client.get(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpstream.LocalProtocolError, match="scheme"):
            await client.get("ftp://127.0.0.1/")
        with pytest.raises(httpstream.InvalidURL):
            await client.get("http://exa mple.com/")
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("family_host", ["127.0.0.1", "::1"])
async def test_localhost_connects_over_either_family(family_host: str) -> None:
    """Happy eyeballs: 'localhost' reaches a server bound to only one of ::1 / 127.0.0.1."""
    import asyncio
    import socket

    if family_host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(handler, family_host, 0)
    except OSError:
        pytest.skip(f"cannot bind {family_host} here")
    port = server.sockets[0].getsockname()[1]
    families = {info[0] for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
    host = "localhost"
    if family_host == "::1" and socket.AF_INET6 not in families:
        host = "[::1]"  # this machine's localhost is IPv4 only: check the IPv6 path directly
    try:
        async with httpstream.AsyncClient() as client:
            r = await client.get(f"http://{host}:{port}/")
            assert r.content == b"ok"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.usefixtures("tls_failure_garbage")
async def test_connect_timeout_covers_the_tls_handshake() -> None:
    import asyncio

    from .peers.servers import FaultServer

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never answers the TLS ClientHello

    async with FaultServer(silent) as srv, httpstream.AsyncClient(timeout=httpstream.Timeout(connect=0.3)) as client:
        with pytest.raises(httpstream.ConnectTimeout, match="0.3 s"):
            await client.get(srv.url().replace("http://", "https://"))
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


async def test_write_timeout_when_the_server_stops_reading() -> None:
    import asyncio

    from .peers.servers import FaultServer

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    big = b"x" * (64 * 1024 * 1024)
    async with FaultServer(never_reads) as srv, httpstream.AsyncClient(timeout=httpstream.Timeout(write=0.3)) as client:
        with pytest.raises(httpstream.WriteTimeout, match="write timeout"):
            await client.post(srv.url(), content=big)
        assert client.transport.stats().in_use == 0  # type: ignore[attr-defined]


@pytest.mark.usefixtures("tls_failure_garbage")
async def test_client_certificate(ca: object, cert_files: dict[str, str], tmp_path: object) -> None:
    import asyncio
    import pathlib

    import trustme

    from .peers.servers import FaultServer, read_request

    assert isinstance(ca, trustme.CA)
    base = pathlib.Path(str(tmp_path))
    client_cert = ca.issue_cert("client@example.org")
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(base / "client.pem"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_files["cert"], cert_files["key"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cert_files["ca"])
    seen: list[object] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with FaultServer(handler, ssl_context=server_ctx) as srv:
        async with httpstream.AsyncClient(verify=cert_files["ca"], cert=str(base / "client.pem")) as client:
            assert (await client.get(srv.url())).content == b"ok"
        assert seen
        assert seen[0]
        async with httpstream.AsyncClient(verify=cert_files["ca"]) as client:
            with pytest.raises((httpstream.ConnectError, httpstream.ReadError, httpstream.RemoteProtocolError)):
                await client.get(srv.url())
