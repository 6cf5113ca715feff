from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme

from .peers.duplex_fixtures import (  # noqa: F401 (fixtures)
    _duplex_server,
    _duplex_tls_server,
    duplex_server,
    duplex_tls_server,
    early_hints_server,
    trailer_server_h1,
    trailer_server_h2,
    trailer_server_h2c,
)
from .peers.servers import App, HypercornServer, open_fds


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME is a temporary directory: the proxy's default confdir (~/.httpstream) never touches the real one."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("certs")
    server_cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    certfile = base / "server.pem"
    keyfile = base / "server.key"
    cafile = base / "ca.pem"
    server_cert.private_key_pem.write_to_path(str(keyfile))
    with open(certfile, "wb") as f:
        for blob in server_cert.cert_chain_pems:
            f.write(blob.bytes())
    ca.cert_pem.write_to_path(str(cafile))
    return {"cert": str(certfile), "key": str(keyfile), "ca": str(cafile)}


@pytest.fixture(scope="session")
def _http_server() -> Iterator[HypercornServer]:
    server = HypercornServer(App())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _https_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(App(), certfile=cert_files["cert"], keyfile=cert_files["key"])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _h2_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(App(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def h2_server(_h2_server: HypercornServer) -> HypercornServer:
    """hypercorn over TLS offering h2 and http/1.1 by ALPN (plain port: h2c by prior knowledge)."""
    _h2_server.app.reset()
    return _h2_server


@pytest.fixture(scope="session")
def _h3_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(
        App(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"), quic=True
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def h3_server(_h3_server: HypercornServer) -> HypercornServer:
    """hypercorn over TLS (h2, http/1.1) and QUIC (h3) on the same port number."""
    _h3_server.app.reset()
    return _h3_server


@pytest.fixture
def server(_http_server: HypercornServer) -> HypercornServer:
    """hypercorn over plain HTTP/1.1, its connection count reset for this test."""
    _http_server.app.reset()
    return _http_server


@pytest.fixture
def tls_server(_https_server: HypercornServer) -> HypercornServer:
    """hypercorn over TLS (certificate from the session's trustme CA)."""
    _https_server.app.reset()
    return _https_server


@pytest.fixture
async def no_leaks(
    _http_server: HypercornServer,
    _https_server: HypercornServer,
    _h2_server: HypercornServer,
    _h3_server: HypercornServer,
    _duplex_server: HypercornServer,  # noqa: F811 (the fixture imported above)
    _duplex_tls_server: HypercornServer,  # noqa: F811
) -> object:
    """Check that a test leaves no extra tasks or file descriptors behind.

    The session's servers are started first so their own descriptors are not
    counted against the test.
    """
    await asyncio.sleep(0)
    gc.collect()
    tasks_before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    fds_before = open_fds()
    yield None
    for _ in range(50):
        gc.collect()
        await asyncio.sleep(0.01)
        tasks = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} - tasks_before
        if not tasks and open_fds() <= fds_before:
            break
    assert not tasks, f"tasks leaked: {tasks}"
    assert open_fds() <= fds_before, f"file descriptors leaked: {open_fds()} > {fds_before}"


@pytest.fixture
async def tls_failure_garbage() -> AsyncIterator[None]:
    """Collect what a refused TLS handshake leaves behind on the *server* side.

    asyncio (3.11) can leave a server-side transport of a failed handshake to
    the garbage collector, which then warns in whichever later test happens to
    run the collection.  Tests of refused handshakes collect it at their own end,
    quietly; the client side is checked by the test itself (pool empty).
    """
    yield
    await asyncio.sleep(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="session")
def caddy(cert_files: dict[str, str]) -> Iterator[object]:
    """caddy serving /small and a sparse /big (256 MiB) over h1, h2 and h3 (quic-go)."""
    from .peers.caddy import Caddy

    server = Caddy(cert_files["cert"], cert_files["key"], big_size=256 * 1024 * 1024)
    if server.binary is None:
        pytest.skip("caddy is not installed (scripts/test installs it with apt when it can)")
    server.start()
    yield server
    server.stop()
