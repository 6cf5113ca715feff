"""`httpstream --http3`: curl's meaning (HTTP/3 first, TCP after), and the Alt-Svc cache file across runs.

Every run points the cache at ``tmp_path`` (``--alt-svc FILE`` or
``XDG_CACHE_HOME``), never at the real home directory.  The servers: hypercorn
with TLS and QUIC on one port (``h3_server``), hypercorn over TLS without QUIC
(``tls_server``), and a raw TLS server that answers over HTTP/1.1 with an
``Alt-Svc`` header naming the QUIC port of ``h3_server``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from httpstream._altsvc import AltService, AltSvcCache
from httpstream._urls import Origin
from httpstream.cli import _altsvc_file, main

from .peers.servers import FaultServer, HypercornServer, read_request


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    status = main(list(argv))
    captured = capsysbinary.readouterr()
    return status, captured.out, captured.err.decode()


def test_alt_svc_cache_add_and_entries() -> None:
    cache = AltSvcCache(max_entries=2)
    a, b, c = (Origin("https", "h", port) for port in (1, 2, 3))
    cache.add(a, AltService("h3", "", 1, 60), 100.0)
    cache.add(b, AltService("h2", "", 2, 60), 100.0)  # only h3 alternatives are kept
    assert [origin for origin, _, _ in cache.entries(50.0)] == [a]
    assert cache.entries(100.0) == []  # expired
    cache.add(b, AltService("h3", "x", 9, 60), 200.0)
    cache.add(c, AltService("h3", "", 3, 60), 200.0)  # full: the oldest goes
    assert [origin for origin, _, _ in cache.entries(50.0)] == [b, c]
    found = cache.lookup(b, 50.0)
    assert found is not None and (found.host, found.port) == ("x", 9)


def test_alt_svc_file_round_trip_in_curls_format(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alt-svc"
    cache = AltSvcCache()
    now = time.monotonic()
    origin, v6 = Origin("https", "example.org", 8443), Origin("https", "::1", 443)
    cache.add(origin, AltService("h3", "", 9443, 3600), now + 3600)
    cache.add(v6, AltService("h3", "alt.example", 443, 3600), now + 3600)
    guess = _altsvc_file.seed_h3_guess(cache, Origin("https", "guessed.example", 443))
    assert guess is not None and _altsvc_file.seed_h3_guess(cache, origin) is None  # the cache knows better
    _altsvc_file.save(cache, path, [guess])
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and len(lines) == 3  # the guess is not saved
    assert lines[1].startswith('h2 example.org 8443 h3 example.org 9443 "') and lines[1].endswith('" 0 0')
    assert lines[2].startswith("h2 [::1] 443 h3 alt.example 443 ")
    path.write_text(path.read_text() + "garbage line\nh2 old.example 443 h3 old.example 443 \"20000101 00:00:00\" 0 0\n")
    loaded = AltSvcCache()
    assert _altsvc_file.load(loaded, path) == 2  # garbage and expired lines are skipped
    service = loaded.lookup(origin, time.monotonic())
    assert service is not None and (service.host, service.port) == ("", 9443)
    service = loaded.lookup(v6, time.monotonic())
    assert service is not None and (service.host, service.port) == ("alt.example", 443)
    assert _altsvc_file.load(loaded, tmp_path / "missing") == 0


def test_http3_tries_http3_first_on_a_first_run(
    h3_server: HypercornServer, cert_files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    """No Alt-Svc learnt before, none in the file: --http3 still goes over HTTP/3 (curl's --http3)."""
    cache = tmp_path / "alt-svc"
    status, out, err = run(
        capsysbinary, "-v", "--http3", "--alt-svc", str(cache), "--cacert", cert_files["ca"], h3_server.url("/echo")
    )
    assert status == 0, err
    assert json.loads(out)["http_version"] == "3"
    assert "> GET /echo HTTP/3\n" in err and "* protocol: HTTP/3, new connection" in err
    assert "h3" not in cache.read_text()  # a guess that worked is still a guess: nothing advertised it


def test_http3_falls_back_to_tcp_when_quic_fails(
    tls_server: HypercornServer, cert_files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    began = time.monotonic()
    status, out, err = run(
        capsysbinary, "-v", "--http3", "--alt-svc", str(tmp_path / "a"), "--cacert", cert_files["ca"], tls_server.url("/hello")
    )
    assert (status, out) == (0, b"hello world\n"), err
    assert "* protocol: HTTP/1.1, new connection" in err
    assert "HTTP/3 failed" in err  # -v says why it is not HTTP/3
    assert time.monotonic() - began < 5  # the QUIC attempt is bounded (Limits.h3_handshake_timeout)
    status, _, err = run(capsysbinary, "--http3-only", "--cacert", cert_files["ca"], tls_server.url("/hello"))
    assert status == 7, err  # --http3-only: HTTP/3 or fail


def advertising(quic_port: int, seen: list[bytes]) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nAlt-Svc: h3=\":%d\"; ma=3600\r\nContent-Length: 4\r\nConnection: close\r\n\r\ntcp\n"
            % quic_port
        )
        await writer.drain()

    return handler


async def test_alt_svc_learnt_in_one_run_is_used_by_the_next(
    h3_server: HypercornServer, cert_files: dict[str, str], capsysbinary: pytest.CaptureFixture[bytes], cache_home: Path
) -> None:
    """Run 1 learns `h3=":B"` over TCP and saves it (default path); run 2 goes to B over HTTP/3."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])
    seen: list[bytes] = []
    ca = cert_files["ca"]
    async with FaultServer(advertising(h3_server.port, seen), ssl_context=context) as fault:
        status = await asyncio.to_thread(main, ["--http3", "--cacert", ca, fault.url("/echo")])
        captured = capsysbinary.readouterr()
        assert (status, captured.out) == (0, b"tcp\n"), captured.err
        saved = (cache_home / "httpstream" / "alt-svc").read_text()
        assert f"h2 127.0.0.1 {fault.port} h3 127.0.0.1 {h3_server.port} " in saved

        status = await asyncio.to_thread(main, ["--http3", "--cacert", ca, fault.url("/echo")])
        captured = capsysbinary.readouterr()
        assert status == 0, captured.err
        assert json.loads(captured.out)["http_version"] == "3"  # answered by h3_server over QUIC
        assert len(seen) == 1  # the raw TCP server was not asked again

        status = await asyncio.to_thread(main, ["--http3", "--no-alt-svc", "--cacert", ca, fault.url("/echo")])
        captured = capsysbinary.readouterr()
        assert (status, captured.out) == (0, b"tcp\n"), captured.err  # no file: back to the guess, then TCP
        assert len(seen) == 2
