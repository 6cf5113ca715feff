from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator

import pytest
import trustme

from .servers import App, HypercornServer


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


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def no_leaks() -> object:
    """Check that a test leaves no extra tasks or file descriptors behind."""
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
