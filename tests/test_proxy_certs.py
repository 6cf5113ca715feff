"""The proxy's CA and leaf certificates (httpstream/proxy/_certs.py), checked by real TLS handshakes.

Every store lives under tmp_path, never in the real home directory.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import httpstream
from httpstream.proxy._certs import CA_CERT_FILE, CA_KEY_FILE, CertStore, CertStoreError

pytestmark = pytest.mark.usefixtures("no_leaks")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _client_context(store: CertStore, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=store.ca_cert_path)  # trusts only our CA
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 turns on by default
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


async def _raw_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny HTTP/1.1 responder (no h11): one request, one answer, then close."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        body = b"hello over our CA"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


@asynccontextmanager
async def _tls_server(ctx: ssl.SSLContext, host: str = "127.0.0.1") -> AsyncIterator[int]:
    server = await asyncio.start_server(_raw_http, host, 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _handshake(
    port: int, client: ssl.SSLContext, server_hostname: str, host: str = "127.0.0.1"
) -> tuple[x509.Certificate, str | None]:
    """Connect, shake hands, return the certificate the server presented and the ALPN pick."""
    _reader, writer = await asyncio.open_connection(host, port, ssl=client, server_hostname=server_hostname)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), sslobj.selected_alpn_protocol()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


# -- the CA on disk -------------------------------------------------------------------------


def test_nothing_on_disk_before_first_use(tmp_path: Path) -> None:
    store = CertStore(tmp_path / "conf")
    assert store.ca_cert_path == str(tmp_path / "conf" / CA_CERT_FILE)
    assert not (tmp_path / "conf").exists()


def test_ca_files_and_modes(tmp_path: Path) -> None:
    confdir = tmp_path / "a" / "conf"  # parents made too
    old = os.umask(0)  # the modes must not depend on the umask
    try:
        CertStore(confdir).ensure()
    finally:
        os.umask(old)
    assert _mode(confdir) == 0o700
    assert _mode(confdir / CA_KEY_FILE) == 0o600
    assert _mode(confdir / CA_CERT_FILE) == 0o644
    assert sorted(os.listdir(confdir)) == [CA_CERT_FILE, CA_KEY_FILE]  # no temporary left

    blob = (confdir / CA_KEY_FILE).read_bytes()
    assert b"PRIVATE KEY" in blob
    key = serialization.load_pem_private_key(blob, password=None)
    cert = x509.load_pem_x509_certificate(blob)
    cert_only = (confdir / CA_CERT_FILE).read_bytes()
    assert b"PRIVATE KEY" not in cert_only
    assert x509.load_pem_x509_certificate(cert_only) == cert
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "httpstream"
    assert cert.issuer == cert.subject
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=3600) < lifetime < datetime.timedelta(days=3700)


def test_existing_confdir_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    CertStore(tmp_path).ensure()
    assert _mode(tmp_path) == 0o755
    assert _mode(tmp_path / CA_KEY_FILE) == 0o600


def test_second_store_reuses_the_ca(tmp_path: Path) -> None:
    first = CertStore(tmp_path)
    first.ensure()
    key_blob = (tmp_path / CA_KEY_FILE).read_bytes()
    second = CertStore(tmp_path)
    assert second.ca_cert == first.ca_cert
    assert (tmp_path / CA_KEY_FILE).read_bytes() == key_blob


def test_missing_cert_file_is_rewritten_from_the_key_file(tmp_path: Path) -> None:
    CertStore(tmp_path).ensure()
    good = (tmp_path / CA_CERT_FILE).read_bytes()
    (tmp_path / CA_CERT_FILE).unlink()
    CertStore(tmp_path).ensure()
    assert (tmp_path / CA_CERT_FILE).read_bytes() == good
    (tmp_path / CA_CERT_FILE).write_bytes(b"stale")
    CertStore(tmp_path).ensure()
    assert (tmp_path / CA_CERT_FILE).read_bytes() == good


def test_key_file_open_to_others_is_refused(tmp_path: Path) -> None:
    CertStore(tmp_path).ensure()
    (tmp_path / CA_KEY_FILE).chmod(0o644)
    with pytest.raises(CertStoreError, match=r"open to other users \(mode 0644\).*chmod 600"):
        CertStore(tmp_path).ensure()
    (tmp_path / CA_KEY_FILE).chmod(0o600)
    CertStore(tmp_path).ensure()


def test_garbage_key_file_is_a_clear_error(tmp_path: Path) -> None:
    fd = os.open(tmp_path / CA_KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a pem")
    os.close(fd)
    with pytest.raises(CertStoreError, match="not a PEM private key"):
        CertStore(tmp_path).ensure()


def test_unusable_confdir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CertStoreError, match="cannot set up the CA"):
        CertStore(tmp_path / "file" / "conf").ensure()


def test_two_stores_generating_at_once_agree(tmp_path: Path) -> None:
    stores = [CertStore(tmp_path) for _ in range(4)]
    threads = [threading.Thread(target=s.ensure) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s.ca_cert for s in stores}) == 1
    assert x509.load_pem_x509_certificate((tmp_path / CA_CERT_FILE).read_bytes()) == stores[0].ca_cert
    assert sorted(os.listdir(tmp_path)) == [CA_CERT_FILE, CA_KEY_FILE]


def test_print_ca(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    text = store.print_ca()
    path, pem = text.split("\n", 1)
    assert path == store.ca_cert_path
    assert pem.encode() == (tmp_path / CA_CERT_FILE).read_bytes()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")


# -- the leaves -----------------------------------------------------------------------------


def test_bad_host_names_are_refused(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    for bad in ("", "  ", "a b", "x/y"):
        with pytest.raises(ValueError, match="not a valid host name"):
            store.leaf_context(bad)


def test_lru_bound_and_reuse(tmp_path: Path) -> None:
    store = CertStore(tmp_path, max_hosts=3)
    a = store.leaf_context("a.test")
    store.leaf_context("b.test")
    store.leaf_context("c.test")
    assert store.leaf_context("A.test.") is a  # the same name, canonicalised: served from the cache
    store.leaf_context("d.test")  # evicts b, the least recently used
    assert store.cached_hosts() == ["c.test", "a.test", "d.test"]
    assert store.leaf_context("b.test") is not None
    assert store.cached_hosts() == ["a.test", "d.test", "b.test"]
    assert store.leaf_context("a.test", alpn=("http/1.1",)) is not a  # another ALPN list, another context
    assert sorted(os.listdir(tmp_path)) == [CA_CERT_FILE, CA_KEY_FILE]  # the chain files were removed
    with pytest.raises(ValueError, match="max_hosts"):
        CertStore(tmp_path, max_hosts=0)


def test_minting_is_fast(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    store.ensure()
    t0 = time.perf_counter()
    for i in range(20):
        store.leaf_context(f"host{i}.test")
    mint = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    for _ in range(1000):
        store.leaf_context("host7.test")
    cached = (time.perf_counter() - t0) / 1000
    assert mint < 0.05, f"{mint * 1e3:.2f} ms per mint"  # measured ~1 ms
    assert cached < 0.001, f"{cached * 1e6:.1f} us per cached lookup"  # measured a few us


async def test_leaf_for_a_dns_name(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    async with _tls_server(store.leaf_context("www.example.test")) as port:
        cert, _ = await _handshake(port, _client_context(store), "www.example.test")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == []
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.test"
    assert cert.issuer == store.ca_cert.subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = store.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now - datetime.timedelta(hours=23)  # clock skew
    assert now + datetime.timedelta(days=360) < cert.not_valid_after_utc <= now + datetime.timedelta(days=366)


async def test_leaf_for_a_name_fails_for_another_name(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    async with _tls_server(store.leaf_context("one.example.test")) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await _handshake(port, _client_context(store), "two.example.test")
        await _handshake(port, _client_context(store), "one.example.test")  # the right name still works


async def test_leaf_is_not_trusted_without_our_ca(tmp_path: Path) -> None:
    store = CertStore(tmp_path / "ours")
    other = CertStore(tmp_path / "other")
    other.ensure()
    async with _tls_server(store.leaf_context("www.example.test")) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await _handshake(port, _client_context(other), "www.example.test")


async def test_leaf_for_ipv4(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    async with _tls_server(store.leaf_context("127.0.0.1")) as port:
        cert, _ = await _handshake(port, _client_context(store), "127.0.0.1")
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            await _handshake(port, _client_context(store), "127.0.0.2")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == []


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
async def test_leaf_for_ipv6(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    ctx = store.leaf_context("[::1]")  # as in a CONNECT authority
    assert store.leaf_context("::1") is ctx
    async with _tls_server(ctx, host="::1") as port:
        cert, _ = await _handshake(port, _client_context(store), "::1", host="::1")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["::1"]


async def test_long_host_name_truncates_the_cn_only(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    host = ".".join(["a" * 60, "b" * 60, "test"])
    async with _tls_server(store.leaf_context(host)) as port:
        cert, _ = await _handshake(port, _client_context(store), host)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host[:64]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]


async def test_alpn_offers_h2_and_http11(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    async with _tls_server(store.leaf_context("127.0.0.1")) as port:
        _, picked = await _handshake(port, _client_context(store, ["h2", "http/1.1"]), "127.0.0.1")
        assert picked == "h2"
        _, picked = await _handshake(port, _client_context(store, ["http/1.1"]), "127.0.0.1")
        assert picked == "http/1.1"
        _, picked = await _handshake(port, _client_context(store), "127.0.0.1")
        assert picked is None  # a client offering no ALPN still gets in
    async with _tls_server(store.leaf_context("127.0.0.1", alpn=("http/1.1",))) as port:
        _, picked = await _handshake(port, _client_context(store, ["h2", "http/1.1"]), "127.0.0.1")
        assert picked == "http/1.1"


async def test_httpstream_pool_trusts_the_ca(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    async with _tls_server(store.leaf_context("127.0.0.1")) as port:
        async with httpstream.ConnectionPool(verify=store.ca_cert_path) as pool:
            response = await pool.handle_request(httpstream.Request("GET", f"https://127.0.0.1:{port}/"))
            try:
                assert response.status_code == 200
                assert response.http_version == "HTTP/1.1"
                assert await response.aread() == b"hello over our CA"
            finally:
                await response.aclose()
        async with httpstream.ConnectionPool(verify=True, trust_env=False) as pool:  # the system store: refused
            with pytest.raises(httpstream.ConnectError):
                await pool.handle_request(httpstream.Request("GET", f"https://127.0.0.1:{port}/"))
