"""Default CONNECT interception (a CertStore at ``confdir``), in-process and through the CLI, and ``--print-ca``.

Every confdir is the test's ``tmp_path``; the proxy verifies the upstream with
the test CA (``ssl_verify_upstream_trusted_ca``).
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from httpstream import ConnectionPool, Request
from httpstream.__main__ import main
from httpstream.proxy import ProxyServer
from httpstream.proxy._certs import CA_CERT_FILE, CertStoreError

from .peers.servers import HypercornServer
from .test_proxy_role_cli import curl, needs_curl, proxy_process

pytestmark = pytest.mark.usefixtures("no_leaks")

WAIT = 10.0


async def test_connect_intercepted_by_default(
    tls_server: HypercornServer, cert_files: dict[str, str], tmp_path: pathlib.Path
) -> None:
    seen: list[str] = []

    class Addon:
        def request(self, flow: Any) -> None:
            seen.append(flow.request.url)

    confdir = tmp_path / "conf"
    async with ProxyServer(
        listen_port=0, confdir=str(confdir), ssl_verify_upstream_trusted_ca=cert_files["ca"], addons=[Addon()]
    ) as proxy:
        assert proxy.certs is not None and proxy.certs.ca_cert_path == str(confdir / CA_CERT_FILE)
        async with ConnectionPool(proxy=proxy.url, verify=str(confdir / CA_CERT_FILE), trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", tls_server.url("/hello")))
            body = await asyncio.wait_for(response.aread(), WAIT)
    assert body == b"hello world\n"
    assert seen == [tls_server.url("/hello")]


async def test_broken_confdir_fails_at_startup(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proxy = ProxyServer(listen_port=0, confdir=str(blocker / "conf"))
    with pytest.raises(CertStoreError, match="cannot set up the CA"):
        await proxy.start()
    await proxy.aclose()


@needs_curl
async def test_curl_through_the_cli_is_intercepted(
    tls_server: HypercornServer, cert_files: dict[str, str], tmp_path: pathlib.Path
) -> None:
    confdir = tmp_path / "conf"
    settings = ("--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={cert_files['ca']}")
    async with proxy_process(*settings) as (port, _):
        code, out, err = await curl(
            "--proxy", f"http://127.0.0.1:{port}", "--cacert", str(confdir / CA_CERT_FILE), tls_server.url("/hello")
        )
    assert code == 0, err
    assert out == b"hello world\n"


def test_print_ca(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    confdir = tmp_path / "conf"
    assert main(["proxy", "--set", f"confdir={confdir}", "--print-ca"]) == 0
    out = capsys.readouterr().out
    path, _, pem = out.partition("\n")
    assert path == str(confdir / CA_CERT_FILE)
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and pem.rstrip().endswith("-----END CERTIFICATE-----")
    assert (confdir / CA_CERT_FILE).read_text() == pem


def test_cli_broken_confdir_is_one_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["proxy", "--set", f"confdir={blocker / 'conf'}", "--print-ca"]) == 1
    err = capsys.readouterr().err
    assert "cannot set up the CA" in err and err.count("\n") == 1
