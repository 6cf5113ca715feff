"""Security properties, each checked against a real peer on 127.0.0.1.

TLS: verification is on unless ``verify=False`` is passed, and a refused
certificate says which check refused it (expired, self-signed, unknown issuer,
wrong host) in a ``ConnectError``; ``ssl.SSLError`` never reaches the caller.
So do the handshakes that fail without a certificate to blame (a plain HTTP
server on an https:// URL, a server that hangs up) and CA or client-certificate
files that cannot be loaded.

Request construction: CR, LF and NUL are refused in the method, the URL, header
names and values (header injection), as are hosts IDNA/UTS46 rejects; a Unicode
host goes to DNS, SNI and the Host header as its A-label.  How that is seen
without DNS: the event loop's ``getaddrinfo`` is replaced for one test, mapping
the A-label (and only it) to 127.0.0.1, so the real ``_net`` path runs: the
resolver is asked for the A-label, the TLS server's SNI callback sees it, the
certificate (issued for the A-label) verifies, and the raw server reads the Host
header off the wire.

Response framing (RFC 9112 sections 5.2, 6.1, 6.3), from the known smuggling
vectors.  Every vector is served twice on a fresh connection: once followed by
a "smuggled" response in the same write, after which a second request must get
the server's honest answer on a new connection, never the smuggled one; and once
alone, after which the connection is reused exactly when the last column says.

    vector                                      what the client does                     reused
    ------------------------------------------  ---------------------------------------  ------
    Content-Length: 5 + Content-Length: 6       reject (RemoteProtocolError)             no
    Content-Length: 5, 6                        reject                                   no
    Content-Length: 5 + Content-Length: 5       length 5 (RFC 9110 section 8.6)          yes
    Content-Length: 5, 5                        length 5                                 yes
    Content-Length: +5 / 0x5                    reject                                   no
    Transfer-Encoding: chunked + Content-Length chunked wins (RFC 9112 section 6.3)      no
    Content-Length + Transfer-Encoding: chunked same, whatever the order                 no
    Transfer-Encoding: chunked, identity        reject ("only chunked")                  no
    Transfer-Encoding: gzip, chunked            reject (the safe side of 6.3)            no
    Transfer-Encoding: xchunked                 reject                                   no
    Transfer-Encoding: ChUnKeD / " chunked "    chunked (case-insensitive, OWS trimmed)  yes
    Transfer-Encoding twice                     reject                                   no
    "Transfer-Encoding : chunked" (space)       reject (RFC 9112 section 5.1)            no
    Transfer-Encoding:<VT>chunked               reject                                   no
    Transfer-Encoding: chunked in HTTP/1.0      chunked, then close (section 6.1)        no
    obs-fold in an ordinary field               unfolded to one SP (section 5.2)         yes
    obs-fold into Transfer-Encoding (+ CL)      chunked wins                             no
    obs-fold into Content-Length ("5 6")        reject                                   no
    obs-fold before the first field             reject                                   no
    CR or NUL inside a field value              reject                                   no
    chunk size "0x5" / 21 hex digits            reject (IncompleteBody)                  no

Redirects never carry Authorization, Cookie or Proxy-Authorization to another
origin, never go from https to http unless ``allow_insecure_redirects=True``,
and after such an allowed downgrade a ``Secure`` cookie stays behind.

Decompression: however far one raw chunk expands (deflate, gzip, br, zstd),
the decoded pieces are at most 1 MiB and closing early stops the work.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import pathlib
import re
import ssl
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import brotli
import pytest
import trustme
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import httpstream
from httpstream._codings import MAX_OUTPUT_CHUNK

from .peers.servers import App, FaultServer, HypercornServer, Receive, Scope, Send, read_request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def pool_of(client: httpstream.AsyncClient) -> httpstream.ConnectionPool:
    pool = client.transport
    assert isinstance(pool, httpstream.ConnectionPool)
    return pool


async def settled(client: httpstream.AsyncClient) -> httpstream.PoolStats:
    """The pool's stats once background drains are over (bounded wait)."""
    for _ in range(100):
        if pool_of(client).stats().in_use == 0:
            break
        await asyncio.sleep(0.01)
    return pool_of(client).stats()


# -- TLS verification ----------------------------------------------------------------------------
def _write_pems(base: pathlib.Path, name: str, key_pem: bytes, chain_pems: list[bytes]) -> ssl.SSLContext:
    """A server SSLContext for the key and chain written to ``base``/name.pem and .key
    (an empty key and chain: the files are there already)."""
    certfile = base / f"{name}.pem"
    keyfile = base / f"{name}.key"
    if key_pem:
        certfile.write_bytes(b"".join(chain_pems))
        keyfile.write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """A leaf certificate for ``host`` signed by its own key: no CA anywhere."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def bad_cert_dir(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """<kind>.pem and <kind>.key for every certificate a client trusting ``ca`` must refuse."""
    base = tmp_path_factory.mktemp("bad-certs")
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        "127.0.0.1", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
    )
    wrong_host = ca.issue_cert("other.example")
    stranger = trustme.CA().issue_cert("127.0.0.1")  # a valid chain to a root nobody trusts
    for kind, leaf in (("expired", expired), ("wrong-host", wrong_host), ("unknown-ca", stranger)):
        _write_pems(base, kind, leaf.private_key_pem.bytes(), [blob.bytes() for blob in leaf.cert_chain_pems])
    key_pem, cert_pem = _self_signed("127.0.0.1")
    _write_pems(base, "self-signed", key_pem, [cert_pem])
    return base


@pytest.fixture(scope="module")
def bad_certs(bad_cert_dir: pathlib.Path) -> dict[str, ssl.SSLContext]:
    """Server contexts for the certificates of ``bad_cert_dir``, by kind."""
    return {kind: _write_pems(bad_cert_dir, kind, b"", []) for kind in REASONS}


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


REASONS = {
    "expired": r"certificate has expired",
    "self-signed": r"self[- ]signed certificate",
    "unknown-ca": r"unable to get local issuer certificate",
    "wrong-host": r"IP address mismatch",
}


@pytest.mark.usefixtures("tls_failure_garbage")
@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2-alpn"])
@pytest.mark.parametrize("kind", sorted(REASONS))
async def test_refused_certificate_says_why(
    bad_certs: dict[str, ssl.SSLContext], cert_files: dict[str, str], kind: str, http2: bool
) -> None:
    async with FaultServer(_answer_ok, ssl_context=bad_certs[kind]) as srv:
        async with httpstream.AsyncClient(verify=cert_files["ca"], http2=http2) as client:
            with pytest.raises(httpstream.ConnectError) as info:
                await client.get(srv.url())
            message = str(info.value)
            assert "TLS certificate of 127.0.0.1:" in message
            assert re.search(REASONS[kind], message), message
            assert not isinstance(info.value, ssl.SSLError)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)  # kept, for debugging
            assert pool_of(client).stats().connections == 0
        assert srv.accepted == 0  # the handshake failed: no HTTP exchange ever started


async def test_wrong_host_name_is_named(
    ca: trustme.CA, tmp_path: pathlib.Path, cert_files: dict[str, str], tls_failure_garbage: None
) -> None:
    """By name (not IP): the message says the name did not match."""
    leaf = ca.issue_cert("other.example")
    context = _write_pems(tmp_path, "leaf", leaf.private_key_pem.bytes(), [b.bytes() for b in leaf.cert_chain_pems])
    async with FaultServer(_answer_ok, ssl_context=context) as srv:
        async with httpstream.AsyncClient(verify=cert_files["ca"]) as client:
            with pytest.raises(httpstream.ConnectError, match="(?i)hostname mismatch.*localhost"):
                await client.get(f"https://localhost:{srv.port}/")


@pytest.mark.usefixtures("tls_failure_garbage")
async def test_verification_is_on_by_default(cert_files: dict[str, str]) -> None:
    """No ``verify`` argument: the system store, which does not know the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])
    async with FaultServer(_answer_ok, ssl_context=context) as srv:
        async with httpstream.AsyncClient() as client:
            with pytest.raises(httpstream.ConnectError, match="unable to get local issuer certificate"):
                await client.get(srv.url())
        async with httpstream.AsyncClient(verify=cert_files["ca"]) as client:
            assert (await client.get(srv.url())).content == b"ok"


@pytest.mark.usefixtures("tls_failure_garbage")
async def test_http3_verifies_too(bad_cert_dir: pathlib.Path, cert_files: dict[str, str]) -> None:
    """QUIC does its own TLS (aioquic): verification is on there too, says why, and
    ``verify=False`` turns it off.  One server (stopping a QUIC server takes seconds)."""
    server = HypercornServer(
        App(), certfile=str(bad_cert_dir / "expired.pem"), keyfile=str(bad_cert_dir / "expired.key"), quic=True
    )
    server.start()
    try:
        async with httpstream.AsyncClient(verify=cert_files["ca"], http3="only", timeout=5.0) as client:
            with pytest.raises(httpstream.ConnectError, match="(?i)no longer valid|expired") as info:
                await client.get(server.url("/hello"))
            assert not any(isinstance(e, ssl.SSLError) for e in (info.value, info.value.__cause__))
            assert pool_of(client).stats().connections == 0
        async with httpstream.AsyncClient(verify=False, http3="only", timeout=5.0) as client:
            r = await client.get(server.url("/hello"))
            assert (r.http_version, r.status_code) == ("HTTP/3", 200)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", sorted(REASONS))
async def test_verify_false_accepts_what_it_was_asked_to(bad_certs: dict[str, ssl.SSLContext], kind: str) -> None:
    async with FaultServer(_answer_ok, ssl_context=bad_certs[kind]) as srv:
        async with httpstream.AsyncClient(verify=False) as client:
            r = await client.get(srv.url())
            assert r.content == b"ok"


async def test_unloadable_ca_or_client_cert_is_a_connect_error(tmp_path: pathlib.Path) -> None:
    """The context is built at the first https request: bad files fail there, as ours."""
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("this is not a certificate\n")
    cases: list[dict[str, Any]] = [
        {"verify": str(tmp_path / "missing.pem")},
        {"verify": str(not_pem)},
        {"cert": str(tmp_path / "missing.pem")},
        {"cert": (str(not_pem), str(not_pem))},
    ]
    for kwargs in cases:
        setting = next(iter(kwargs))
        async with httpstream.AsyncClient(**kwargs) as client:
            with pytest.raises(httpstream.ConnectError, match=f"cannot load {setting}=") as info:
                await client.get("https://127.0.0.1:1/")
            assert not isinstance(info.value, (ssl.SSLError, FileNotFoundError))


async def test_https_to_a_plain_http_server_says_so() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)  # the ClientHello, read as if it were a request
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with FaultServer(plain) as srv, httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.ConnectError, match=r"did not answer in TLS.*use an http:// URL") as info:
            await client.get(f"https://127.0.0.1:{srv.port}/")
        assert isinstance(info.value.__cause__, ssl.SSLError)
        assert pool_of(client).stats().connections == 0


async def test_a_server_hanging_up_in_the_handshake_is_a_tls_error() -> None:
    """No alert, just a closed socket (a server with no TLS version in common, or
    one that wants a client certificate): the message still says "TLS handshake"."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.transport.abort()

    async with FaultServer(hang_up) as srv, httpstream.AsyncClient() as client:
        with pytest.raises(httpstream.ConnectError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed") as info:
            await client.get(f"https://127.0.0.1:{srv.port}/")
        assert not isinstance(info.value, ssl.SSLError)
        assert pool_of(client).stats().connections == 0


# -- request construction: injection and IDNA ----------------------------------------------------
INJECTIONS: list[tuple[str, dict[str, Any], type[Exception]]] = [
    ("method CRLF", {"method": "GET /x HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET"}, httpstream.LocalProtocolError),
    ("method final LF", {"method": "GET\n"}, httpstream.LocalProtocolError),
    ("method NUL", {"method": "G\x00ET"}, httpstream.LocalProtocolError),
    ("method bytes LF", {"method": b"GET\n"}, httpstream.LocalProtocolError),
    ("target CRLF", {"url": "/x\r\nX-Evil: 1"}, httpstream.InvalidURL),
    ("target LF", {"url": "/x\nHost: evil"}, httpstream.InvalidURL),
    ("target NUL", {"url": "/x\x00"}, httpstream.InvalidURL),
    ("host CRLF", {"url": "http://a\r\nX: y/"}, httpstream.InvalidURL),
    ("name CRLF", {"headers": [("X-A\r\nX-Evil", "1")]}, httpstream.LocalProtocolError),
    ("name final LF", {"headers": [("X-A\n", "1")]}, httpstream.LocalProtocolError),
    ("name bytes final LF", {"headers": [(b"X-A\n", b"1")]}, httpstream.LocalProtocolError),
    ("name NUL", {"headers": [("X-A\x00", "1")]}, httpstream.LocalProtocolError),
    ("name colon", {"headers": [("X-A: b", "1")]}, httpstream.LocalProtocolError),
    ("value CRLF", {"headers": [("X-A", "1\r\nX-Evil: 1")]}, httpstream.LocalProtocolError),
    ("value LF", {"headers": [("X-A", "1\nX-Evil: 1")]}, httpstream.LocalProtocolError),
    ("value CR", {"headers": [("X-A", "1\rX-Evil: 1")]}, httpstream.LocalProtocolError),
    ("value final LF", {"headers": [("X-A", "1\n")]}, httpstream.LocalProtocolError),
    ("value NUL", {"headers": [("X-A", "1\x00")]}, httpstream.LocalProtocolError),
    ("value bytes CRLF", {"headers": [(b"X-A", b"1\r\nX-Evil: 1")]}, httpstream.LocalProtocolError),
    ("cookie value CRLF", {"cookies": {"a": "1\r\nX-Evil: 1"}}, httpstream.LocalProtocolError),
]


@pytest.mark.parametrize(("case", "kwargs", "error"), INJECTIONS, ids=[c[0] for c in INJECTIONS])
async def test_injection_is_refused_before_anything_is_sent(
    case: str, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    async with FaultServer(_answer_ok) as srv, httpstream.AsyncClient() as client:
        args = {"method": "GET", "url": "/", **kwargs}
        url = args.pop("url")
        if url.startswith("/"):
            url = srv.url(url)
        with pytest.raises(error):
            await client.request(args.pop("method"), url, **args)
        if "cookies" not in kwargs:  # Request itself refuses; the client adds nothing
            with pytest.raises(error):
                httpstream.Request(
                    kwargs.get("method", "GET"), url, headers=kwargs.get("headers")
                )
        assert srv.accepted == 0
        assert pool_of(client).stats().connections == 0


async def test_controls_in_params_and_spaces_in_paths_are_encoded_not_sent_raw() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        await client.get(srv.url("/a b"), params={"q": "1\r\nX-Evil: 1"})
    line = heads[0].split(b"\r\n")[0]
    assert line == b"GET /a%20b?q=1%0D%0AX-Evil%3A+1 HTTP/1.1"
    assert b"X-Evil" not in heads[0].split(b"\r\n", 1)[1]


BAD_HOSTS = [
    "xn--zz.example",  # not Punycode at all
    "xn--a.example",  # Punycode for U+0080
    "xn--ls8h.example",  # Punycode for an emoji IDNA 2008 disallows
    "www.xn--zz.example",  # a fake A-label after the first label
    "\U0001f4a9.example",  # the emoji itself
    "a\u200db.example",  # ZERO WIDTH JOINER outside its context
    "a\u2028b.example",  # LINE SEPARATOR
    "a\u00a0b.example",  # NO-BREAK SPACE, mapped to a space
    "\u2474.example",  # PARENTHESIZED DIGIT ONE, mapped to "(1)"
    "a\uff0fb.example",  # FULLWIDTH SOLIDUS, NFKC "/" (would move the path)
    "a\uff20b.example",  # FULLWIDTH COMMERCIAL AT, NFKC "@" (would move the userinfo)
    "b%C3%BCcher.example",  # percent-encoding is not a host
    "a b.example",
]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_hosts_idna_rejects_are_invalid_urls(host: str) -> None:
    with pytest.raises(httpstream.InvalidURL):
        httpstream.URL(f"https://{host}/")
    with pytest.raises(httpstream.InvalidURL):
        httpstream.Request("GET", f"https://{host}/")


@pytest.mark.parametrize(
    ("host", "a_label"),
    [
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("B\u00dcCHER.example", "xn--bcher-kva.example"),  # UTS46 case mapping
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),  # an A-label, checked and lowered
        ("fa\u00df.de", "xn--fa-hia.de"),  # IDNA 2008: sharp s kept (not "fass.de")
        ("b\u00fccher\u3002example", "xn--bcher-kva.example"),  # IDEOGRAPHIC FULL STOP is a dot
    ],
)
def test_unicode_hosts_become_a_labels(host: str, a_label: str) -> None:
    request = httpstream.Request("GET", f"https://{host}:8443/p")
    assert request.url.host == a_label
    assert request.headers.get_raw("host") == [f"{a_label}:8443".encode()]


async def test_unicode_host_goes_to_dns_sni_and_host_header_as_its_a_label(
    ca: trustme.CA, tmp_path: pathlib.Path, cert_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_label = "xn--bcher-kva.example"
    leaf = ca.issue_cert(a_label)
    context = _write_pems(tmp_path, "idn", leaf.private_key_pem.bytes(), [b.bytes() for b in leaf.cert_chain_pems])
    sni: list[str | None] = []

    def record_sni(_sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)

    context.sni_callback = record_sni
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()

    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        if host == a_label:  # the one name this test resolves; anything else goes to the real resolver
            host = "127.0.0.1"
        return await real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    async with FaultServer(handler, ssl_context=context) as srv:
        async with httpstream.AsyncClient(verify=cert_files["ca"]) as client:
            r = await client.get(f"https://B\u00fccher.example:{srv.port}/")
            assert r.content == b"ok"
    assert asked == [a_label]
    assert sni == [a_label]
    assert f"\r\nHost: {a_label}:{srv.port}\r\n".encode() in heads[0]


# -- response framing: the smuggling vectors -----------------------------------------------------
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"

# (id, response, body the client reads or None when it must refuse, reusable when nothing follows)
VECTORS: list[tuple[str, bytes, bytes | None, bool]] = [
    ("cl-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", None, False),
    ("cl-list", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!", None, False),
    ("cl-same", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    ("cl-same-list", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", b"hello", True),
    ("cl-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", None, False),
    ("cl-hex", b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello", None, False),
    ("te-cl", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n" + CHUNKED_HELLO, b"hello", False),
    ("cl-te", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, b"hello", False),
    ("te-identity", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\nhello", None, False),
    ("te-gzip-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKED_HELLO, None, False),
    ("te-xchunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello", None, False),
    ("te-case", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ChUnKeD\r\n\r\n" + CHUNKED_HELLO, b"hello", True),
    ("te-ows", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \t chunked \t\r\n\r\n" + CHUNKED_HELLO, b"hello", True),
    ("te-twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, None, False),
    ("te-space-colon", b"HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello", None, False),
    ("te-vtab", b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\x0bchunked\r\nContent-Length: 5\r\n\r\nhello", None, False),
    ("te-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, b"hello", False),
    ("fold-field", b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    ("fold-te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + CHUNKED_HELLO, b"hello", False),
    ("fold-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 6\r\n\r\nhello!", None, False),
    ("fold-first", b"HTTP/1.1 200 OK\r\n X-A: a\r\nContent-Length: 5\r\n\r\nhello", None, False),
    ("cr-in-value", b"HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 1\r\nContent-Length: 5\r\n\r\nhello", None, False),
    ("nul-in-value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", None, False),
    ("chunk-0x", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", None, False),
    ("chunk-21-digits", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"F" * 20 + b"5\r\nhello\r\n0\r\n\r\n", None, False),
]


def _vector_server(response: bytes, tail: bytes) -> FaultServer:
    """The first request ever gets ``response + tail``; every later one an honest "ok"."""
    served = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            served[0] += 1
            writer.write(response + tail if served[0] == 1 else OK)
            await writer.drain()

    return FaultServer(handler)


@pytest.mark.parametrize(("name", "response", "body", "reusable"), VECTORS, ids=[v[0] for v in VECTORS])
async def test_smuggling_vector(name: str, response: bytes, body: bytes | None, reusable: bool) -> None:
    srv = _vector_server(response, SMUGGLED)
    async with srv, httpstream.AsyncClient(timeout=5.0) as client:
        if body is None:
            with pytest.raises(httpstream.RemoteProtocolError) as info:
                await client.get(srv.url())
            assert type(info.value).__module__.startswith("httpstream")  # h11's error only as the cause
        else:
            assert (await client.get(srv.url())).content == body
        second = await client.get(srv.url())
        assert second.content == b"ok"  # never b"SMUGGLED"
        assert srv.accepted == 2
        assert (await settled(client)).in_use == 0


@pytest.mark.parametrize(("name", "response", "body", "reusable"), VECTORS, ids=[v[0] for v in VECTORS])
async def test_only_unambiguous_framing_keeps_the_connection(
    name: str, response: bytes, body: bytes | None, reusable: bool
) -> None:
    """Nothing follows the response this time: the connection is reused exactly when
    the framing was unambiguous (the last column of the table)."""
    srv = _vector_server(response, b"")
    async with srv, httpstream.AsyncClient(timeout=5.0) as client:
        if body is None:
            with pytest.raises(httpstream.RemoteProtocolError):
                await client.get(srv.url())
        else:
            r = await client.get(srv.url())
            assert r.content == body
            if name == "fold-field":
                assert r.headers["x-a"] == "a folded"
        assert (await client.get(srv.url())).content == b"ok"
        assert srv.accepted == (1 if reusable else 2)


# -- redirects: credentials and downgrades -------------------------------------------------------
class RedirectApp(App):
    """/go?to=URL[&status=302] redirects; /headers returns the request headers as a
    JSON object; /cookies sets ``plain=1`` and ``sec=1; Secure``.  ``hits``
    counts the requests to /headers."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    async def h_go(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        await self._send(send, int(q.get("status", "302")), b"", [(b"location", q["to"].encode())])

    async def h_headers(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        self.hits += 1
        fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        await self._send(send, 200, json.dumps(fields).encode())

    async def h_cookies(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        cookies = [(b"set-cookie", b"plain=1; Path=/"), (b"set-cookie", b"sec=1; Path=/; Secure")]
        await self._send(send, 200, b"", cookies)


@pytest.fixture(scope="module")
def plain_server() -> Iterator[HypercornServer]:
    server = HypercornServer(RedirectApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def secure_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(RedirectApp(), certfile=cert_files["cert"], keyfile=cert_files["key"])
    server.start()
    yield server
    server.stop()


def go(to: str, status: int = 302) -> str:
    return f"/go?status={status}&to={quote(to, safe='')}"


SECRETS = {"Authorization": "Bearer secret", "Cookie": "session=secret", "Proxy-Authorization": "Basic c2VjcmV0"}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    plain_server: HypercornServer, status: int
) -> None:
    other = f"http://localhost:{plain_server.port}/headers"  # same port, another host: another origin
    async with httpstream.AsyncClient(follow_redirects=True) as client:
        r = await client.get(plain_server.url(go(other, status)), headers=SECRETS)
        seen = r.json()
        assert r.url.host == "localhost"
        assert not {"authorization", "cookie", "proxy-authorization"} & set(seen)
        # auth= and credentials in the URL end up as Authorization: stripped the same way.
        r = await client.get(plain_server.url(go(other, status)), auth=("user", "secret"))
        assert "authorization" not in r.json()
        userinfo_url = plain_server.url(go(other, status)).replace("://", "://user:secret@")
        r = await client.get(userinfo_url)
        assert "authorization" not in r.json()
        assert (await settled(client)).in_use == 0


async def test_another_port_or_scheme_is_another_origin(
    plain_server: HypercornServer, secure_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with httpstream.AsyncClient(
        follow_redirects=True, verify=cert_files["ca"], allow_insecure_redirects=True
    ) as client:
        # https://127.0.0.1:A -> http://127.0.0.1:B: same host, another scheme and port.
        r = await client.get(secure_server.url(go(plain_server.url("/headers"))), headers=SECRETS)
        assert not {"authorization", "cookie", "proxy-authorization"} & set(r.json())


async def test_same_origin_redirect_keeps_authorization_only(plain_server: HypercornServer) -> None:
    async with httpstream.AsyncClient(follow_redirects=True) as client:
        r = await client.get(plain_server.url(go("/headers")), headers=SECRETS)
        seen = r.json()
        assert seen["authorization"] == "Bearer secret"
        assert "proxy-authorization" not in seen  # meant for a proxy hop, never re-sent


async def test_jar_cookies_stay_with_their_host(plain_server: HypercornServer) -> None:
    async with httpstream.AsyncClient(follow_redirects=True) as client:
        await client.get(plain_server.url("/cookies"))
        r = await client.get(plain_server.url("/headers"))
        assert r.json()["cookie"] == "plain=1"  # the jar works: sec=1 is Secure, this is http
        r = await client.get(plain_server.url(go(f"http://localhost:{plain_server.port}/headers")))
        assert "cookie" not in r.json()


async def test_https_to_http_is_refused_by_default(
    plain_server: HypercornServer, secure_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    app = plain_server.app
    assert isinstance(app, RedirectApp)
    before = app.hits
    start = secure_server.url(go(plain_server.url("/headers")))
    async with httpstream.AsyncClient(follow_redirects=True, verify=cert_files["ca"]) as client:
        with pytest.raises(httpstream.InsecureRedirect, match="allow_insecure_redirects=True"):
            await client.get(start)
    assert app.hits == before  # nothing was sent over plain http
    assert (await settled(client)).in_use == 0


async def test_https_to_http_is_refused_when_streaming_too(
    plain_server: HypercornServer, secure_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    start = secure_server.url(go(plain_server.url("/headers")))
    async with httpstream.AsyncClient(follow_redirects=True, verify=cert_files["ca"]) as client:
        with pytest.raises(httpstream.InsecureRedirect):
            async with client.stream("GET", start):
                pass
        assert (await settled(client)).in_use == 0


async def test_secure_cookie_stays_behind_after_an_allowed_downgrade(
    plain_server: HypercornServer, secure_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with httpstream.AsyncClient(
        follow_redirects=True, verify=cert_files["ca"], allow_insecure_redirects=True
    ) as client:
        await client.get(secure_server.url("/cookies"))
        r = await client.get(secure_server.url("/headers"))
        assert sorted(r.json()["cookie"].split("; ")) == ["plain=1", "sec=1"]  # both over https
        r = await client.get(secure_server.url(go(plain_server.url("/headers"))))
        assert r.url.scheme == "http" and len(r.history) == 1
        assert r.json()["cookie"] == "plain=1"  # Secure stayed behind


# -- decompression bombs, over the network -------------------------------------------------------
BOMB_SIZE = 32 * 1024 * 1024


def _compress(coding: str, size: int) -> bytes:
    zeros = bytes(1024 * 1024)
    if coding == "br":
        compressor = brotli.Compressor(quality=5, lgwin=24)
        blob: bytes = b"".join(compressor.process(zeros) for _ in range(size // len(zeros))) + compressor.finish()
        return blob
    if coding == "zstd":
        zobj = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(zobj.compress(zeros) for _ in range(size // len(zeros))) + zobj.flush()
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[coding]
    cobj = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(cobj.compress(zeros) for _ in range(size // len(zeros))) + cobj.flush()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {c: _compress(c, BOMB_SIZE) for c in ("gzip", "deflate", "raw-deflate", "br", "zstd")}


def _bomb_server(coding: str, blob: bytes) -> FaultServer:
    header = b"deflate" if coding == "raw-deflate" else coding.encode()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (header, len(blob))
        while True:
            await read_request(reader)
            writer.write(head + blob)  # one write: the whole bomb can arrive as one raw chunk
            await writer.drain()

    return FaultServer(handler)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "br", "zstd"])
async def test_a_hugely_expanding_chunk_is_handed_out_in_capped_pieces(bombs: dict[str, bytes], coding: str) -> None:
    blob = bombs[coding]
    assert len(blob) * 200 < BOMB_SIZE  # it is a bomb
    async with _bomb_server(coding, blob) as srv, httpstream.AsyncClient() as client:
        async with client.stream("GET", srv.url()) as r:
            total = biggest = 0
            async for piece in r.aiter_bytes():
                total += len(piece)
                biggest = max(biggest, len(piece))
        assert total == BOMB_SIZE
        assert 0 < biggest <= MAX_OUTPUT_CHUNK == 1024 * 1024
        # Closing after the first piece stops the decoding: nothing left running, nothing in use.
        async with client.stream("GET", srv.url()) as r:
            pieces = r.aiter_bytes()
            first = await pieces.__anext__()
            assert len(first) <= MAX_OUTPUT_CHUNK
            await pieces.aclose()
        assert (await settled(client)).in_use == 0
