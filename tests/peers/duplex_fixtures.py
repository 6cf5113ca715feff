"""Fixtures for the duplex peers (tests/peers/duplex.py); conftest imports them.

Needs conftest's ``cert_files`` (session trustme certificate files).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator

import pytest

from .duplex import DuplexApp, EarlyHintsServer, TrailerServerH1, TrailerServerH2
from .servers import HypercornServer


def server_ssl_context(cert_files: dict[str, str], alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_files["cert"], cert_files["key"])
    ctx.set_alpn_protocols(alpn)
    return ctx


@pytest.fixture(scope="session")
def _duplex_server() -> Iterator[HypercornServer]:
    server = HypercornServer(DuplexApp())  # type: ignore[arg-type]
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _duplex_tls_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(
        DuplexApp(),  # type: ignore[arg-type]
        certfile=cert_files["cert"],
        keyfile=cert_files["key"],
        alpn=("h2", "http/1.1"),
        quic=True,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def duplex_server(_duplex_server: HypercornServer) -> HypercornServer:
    """hypercorn + DuplexApp on plain TCP: HTTP/1.1, or h2c by prior knowledge."""
    _duplex_server.app.reset()
    return _duplex_server


@pytest.fixture
def duplex_tls_server(_duplex_tls_server: HypercornServer) -> HypercornServer:
    """hypercorn + DuplexApp over TLS (ALPN h2, http/1.1) and QUIC (h3) on the same port number."""
    _duplex_tls_server.app.reset()
    return _duplex_tls_server


@pytest.fixture
async def trailer_server_h1() -> AsyncIterator[TrailerServerH1]:
    async with TrailerServerH1() as server:
        yield server


@pytest.fixture
async def trailer_server_h2c() -> AsyncIterator[TrailerServerH2]:
    async with TrailerServerH2() as server:
        yield server


@pytest.fixture
async def trailer_server_h2(cert_files: dict[str, str]) -> AsyncIterator[TrailerServerH2]:
    async with TrailerServerH2(server_ssl_context(cert_files, ["h2"])) as server:
        yield server


@pytest.fixture
async def early_hints_server() -> AsyncIterator[EarlyHintsServer]:
    async with EarlyHintsServer() as server:
        yield server
