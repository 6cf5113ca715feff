"""The client pipeline with the pieces plugged in: auth flows, bodies and proxies via AsyncClient.

The unit-level behaviour of each piece is tested in its own file (test_auth,
test_cookies, test_content, test_proxy); here the same servers are driven
through ``AsyncClient`` only, streamed and buffered, as a user would.
"""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Generator, Iterator

import pytest

import httpstream
from tests.peers.auth_servers import DIGEST_USERS, AuthApp
from tests.peers.client_servers import ClientApp
from tests.peers.content_servers import ContentApp
from tests.peers.proxy_servers import HTTPProxy
from tests.peers.servers import HypercornServer


@pytest.fixture(scope="module")
def auth_server() -> Iterator[HypercornServer]:
    server = HypercornServer(AuthApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def content_server() -> Iterator[HypercornServer]:
    server = HypercornServer(ContentApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo_tls_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(ClientApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"))
    server.start()
    yield server
    server.stop()


# -- auth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "SHA-512-256"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_digest_auth_through_the_client(auth_server: HypercornServer, algorithm: str, streamed: bool) -> None:
    user = "Mufasa"
    auth = httpstream.DigestAuth(user, DIGEST_USERS[user])
    url = auth_server.url(f"/digest/x?algorithm={algorithm}&qop=auth")
    async with httpstream.AsyncClient(auth=auth) as client:
        if streamed:
            async with client.stream("POST", url, content=b"body") as r:
                info = json.loads(await r.aread())
        else:
            r = await client.post(url, content=b"body")
            info = r.json()
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [401]
        assert (info["algorithm"], info["user"]) == (algorithm, user)
        # The next request answers the known nonce at once (nc counts up), no 401 first.
        r2 = await client.post(url, content=b"again")
        assert r2.status_code == 200 and r2.history == []
        assert r2.json()["nc"] == "00000002"


async def test_wrong_digest_password_gives_the_second_401(auth_server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        r = await client.get(auth_server.url("/digest/x"), auth=httpstream.DigestAuth("Mufasa", "wrong"))
        assert r.status_code == 401 and len(r.history) == 1


async def test_basic_bearer_tuple_and_custom_flow(auth_server: HypercornServer) -> None:
    from tests.peers.auth_servers import BASIC_PASSWORD, BASIC_USER, TOKEN

    async with httpstream.AsyncClient() as client:
        r = await client.get(auth_server.url("/basic"), auth=(BASIC_USER, BASIC_PASSWORD))
        assert r.status_code == 200 and r.json() == {"user": BASIC_USER}
        r = await client.get(auth_server.url("/bearer"), auth=httpstream.BearerAuth(TOKEN))
        assert r.status_code == 200

        class TokenRefresh(httpstream.Auth):
            """Try a stale token, and on 401 fetch a fresh one and retry once."""

            def __init__(self) -> None:
                self.calls = 0

            def auth_flow(
                self, request: httpstream.Request
            ) -> Generator[httpstream.Request, httpstream.Response, None]:
                request.headers["Authorization"] = "Bearer stale"
                response = yield request
                self.calls += 1
                if response.status_code == 401:
                    request.headers["Authorization"] = f"Bearer {TOKEN}"
                    yield request

        flow = TokenRefresh()
        r = await client.get(auth_server.url("/bearer"), auth=flow)
        assert r.status_code == 200 and flow.calls == 1 and len(r.history) == 1


# -- request bodies ------------------------------------------------------------------------------
async def test_form_multipart_and_json_bodies(content_server: HypercornServer, tmp_path: pathlib.Path) -> None:
    upload = tmp_path / "report.csv"
    upload.write_bytes(b"a,b\n1,2\n" * 1000)
    progress: list[tuple[int, int | None]] = []
    async with httpstream.AsyncClient() as client:
        r = await client.post(content_server.url("/form"), data={"q": "grüße", "n": ["1", "2"]})
        assert r.json()["fields"] == [["q", "grüße"], ["n", "1"], ["n", "2"]]
        r = await client.post(
            content_server.url("/multipart"),
            data={"title": "numbers"},
            files={"file": upload, "note": ("note.txt", b"hello", "text/plain")},
            on_upload_progress=lambda n, t: progress.append((n, t)),
        )
        info = r.json()
        assert info["defects"] == []
        parts = {p["name"]: p for p in info["parts"]}
        assert base64.b64decode(parts["file"]["payload"]) == upload.read_bytes()
        assert parts["file"]["filename"] == "report.csv"
        assert base64.b64decode(parts["note"]["payload"]) == b"hello"
        assert base64.b64decode(parts["title"]["payload"]) == b"numbers"
        assert progress[-1] == (info["body_length"], info["body_length"])  # sent with a known length
        r = await client.put(content_server.url("/json"), json={"a": [1, 2], "ü": None})
        assert r.json()["value"] == {"a": [1, 2], "ü": None}


async def test_multipart_body_is_replayed_on_a_307(
    content_server: HypercornServer, app_http_server: HypercornServer, tmp_path: pathlib.Path
) -> None:
    from tests.peers.client_servers import to

    upload = tmp_path / "data.bin"
    upload.write_bytes(bytes(range(256)) * 100)
    async with httpstream.AsyncClient(follow_redirects=True) as client:
        r = await client.post(app_http_server.url(to(content_server.url("/multipart"), status=307)), files={"f": upload})
        assert [h.status_code for h in r.history] == [307]
        parts = r.json()["parts"]
        assert base64.b64decode(parts[0]["payload"]) == upload.read_bytes()


# -- proxies -------------------------------------------------------------------------------------
async def test_https_through_a_connect_proxy_with_auth(
    echo_tls_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with HTTPProxy(auth=("proxyuser", "proxypass")) as proxy:
        proxy_url = proxy.url.replace("http://", "http://proxyuser:proxypass@")
        async with httpstream.AsyncClient(proxy=proxy_url, verify=cert_files["ca"], http2=True) as client:
            for _ in range(3):
                r = await client.get(echo_tls_server.url("/echo"))
                assert r.status_code == 200 and r.http_version == "HTTP/2"
                headers = {k.lower() for k, _ in r.json()["headers"]}
                assert "proxy-authorization" not in headers  # the target never sees proxy credentials
        assert proxy.accepted == 1  # one tunnel, reused
        assert [s.request_line.split()[0] for s in proxy.seen] == ["CONNECT"]
    async with HTTPProxy(auth=("proxyuser", "proxypass")) as proxy:
        async with httpstream.AsyncClient(proxy=proxy.url, verify=cert_files["ca"]) as client:
            with pytest.raises(httpstream.ProxyError, match="407"):
                await client.get(echo_tls_server.url("/echo"))


async def test_http_through_a_forward_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_http_server: HypercornServer
) -> None:
    async with HTTPProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        async with httpstream.AsyncClient(follow_redirects=True) as client:
            r = await client.get(app_http_server.url("/redirect/1"))
            assert r.status_code == 200
        assert [s.request_line.split()[1] for s in proxy.seen] == [
            app_http_server.url("/redirect/1"),
            app_http_server.url("/echo"),
        ]
        async with httpstream.AsyncClient(trust_env=False) as client:
            await client.get(app_http_server.url("/echo"))
        assert len(proxy.seen) == 2  # trust_env=False ignores http_proxy


@pytest.fixture(scope="module")
def app_http_server() -> Iterator[HypercornServer]:
    server = HypercornServer(ClientApp())
    server.start()
    yield server
    server.stop()


# -- the same pipeline over HTTP/1.1, HTTP/2 and HTTP/3 --------------------------------------------
@pytest.fixture(scope="module")
def decoding_h3_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    from tests.peers.decoding_servers import DecodingApp

    server = HypercornServer(
        DecodingApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"), quic=True
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("options", "version"),
    [
        ({"http2": False}, "HTTP/1.1"),
        ({"http2": True}, "HTTP/2"),
        ({"http3": "only"}, "HTTP/3"),
    ],
    ids=["h1", "h2", "h3"],
)
async def test_pipeline_is_the_same_on_every_protocol(
    decoding_h3_server: HypercornServer, cert_files: dict[str, str], options: dict[str, object], version: str
) -> None:
    from tests.peers.decoding_servers import payload

    hooks: list[str] = []
    async with httpstream.AsyncClient(
        verify=cert_files["ca"],
        follow_redirects=True,
        event_hooks={"response": [lambda r: hooks.append(r.http_version)]},
        timeout=httpstream.Timeout(total=20),
        **options,  # type: ignore[arg-type]
    ) as client:
        async with client.stream("GET", decoding_h3_server.url("/encoded?ce=gzip,br&size=300000&chunk=777")) as r:
            assert r.http_version == version
            raw = b"".join([c async for c in r.aiter_bytes(4096)])
            assert raw == payload(300000)
            assert r.num_bytes_downloaded < 300000  # counted on the wire, compressed
        async with client.stream("GET", decoding_h3_server.url("/ndjson")) as r:
            assert [obj async for obj in r.aiter_json()] == [{"n": 1}, {"n": 2, "s": "café"}, [3, 3.5], "four", None]
        r = await client.get(decoding_h3_server.url("/redirect/2"))
        assert r.status_code == 200 and len(r.history) == 2
        async with client.stream("GET", decoding_h3_server.url("/ndjson?bad=4")) as r:
            with pytest.raises(httpstream.DecodingError, match="line 4"):
                async for _ in r.aiter_json():
                    pass
    assert set(hooks) == {version}
