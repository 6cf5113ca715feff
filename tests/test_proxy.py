"""Proxies as a client: forwarding, CONNECT tunnels, proxy auth, the environment, SOCKS5.

Every proxy here is a real one on loopback (tests/peers/proxy_servers.py) in front of
the session's hypercorn servers; what the proxy saw is checked, not the pool's
own account of it.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest

import httpstream
from httpstream import ConnectionPool, Request, Response
from httpstream._exceptions import ConnectError, ConnectTimeout, InvalidURL, LocalProtocolError, ProxyError
from httpstream._proxy import (
    Proxy,
    Socks5Handshake,
    bypass,
    connect_request,
    parse_connect_reply,
    proxies_from_env,
)

from .peers.proxy_servers import HTTPProxy, Socks5Proxy, basic
from .peers.servers import HypercornServer

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture
def proxy_tls(cert_files: dict[str, str]) -> ssl.SSLContext:
    """Server side of an HTTPS proxy, with the session CA's certificate for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])
    return context


async def get(pool: ConnectionPool, url: str, **kwargs: object) -> tuple[Response, bytes]:
    request = Request("GET", url, **kwargs)  # type: ignore[arg-type]
    response = await pool.handle_request(request)
    return response, await response.aread()


# -- HTTP proxy: forwarding and CONNECT ------------------------------------------------------------


async def test_http_request_is_forwarded_in_absolute_form(server: HypercornServer, clean_env: object) -> None:
    async with HTTPProxy() as proxy, ConnectionPool(proxy=proxy.url) as pool:
        response, body = await get(pool, server.url("/echo?x=1"))
        assert response.status_code == 200
        info = json.loads(body)
        assert proxy.seen[0].request_line == f"GET http://127.0.0.1:{server.port}/echo?x=1 HTTP/1.1"
        assert (info["path"], info["query"]) == ("/echo", "x=1")
        assert ["host", f"127.0.0.1:{server.port}"] in info["headers"]
        # Another http:// origin rides the same connection to the proxy.
        response, body = await get(pool, f"http://localhost:{server.port}/hello")
        assert body == b"hello world\n"
        assert proxy.seen[1].request_line == f"GET http://localhost:{server.port}/hello HTTP/1.1"
        assert proxy.accepted == 1
        assert pool.stats().connections == 1 and pool.stats().idle == 1


async def test_https_goes_through_a_connect_tunnel(
    tls_server: HypercornServer, cert_files: dict[str, str], clean_env: object
) -> None:
    async with HTTPProxy() as proxy, ConnectionPool(proxy=proxy.url, verify=cert_files["ca"]) as pool:
        for _ in range(3):
            response, body = await get(pool, tls_server.url("/hello"))
            assert body == b"hello world\n"
        assert [s.request_line for s in proxy.seen] == [f"CONNECT 127.0.0.1:{tls_server.port} HTTP/1.1"]
        assert ("host", f"127.0.0.1:{tls_server.port}") in proxy.seen[0].headers  # h11 lower-cases names
        assert proxy.accepted == 1
        assert tls_server.app.connections == 1  # one TLS session inside one tunnel
        assert response.http_version == "HTTP/1.1"


async def test_tunnel_checks_the_target_certificate(
    tls_server: HypercornServer, clean_env: object, tls_failure_garbage: None
) -> None:
    async with HTTPProxy() as proxy, ConnectionPool(proxy=proxy.url) as pool:
        with pytest.raises(ConnectError, match=f"certificate of 127.0.0.1:{tls_server.port}"):
            await get(pool, tls_server.url("/hello"))
        assert pool.stats().connections == 0


async def test_http2_through_the_tunnel(
    h2_server: HypercornServer, cert_files: dict[str, str], clean_env: object
) -> None:
    async with HTTPProxy() as proxy, ConnectionPool(proxy=proxy.url, verify=cert_files["ca"], http2=True) as pool:
        results = await asyncio.gather(*(get(pool, h2_server.url("/hello")) for _ in range(4)))
        assert {r.http_version for r, _ in results} == {"HTTP/2"}
        assert all(body == b"hello world\n" for _, body in results)
        assert len(proxy.seen) == 1 and proxy.accepted == 1  # the others waited for ALPN
        assert h2_server.app.connections == 1


async def test_https_proxy_is_tls_to_the_proxy_itself(
    server: HypercornServer,
    tls_server: HypercornServer,
    cert_files: dict[str, str],
    proxy_tls: ssl.SSLContext,
    clean_env: object,
) -> None:
    async with HTTPProxy(ssl_context=proxy_tls) as proxy:
        assert proxy.url.startswith("https://")
        async with ConnectionPool(proxy=proxy.url, verify=cert_files["ca"]) as pool:
            _, body = await get(pool, tls_server.url("/hello"))  # TLS inside TLS
            assert body == b"hello world\n"
            _, body = await get(pool, server.url("/hello"))  # forwarded over TLS
            assert body == b"hello world\n"
        assert [s.request_line.split()[0] for s in proxy.seen] == ["CONNECT", "GET"]


# -- proxy authentication ----------------------------------------------------------------------------


async def test_proxy_credentials_from_url_and_from_auth(
    server: HypercornServer, tls_server: HypercornServer, cert_files: dict[str, str], clean_env: object
) -> None:
    async with HTTPProxy(auth=("us@er", "p:ss")) as proxy:
        url_form = f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}"
        for configured in (url_form, Proxy(proxy.url, auth=("us@er", "p:ss"))):
            async with ConnectionPool(proxy=configured, verify=cert_files["ca"]) as pool:
                request = Request("GET", server.url("/hello"), headers={"X-Mine": "1"})
                response = await pool.handle_request(request)
                assert await response.aread() == b"hello world\n"
                assert response.request is request
                assert "proxy-authorization" not in request.headers  # never in the caller's request
                assert list(request.headers) == ["Host", "X-Mine"]  # Host first: RFC 9110 section 7.2
                _, body = await get(pool, tls_server.url("/hello"))
                assert body == b"hello world\n"
        assert len(proxy.seen) == 4
        assert {s.proxy_authorization for s in proxy.seen} == {basic("us@er", "p:ss")}


async def test_client_redirects_through_a_forward_proxy_never_show_its_credentials(
    server: HypercornServer, clean_env: object
) -> None:
    async with HTTPProxy(auth=("u", "p")) as proxy:
        pool = ConnectionPool(proxy=Proxy(proxy.url, auth=("u", "p")))
        async with httpstream.AsyncClient(transport=pool, follow_redirects=True) as client:
            response = await client.get(server.url("/redirect/2"))
        assert response.status_code == 200
        assert len(response.history) == 2
        for r in [*response.history, response]:
            assert "proxy-authorization" not in r.request.headers
        assert [s.proxy_authorization for s in proxy.seen] == [basic("u", "p")] * 3
        assert all(s.request_line.startswith(f"GET http://127.0.0.1:{server.port}/") for s in proxy.seen)


async def test_proxy_authentication_required(
    server: HypercornServer, tls_server: HypercornServer, cert_files: dict[str, str], clean_env: object
) -> None:
    async with HTTPProxy(auth=("u", "p")) as proxy:
        async with ConnectionPool(proxy=proxy.url, verify=cert_files["ca"]) as pool:
            with pytest.raises(ProxyError, match="proxy authentication required.*407.*no credentials") as info:
                await get(pool, tls_server.url("/hello"))
            assert proxy.url in str(info.value) and 'Basic realm="test proxy"' in str(info.value)
            # Forwarded, the 407 is the proxy's answer to the request itself.
            response, _ = await get(pool, server.url("/hello"))
            assert response.status_code == 407
        async with ConnectionPool(proxy=Proxy(proxy.url, auth=("u", "wrong")), verify=cert_files["ca"]) as pool:
            with pytest.raises(ProxyError, match="407.*credentials were refused"):
                await get(pool, tls_server.url("/hello"))
            assert pool.stats().connections == 0


async def test_connect_refused_is_a_proxy_error(
    tls_server: HypercornServer, cert_files: dict[str, str], clean_env: object, no_leaks: None
) -> None:
    async with HTTPProxy(refuse_connect=True) as proxy, ConnectionPool(proxy=proxy.url) as pool:
        with pytest.raises(ProxyError, match=rf"proxy {proxy.url} refused the tunnel to 127.0.0.1:\d+: 403 Forbidden"):
            await get(pool, tls_server.url("/hello"))
        assert pool.stats().connections == 0


# -- failures leave nothing behind -------------------------------------------------------------------


async def test_tunnel_setup_counts_against_the_connect_timeout(
    tls_server: HypercornServer, clean_env: object, no_leaks: None
) -> None:
    timeout = httpstream.Timeout(connect=0.3)
    async with HTTPProxy(stall=True) as proxy, ConnectionPool(proxy=proxy.url, timeout=timeout) as pool:
        with pytest.raises(ConnectTimeout, match="through proxy"):
            await get(pool, tls_server.url("/hello"))
        assert len(proxy.seen) == 1
        assert pool.stats().connections == 0
        async with asyncio.timeout(5):
            await proxy.hung_up.wait()  # the socket was closed, not left to the collector


async def test_cancelled_during_the_connect_handshake(
    tls_server: HypercornServer, clean_env: object, no_leaks: None
) -> None:
    async with HTTPProxy(stall=True) as proxy, ConnectionPool(proxy=proxy.url) as pool:
        task = asyncio.ensure_future(get(pool, tls_server.url("/hello")))
        async with asyncio.timeout(5):
            await proxy.request_seen.wait()  # the proxy has the CONNECT request: we are mid-handshake
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().connections == 0
        async with asyncio.timeout(5):
            await proxy.hung_up.wait()


async def test_unreachable_proxy_is_named(server: HypercornServer, clean_env: object, no_leaks: None) -> None:
    async with HTTPProxy() as proxy:
        url = proxy.url
    async with ConnectionPool(proxy=url) as pool:
        with pytest.raises(ConnectError, match=f"cannot connect to proxy {url}"):
            await get(pool, server.url("/hello"))
        with pytest.raises(ConnectError, match=f"cannot connect to proxy {url}"):
            await get(pool, server.url("/hello").replace("http:", "https:"))
        assert pool.stats().connections == 0


async def test_http3_is_never_used_through_a_proxy(clean_env: object) -> None:
    async with ConnectionPool(proxy="http://127.0.0.1:9", http3="only") as pool:
        with pytest.raises(LocalProtocolError, match="HTTP/3 cannot go through proxy"):
            await get(pool, "https://127.0.0.1:9/")


# -- the environment ---------------------------------------------------------------------------------


async def test_environment_proxies_and_no_proxy(
    server: HypercornServer, tls_server: HypercornServer, cert_files: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    async with HTTPProxy() as proxy:
        clean_env.setenv("http_proxy", proxy.url)
        clean_env.setenv("HTTPS_PROXY", proxy.url)
        clean_env.setenv("NO_PROXY", "example.com, localhost")
        async with ConnectionPool(verify=cert_files["ca"]) as pool:
            clean_env.delenv("http_proxy")  # read once, at construction
            await get(pool, server.url("/hello"))
            await get(pool, tls_server.url("/hello"))
            await get(pool, f"http://localhost:{server.port}/hello")  # bypassed
            await get(pool, f"https://localhost:{tls_server.port}/hello")  # bypassed
            assert [s.request_line.split()[0] for s in proxy.seen] == ["GET", "CONNECT"]
            assert pool.stats().connections == 4  # forward, tunnel, and two direct
        async with ConnectionPool(verify=cert_files["ca"], trust_env=False) as pool:
            await get(pool, tls_server.url("/hello"))
        clean_env.setenv("HTTP_PROXY", proxy.url)  # uppercase: ignored (httpoxy), as curl does
        async with ConnectionPool() as pool:
            await get(pool, server.url("/hello"))
        assert len(proxy.seen) == 2


def test_proxies_from_env_follows_curl() -> None:
    env = proxies_from_env(
        {
            "HTTP_PROXY": "http://upper:1",
            "https_proxy": "http://lower:2",
            "HTTPS_PROXY": "http://upper:3",
            "ALL_PROXY": "socks5h://all:4",
            "no_proxy": "",
            "NO_PROXY": "a.example, .b.example  10.0.0.0/8",
        }
    )
    assert env["http"] is None
    assert env["https"] is not None and str(env["https"]) == "http://lower:2"
    assert env["all"] is not None and str(env["all"]) == "socks5h://all:4"
    assert env["no_proxy"] == ["a.example", ".b.example", "10.0.0.0/8"]
    env = proxies_from_env({"http_proxy": "proxy.internal:3128", "https_proxy": ""})
    assert env["http"] is not None and str(env["http"]) == "http://proxy.internal:3128"
    assert env["https"] is None and env["all"] is None and env["no_proxy"] == []
    with pytest.raises(InvalidURL, match="environment variable https_proxy"):
        proxies_from_env({"https_proxy": "ftp://x:1"})


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("http://example.com/", "*", True),
        ("http://example.com/", "example.com", True),
        ("http://www.example.com/", "example.com", True),
        ("http://www.example.com/", ".example.com", True),
        ("http://example.com/", ".example.com", True),
        ("http://www.example.com/", "*.example.com", True),
        ("http://badexample.com/", "example.com", False),
        ("http://EXAMPLE.com./", "Example.COM", True),
        ("http://example.org/", "example.com,other", False),
        ("http://127.0.0.1:8000/", "", False),
        ("http://localhost/", "example.com", False),
        ("http://127.0.0.1/", "127.0.0.1", True),
        ("http://127.0.0.1/", "localhost", False),
        ("http://10.1.2.3/", "10.0.0.0/8", True),
        ("http://11.1.2.3/", "10.0.0.0/8", False),
        ("http://[::1]/", "::1", True),
        ("http://[::1]/", "[::1]", True),
        ("http://[fe80::1]/", "fe80::/10", True),
        ("http://example.com:8080/", "example.com:8080", True),
        ("http://example.com:8081/", "example.com:8080", False),
        ("http://example.com/", "example.com:80", True),
        ("https://example.com/", "example.com:80", False),
        ("http://[::1]:8080/", "[::1]:8080", True),
        ("http://[::1]:8081/", "[::1]:8080", False),
        ("http://xn--bcher-kva.example/", "bücher.example", True),
    ],
)
def test_no_proxy_rules(url: str, no_proxy: str, bypassed: bool) -> None:
    assert bypass(url, no_proxy) is bypassed


def test_proxy_values() -> None:
    proxy = Proxy("http://user:s%3Acret@Proxy.Example")
    assert proxy.auth == ("user", "s:cret")
    assert (proxy.scheme, proxy.host, proxy.port) == ("http", "proxy.example", 80)
    assert "s:cret" not in repr(proxy) and "s:cret" not in str(proxy)
    assert Proxy("socks5h://h").port == 1080 and Proxy("https://h").port == 443
    assert str(Proxy("h:3128")) == "http://h:3128"
    with pytest.raises(InvalidURL, match="unsupported proxy scheme 'ftp'") as info:
        Proxy("ftp://user:secret@h")
    assert "secret" not in str(info.value)


# -- the handshakes, byte by byte ---------------------------------------------------------------------


def test_connect_request_and_reply_split_anywhere() -> None:
    proxy = Proxy("http://p:1", auth=("a", "b"), headers={"X-Proxy": "1"})
    assert connect_request("::1", 443, proxy) == (
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic YTpi\r\nX-Proxy: 1\r\n\r\n"
    )
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 Connection established\r\nVia: p\r\n\r\nTLS"
    for split in range(len(wire) + 1):
        assert parse_connect_reply(wire[:split], proxy) is None or split >= len(wire) - 3
    reply = parse_connect_reply(wire, proxy)
    assert reply is not None and reply.ok and reply.status == 200 and wire[reply.end :] == b"TLS"
    with pytest.raises(ProxyError, match="not HTTP"):
        parse_connect_reply(b"SSH-2.0-OpenSSH\r\n\r\n", proxy)
    with pytest.raises(ProxyError, match="larger than"):
        parse_connect_reply(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000, proxy)


def test_socks5_handshake_split_anywhere() -> None:
    proxy = Proxy("socks5h://p", auth=("user", "pw"))
    server = b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00\x03\x04host\x01\xbb" + b"early"
    for split in range(1, len(server)):
        handshake = Socks5Handshake("example.com", 443, proxy)
        assert handshake.start() == b"\x05\x02\x00\x02"
        sent = handshake.receive(server[:split]) + handshake.receive(server[split:])
        assert sent == b"\x01\x04user\x02pw" + b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
        assert handshake.done and handshake.leftover == b"early"
    handshake = Socks5Handshake("10.0.0.1", 80, Proxy("socks5://p"))
    assert handshake.receive(b"\x05\x00") == b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"
    with pytest.raises(ProxyError, match="cannot reach 10.0.0.1:80: host unreachable"):
        handshake.receive(b"\x05\x04")
    with pytest.raises(ProxyError, match="does not speak SOCKS5"):
        Socks5Handshake("h", 1, Proxy("socks5://p")).receive(b"HTTP/1.1 400")


# -- SOCKS5 ----------------------------------------------------------------------------------------


async def test_socks5h_sends_the_name_socks5_the_address(
    server: HypercornServer, tls_server: HypercornServer, cert_files: dict[str, str], clean_env: object
) -> None:
    async with Socks5Proxy() as socks:
        remote = f"socks5h://127.0.0.1:{socks.port}"
        async with ConnectionPool(proxy=remote, verify=cert_files["ca"]) as pool:
            _, body = await get(pool, f"http://localhost:{server.port}/hello")
            assert body == b"hello world\n"
            _, body = await get(pool, f"https://localhost:{tls_server.port}/hello")  # SNI: localhost
            assert body == b"hello world\n"
            await get(pool, f"https://localhost:{tls_server.port}/hello")  # reused
        assert socks.seen == [(3, "localhost", server.port), (3, "localhost", tls_server.port)]
        async with ConnectionPool(proxy=f"socks5://127.0.0.1:{socks.port}") as pool:
            _, body = await get(pool, f"http://localhost:{server.port}/hello")
            assert body == b"hello world\n"
        assert socks.seen[2][0] in (1, 4) and socks.seen[2][1] in ("127.0.0.1", "::1")
        assert socks.accepted == 3


async def test_socks5_username_and_password(server: HypercornServer, clean_env: object, no_leaks: None) -> None:
    async with Socks5Proxy(auth=("user", "pw")) as socks:
        async with ConnectionPool(proxy=f"socks5h://user:pw@127.0.0.1:{socks.port}") as pool:
            _, body = await get(pool, server.url("/hello"))
            assert body == b"hello world\n"
        async with ConnectionPool(proxy=f"socks5h://user:nope@127.0.0.1:{socks.port}") as pool:
            with pytest.raises(ProxyError, match="username/password authentication failed"):
                await get(pool, server.url("/hello"))
            assert pool.stats().connections == 0
        async with ConnectionPool(proxy=f"socks5h://127.0.0.1:{socks.port}") as pool:
            with pytest.raises(ProxyError, match="none of the offered authentication methods.*username"):
                await get(pool, server.url("/hello"))
        assert len(socks.seen) == 1


async def test_socks5_refusal_names_the_reply(server: HypercornServer, clean_env: object, no_leaks: None) -> None:
    async with Socks5Proxy(reply=5) as socks, ConnectionPool(proxy=f"socks5h://127.0.0.1:{socks.port}") as pool:
        with pytest.raises(ProxyError, match=rf"SOCKS5 proxy socks5h://127.0.0.1:{socks.port}: .*connection refused"):
            await get(pool, server.url("/hello"))
        assert pool.stats().connections == 0
