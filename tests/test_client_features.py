"""The client pipeline: redirects, cookies, auth, hooks, retries, deadlines, progress, leaks.

``client.stream()`` and ``client.get()`` run the same pipeline; several tests run
both ways to prove it.  Which headers reached which server is read from the
server's own log (tests/peers/client_servers.py), never from the client.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

import httpstream
from tests.peers.client_servers import ClientApp, to
from tests.peers.invariants import settled
from tests.peers.servers import HypercornServer


@pytest.fixture(scope="module")
def app_server() -> Iterator[HypercornServer]:
    server = HypercornServer(ClientApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app_tls_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(ClientApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app(app_server: HypercornServer) -> ClientApp:
    assert isinstance(app_server.app, ClientApp)
    app_server.app.log.clear()
    return app_server.app


def other_origin(server: HypercornServer, path: str) -> str:
    """The same server under another origin (localhost instead of 127.0.0.1)."""
    return f"http://localhost:{server.port}{path}"


# -- redirects -----------------------------------------------------------------------------------
@pytest.mark.parametrize("streamed", [False, True])
async def test_redirect_chain_across_origins_drops_credentials(
    app_server: HypercornServer, app: ClientApp, streamed: bool
) -> None:
    final = other_origin(app_server, "/echo")
    hop2 = app_server.url(to(final))  # same origin as the start
    start = app_server.url(to(hop2, status=307))
    headers = {"Authorization": "Bearer secret", "Cookie": "mine=1", "X-Keep": "yes"}
    async with httpstream.AsyncClient(follow_redirects=True) as client:
        if streamed:
            async with client.stream("GET", start, headers=headers) as r:
                body = await r.aread()
        else:
            r = await client.get(start, headers=headers)
            body = r.content
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [307, 302]
        assert str(r.url) == final
        assert all(h.is_closed for h in r.history)
        assert (await settled(client)).in_use == 0
    # The same-origin hops got the Authorization header; the other origin did not.
    assert app.seen("/to")[0]["authorization"] == "Bearer secret"
    assert app.seen("/to")[1]["authorization"] == "Bearer secret"
    landed = app.seen("/echo")[0]
    assert "authorization" not in landed
    assert "cookie" not in landed  # a caller's own Cookie header is not carried to another origin
    assert landed["x-keep"] == "yes"
    assert json.loads(body)["method"] == "GET"


async def test_303_turns_post_into_get_and_307_keeps_the_body(app_server: HypercornServer, app: ClientApp) -> None:
    async with httpstream.AsyncClient(follow_redirects=True) as client:
        r = await client.post(app_server.url(to("/echo", status=303)), content=b"payload")
        info = r.json()
        assert (info["method"], info["body"]) == ("GET", "")
        assert "content-length" not in {k.lower() for k, _ in info["headers"]}
        r = await client.post(app_server.url(to("/echo", status=307)), content=b"payload")
        assert (r.json()["method"], r.json()["body"]) == ("POST", "payload")
        r = await client.head(app_server.url(to("/echo", status=303)))
        assert r.status_code == 200 and r.request.method == "HEAD"


async def test_307_with_a_streamed_body_is_refused_clearly(app_server: HypercornServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"once"

    async with httpstream.AsyncClient(follow_redirects=True) as client:
        with pytest.raises(httpstream.LocalProtocolError, match="replayable"):
            await client.post(app_server.url(to("/echo", status=307)), content=body())
        assert (await settled(client)).in_use == 0


async def test_too_many_redirects_and_per_request_follow(app_server: HypercornServer) -> None:
    async with httpstream.AsyncClient(follow_redirects=True, max_redirects=3) as client:
        with pytest.raises(httpstream.TooManyRedirects, match="exceeded max_redirects=3"):
            await client.get(app_server.url("/redirect/5"))
        r = await client.get(app_server.url("/redirect/3"))
        assert r.status_code == 200 and len(r.history) == 3
        r = await client.get(app_server.url("/redirect/3"), follow_redirects=False)
        assert r.status_code == 302 and r.history == []
        assert (await settled(client)).in_use == 0
        assert (await settled(client)).connections == 1  # bodies drained, reused


async def test_https_to_http_redirect_is_refused_unless_allowed(
    app_tls_server: HypercornServer, app_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    start = app_tls_server.url(to(app_server.url("/echo")))
    async with httpstream.AsyncClient(follow_redirects=True, verify=cert_files["ca"]) as client:
        with pytest.raises(httpstream.InsecureRedirect, match="drops TLS"):
            await client.get(start)
    async with httpstream.AsyncClient(
        follow_redirects=True, verify=cert_files["ca"], allow_insecure_redirects=True
    ) as client:
        r = await client.get(start)
        assert r.status_code == 200 and r.url.scheme == "http"


# -- cookies -------------------------------------------------------------------------------------
async def test_cookie_from_a_streamed_response_is_sent_next(app_server: HypercornServer, app: ClientApp) -> None:
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", app_server.url("/setcookie?session=abc")) as r:
            # In the jar at the head, before the body is read.
            assert client.cookies["session"] == "abc"
            await r.aread()
        await client.get(app_server.url("/echo"))
    assert app.seen("/echo")[-1]["cookie"] == "session=abc"


async def test_cookies_set_on_a_redirect_hop_reach_the_next_hop(app_server: HypercornServer, app: ClientApp) -> None:
    async with httpstream.AsyncClient(follow_redirects=True, cookies={"kept": "1"}) as client:
        r = await client.get(app_server.url("/setcookie?hop=2&next=/echo"))
        assert r.status_code == 200
        r2 = await client.get(app_server.url("/echo"), cookies={"once": "x"})
        assert r2.status_code == 200
        await client.get(app_server.url("/echo"))
    sent = [h.get("cookie", "") for h in app.seen("/echo")]
    assert set(sent[0].split("; ")) == {"kept=1", "hop=2"}
    assert set(sent[1].split("; ")) == {"kept=1", "hop=2", "once=x"}
    assert set(sent[2].split("; ")) == {"kept=1", "hop=2"}  # request cookies were for that request only


# -- retries -------------------------------------------------------------------------------------
async def test_retry_honours_retry_after(app_server: HypercornServer) -> None:
    retry = httpstream.Retry(total=2, backoff_factor=0.01)
    async with httpstream.AsyncClient(retry=retry) as client:
        started = time.monotonic()
        r = await client.get(app_server.url("/flaky/ra1?fail=1&after=1"))
        waited = time.monotonic() - started
        assert r.status_code == 200 and r.json()["hits"] == 2
        assert 0.9 <= waited < 5, waited
        # Retry-After as an HTTP date in the past: retried at once.
        r = await client.get(app_server.url("/flaky/ra2?fail=1&after=Wed,%2021%20Oct%202015%2007:28:00%20GMT"))
        assert r.json()["hits"] == 2


async def test_retry_gives_up_and_respects_methods_and_limits(app_server: HypercornServer) -> None:
    retry = httpstream.Retry(total=2, backoff_factor=0.01, max_retry_after=5)
    async with httpstream.AsyncClient(retry=retry) as client:
        r = await client.get(app_server.url("/flaky/giveup?fail=10"))
        assert r.status_code == 503  # 1 try + 2 retries, then the last answer is returned
        assert app_server.app.hits["giveup"] == 3  # type: ignore[attr-defined]
        r = await client.post(app_server.url("/flaky/post?fail=1"), content=b"x")
        assert r.status_code == 503 and app_server.app.hits["post"] == 1  # type: ignore[attr-defined]
        r = await client.get(app_server.url("/flaky/long?fail=1&after=3600"))
        assert r.status_code == 503 and app_server.app.hits["long"] == 1  # type: ignore[attr-defined]
        assert (await settled(client)).in_use == 0
    # Without a policy nothing is retried.
    async with httpstream.AsyncClient() as client:
        r = await client.get(app_server.url("/flaky/none?fail=1"))
        assert r.status_code == 503


async def test_retry_on_connect_errors_with_backoff() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    retry = httpstream.Retry(total=3, backoff_factor=0.05, jitter=0)
    async with httpstream.AsyncClient(retry=retry) as client:
        started = time.monotonic()
        with pytest.raises(httpstream.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
        assert time.monotonic() - started >= 0.05 + 0.1 + 0.2 - 0.01


def test_retry_policy_values() -> None:
    retry = httpstream.Retry(backoff_factor=1, backoff_max=3, jitter=0)
    assert [retry.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 3, 3]
    assert retry.allows("get") and not retry.allows("POST")
    jittered = httpstream.Retry(backoff_factor=1, jitter=0.5)
    assert all(0.5 <= jittered.backoff(1) <= 1 for _ in range(50))
    with pytest.raises(ValueError, match="jitter"):
        httpstream.Retry(jitter=2)
    from httpstream._retry import parse_retry_after

    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 480) == 480
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- deadlines -----------------------------------------------------------------------------------
async def test_total_timeout_covers_head_and_body(app_server: HypercornServer) -> None:
    timeout = httpstream.Timeout(read=10, total=0.5)
    async with httpstream.AsyncClient(timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(httpstream.TotalTimeout, match="total timeout"):
            await client.get(app_server.url("/slow/3"))
        assert time.monotonic() - started < 1.5
        # The head arrives in time, the body trickles: the deadline still holds.
        started = time.monotonic()
        with pytest.raises(httpstream.TotalTimeout):
            async with client.stream("GET", app_server.url("/drip/50?every=0.05")) as r:
                async for _ in r.aiter_raw():
                    pass
        assert time.monotonic() - started < 1.5
        # Fast requests are not affected, and the pool is clean.
        assert (await client.get(app_server.url("/hello"))).status_code == 200
        assert (await settled(client)).in_use == 0


# -- hooks, progress, leaks ------------------------------------------------------------------------
async def test_event_hooks_run_on_every_hop(app_server: HypercornServer) -> None:
    seen: list[str] = []

    def on_request(request: httpstream.Request) -> None:
        seen.append(f"> {request.method} {request.url.path}")

    async def on_response(response: httpstream.Response) -> None:
        seen.append(f"< {response.status_code}")
        assert not response.is_stream_consumed  # hooks run at the head

    hooks = {"request": [on_request], "response": [on_response]}
    async with httpstream.AsyncClient(event_hooks=hooks, follow_redirects=True) as client:
        await client.get(app_server.url("/redirect/1"))
    assert seen == ["> GET /redirect/1", "< 302", "> GET /echo", "< 200"]
    with pytest.raises(ValueError, match="unknown event hook"):
        httpstream.AsyncClient(event_hooks={"answer": []})


async def test_upload_and_download_progress(app_server: HypercornServer) -> None:
    from tests.peers.servers import pattern

    uploads: list[tuple[int, int | None]] = []
    downloads: list[tuple[int, int | None]] = []
    size = 300_000
    async with httpstream.AsyncClient() as client:
        r = await client.post(
            app_server.url("/upload"), content=pattern(size), on_upload_progress=lambda n, t: uploads.append((n, t))
        )
        assert r.json() == {"received": size, "pattern_ok": True}
        async with client.stream(
            "GET", app_server.url(f"/bytes/{size}"), on_download_progress=lambda n, t: downloads.append((n, t))
        ) as r:
            async for _ in r.aiter_bytes():
                pass
            assert r.num_bytes_downloaded == size
    assert uploads[-1] == (size, size) and len(uploads) > 1
    assert all(a[0] < b[0] for a, b in itertools.pairwise(uploads))
    assert downloads[-1] == (size, size) and len(downloads) > 1


async def test_debug_leaks_reports_where_a_response_was_opened(app_server: HypercornServer) -> None:
    async with httpstream.AsyncClient(debug_leaks=True) as client:

        async def open_and_drop() -> None:
            await client.send(client.build_request("GET", app_server.url("/bytes/100000")), stream=True)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await open_and_drop()
            gc.collect()
            await asyncio.sleep(0.05)
        messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert messages, "no ResourceWarning for a dropped response"
        assert "opened at" in messages[0] and "test_client_features.py" in messages[0]
        assert "open_and_drop" in messages[0]
        for _ in range(50):
            if client.transport.stats().in_use == 0:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        assert (await settled(client)).in_use == 0


async def test_accept_encoding_and_basic_auth_from_the_url(app_server: HypercornServer) -> None:
    url = app_server.url("/echo").replace("http://", "http://user:p%40ss@")
    async with httpstream.AsyncClient() as client:
        r = await client.get(url)
    headers = {k.lower(): v for k, v in r.json()["headers"]}
    assert "gzip" in headers["accept-encoding"]
    assert headers["authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss


# -- truncation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "body", "expected"),
    [
        (b"Content-Length: 1000\r\n", b"a" * 600, 1000),
        (b"Transfer-Encoding: chunked\r\n", b"258\r\n" + b"a" * 600 + b"\r\n", None),
    ],
    ids=["content-length", "chunked"],
)
@pytest.mark.parametrize("ending", ["close", "reset"])
async def test_truncated_body_raises_incomplete_body_after_every_byte(
    head: bytes, body: bytes, expected: int | None, ending: str
) -> None:
    from tests.peers.servers import FaultServer, read_request

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body)
        await writer.drain()
        await asyncio.sleep(0.05)
        if ending == "reset":
            writer.transport.abort()
        else:
            writer.close()

    async with FaultServer(handler) as fault, httpstream.AsyncClient() as client:
        got = bytearray()
        with pytest.raises(httpstream.IncompleteBody) as info:
            async with client.stream("GET", fault.url("/")) as r:
                async for chunk in r.aiter_raw():
                    got += chunk
        assert bytes(got) == b"a" * 600  # every byte that arrived was handed over first
        assert info.value.received == 600
        assert info.value.expected == expected
        assert "600" in str(info.value) and "incomplete" in str(info.value)
        assert isinstance(info.value, httpstream.RemoteProtocolError)
        assert (await settled(client)).in_use == 0


def test_debug_leaks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPSTREAM_DEBUG_LEAKS", "1")
    assert httpstream.AsyncClient(transport=httpstream.ConnectionPool()).debug_leaks
    monkeypatch.setenv("HTTPSTREAM_DEBUG_LEAKS", "0")
    assert not httpstream.AsyncClient(transport=httpstream.ConnectionPool()).debug_leaks
    assert httpstream.AsyncClient(transport=httpstream.ConnectionPool(), debug_leaks=True).debug_leaks


async def test_a_body_that_timed_out_is_closed_not_drained() -> None:
    """A read timeout mid-body with a small remainder: the stalled server gets no drain."""
    from tests.peers.servers import FaultServer, read_request

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(30)

    async with FaultServer(handler) as fault, httpstream.AsyncClient(timeout=httpstream.Timeout(read=0.3)) as client:
        with pytest.raises(httpstream.ReadTimeout):
            async with client.stream("GET", fault.url("/")) as r:
                async for _ in r.aiter_raw():
                    pass
        stats = client.transport.stats()  # type: ignore[attr-defined]
        assert stats.draining == 0 and stats.in_use == 0, stats


async def test_a_request_target_override_is_validated(app_server: HypercornServer) -> None:
    bad = "/echo HTTP/1.1\r\nX-Injected: 1"
    with pytest.raises(httpstream.LocalProtocolError, match="invalid request target"):
        httpstream.Request("GET", app_server.url("/echo"), target=bad)
    request = httpstream.Request("GET", app_server.url("/echo"))
    with pytest.raises(httpstream.LocalProtocolError, match="invalid request target"):
        request.target = bad
    async with httpstream.ConnectionPool() as pool:
        response = await pool.handle_request(request)  # the refused target left the request as it was
        assert response.status_code == 200
        await response.aread()
        assert pool.stats().in_use == 0


async def test_stale_retry_goes_on_a_fresh_connection() -> None:
    """Every kept-alive connection dies on its second request: the retry must not pick another one."""
    from tests.peers.servers import FaultServer, read_request

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.05)  # both first requests are in flight together
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # the reuse: hang up without an answer

    async with FaultServer(handler) as fault, httpstream.AsyncClient() as client:
        first = await asyncio.gather(client.get(fault.url("/")), client.get(fault.url("/")))
        assert [r.content for r in first] == [b"ok", b"ok"]
        assert fault.accepted == 2
        r = await client.get(fault.url("/"))
        assert r.content == b"ok"
        assert fault.accepted == 3  # one stale try, then a fresh connection (not the other stale one)
