"""Auth flows: the challenge parser, known answers, and Digest/Basic/Bearer against a real server.

The client does not drive these flows by itself here: each test runs the
generator by hand around ``AsyncClient.send`` exactly as the client pipeline
will, so what is checked is the flow, against a server that verifies Digest
on its own (tests/peers/auth_servers.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

import httpstream
from httpstream import _auth
from httpstream._auth import (
    Auth,
    BasicAuth,
    BearerAuth,
    Challenge,
    DigestAuth,
    FunctionAuth,
    parse_challenges,
    to_auth,
)

from .peers.auth_servers import BASIC_PASSWORD, BASIC_USER, TOKEN, AuthApp, parse_authorization
from .peers.servers import HypercornServer


@pytest.fixture(scope="module")
def auth_server() -> Iterator[HypercornServer]:
    server = HypercornServer(AuthApp())
    server.start()
    yield server
    server.stop()


async def drive(auth: Auth, request: httpstream.Request) -> list[httpstream.Response]:
    """Run ``auth``'s flow over a real client; every response, the answer last."""
    responses: list[httpstream.Response] = []
    async with httpstream.AsyncClient() as client:
        flow = auth.auth_flow(request)
        sent = next(flow)
        while True:
            response = await client.send(sent)
            responses.append(response)
            try:
                sent = flow.send(response)
            except StopIteration:
                return responses


# -- the challenge parser --------------------------------------------------------------------


def test_parse_rfc_example_with_several_challenges_in_one_field() -> None:
    # RFC 9110 section 11.6.1's example: parameters, quoted-pairs, a comma-less
    # scheme change and a second challenge in the same field.
    value = 'Newauth realm="apps", type=1,  title="Login to \\"apps\\"", Basic realm="simple"'
    assert parse_challenges([value]) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]


def test_parse_quoting_commas_token68_and_empty_elements() -> None:
    values = [
        ' , DIGEST REALM="a, b=c", nonce="x\\\\y\\"z" , qop="auth,auth-int",, Basic',
        "Negotiate abc+/def==, Digest nonce=abc/def==,realm=r",
        "Basic dXNlcjpwYXNz=",
        "Bearer realm = \"sp aces\" ,error=invalid_token",
    ]
    assert parse_challenges(values) == [
        Challenge("digest", {"realm": "a, b=c", "nonce": 'x\\y"z', "qop": "auth,auth-int"}),
        Challenge("basic"),
        Challenge("negotiate", token68="abc+/def=="),
        Challenge("digest", {"nonce": "abc/def==", "realm": "r"}),
        Challenge("basic", token68="dXNlcjpwYXNz="),
        Challenge("bearer", {"realm": "sp aces", "error": "invalid_token"}),
    ]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('Digest realm="never closed', "unterminated"),
        ('Digest realm="a\\', "unterminated"),
        ("realm=x, Basic", "outside a challenge"),
        ('Digest realm="a", Realm="b"', "repeated"),
        ('Digest realm="a" nonce="b"', "expected ','"),
        ("Digest nonce=x, realm=", "without a value"),
        ("Digest realm=, nonce=x", "outside a challenge"),  # "realm=" reads as a token68
        ("Negotiate abc==, realm=x", "outside a challenge"),
        ('Digest realm="a", ="b"', "unexpected '='"),
    ],
)
def test_parse_malformed_challenges(value: str, why: str) -> None:
    with pytest.raises(httpstream.RemoteProtocolError, match=why):
        parse_challenges([value])


# -- Basic, Bearer, functions ------------------------------------------------------------------


def _header_of(auth: Auth, url: str = "http://example.org/") -> str:
    request = next(auth.auth_flow(httpstream.Request("GET", url)))
    return request.headers["authorization"]


def test_basic_rfc7617_examples() -> None:
    assert _header_of(BasicAuth("Aladdin", "open sesame")) == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    # RFC 7617 section 2.1: with charset="UTF-8", "test" / "123£".
    assert _header_of(BasicAuth("test", "123£")) == "Basic dGVzdDoxMjPCow=="
    assert _header_of(BasicAuth(b"test", b"123\xa3")) == "Basic dGVzdDoxMjOj"  # bytes as given (Latin-1)
    assert "***" in repr(BasicAuth("u", "secret")) and "secret" not in repr(BasicAuth("u", "secret"))


def test_basic_and_bearer_refuse_bad_credentials() -> None:
    with pytest.raises(httpstream.LocalProtocolError, match="':'"):
        BasicAuth("user:name", "pw")
    with pytest.raises(httpstream.LocalProtocolError, match="control"):
        BasicAuth("user", "pw\n")
    for token in ("", "a b", "a\tb"):
        with pytest.raises(httpstream.LocalProtocolError, match="Bearer"):
            BearerAuth(token)


def test_to_auth_and_function_auth() -> None:
    assert to_auth(None) is None
    digest = DigestAuth("u", "p")
    assert to_auth(digest) is digest
    basic = to_auth(("Aladdin", "open sesame"))
    assert isinstance(basic, BasicAuth)
    assert _header_of(basic) == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="

    def sign(request: httpstream.Request) -> httpstream.Request:
        request.headers["X-Signature"] = request.method + " " + request.url.target
        return request

    function = to_auth(sign)
    assert isinstance(function, FunctionAuth)
    request = next(function.auth_flow(httpstream.Request("GET", "http://example.org/a?b=1")))
    assert request.headers["x-signature"] == "GET /a?b=1"
    with pytest.raises(TypeError):
        to_auth(("only-one",))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_auth(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must return a Request"):
        next(FunctionAuth(lambda r: None).auth_flow(httpstream.Request("GET", "http://example.org/")))  # type: ignore[arg-type,return-value]


async def test_basic_and_bearer_against_the_server(auth_server: HypercornServer) -> None:
    responses = await drive(BasicAuth(BASIC_USER, BASIC_PASSWORD), httpstream.Request("GET", auth_server.url("/basic")))
    assert [r.status_code for r in responses] == [200]
    assert responses[0].json() == {"user": BASIC_USER}
    responses = await drive(BasicAuth(BASIC_USER, "wrong"), httpstream.Request("GET", auth_server.url("/basic")))
    assert [r.status_code for r in responses] == [401]  # Basic never retries
    responses = await drive(BearerAuth(TOKEN), httpstream.Request("GET", auth_server.url("/bearer")))
    assert [r.status_code for r in responses] == [200]


# -- Digest: known answers and challenge handling, no network -------------------------------------


def _answer(auth: Auth, request: httpstream.Request, *challenges: str) -> dict[str, str]:
    """The Authorization fields the flow sends after a 401 carrying ``challenges``."""
    flow = auth.auth_flow(request)
    next(flow)
    headers = [("WWW-Authenticate", value) for value in challenges]
    retry = flow.send(httpstream.Response(401, headers=headers, request=request))
    return parse_authorization(retry.headers["authorization"])


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_rfc7616_examples(monkeypatch: pytest.MonkeyPatch, algorithm: str, expected: str) -> None:
    monkeypatch.setattr(_auth, "_new_cnonce", lambda: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    request = httpstream.Request("GET", "http://www.example.org/dir/index.html")
    fields = _answer(DigestAuth("Mufasa", "Circle of Life"), request, challenge)
    assert fields == {
        "username": "Mufasa",
        "realm": "http-auth@example.org",
        "uri": "/dir/index.html",
        "algorithm": algorithm,
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
        "response": expected,
    }


def test_digest_rfc2617_example_without_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_auth, "_new_cnonce", lambda: "0a4f113b")
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    request = httpstream.Request("GET", "http://host.com/dir/index.html")
    fields = _answer(DigestAuth("Mufasa", "Circle Of Life"), request, challenge)
    assert fields["response"] == "6629fae49393a05397450978507c4ef1"
    assert "algorithm" not in fields  # not echoed when the server did not name one


def test_digest_picks_the_strongest_usable_challenge_and_forgives_other_broken_fields() -> None:
    request = httpstream.Request("GET", "http://example.org/")
    fields = _answer(
        DigestAuth("u", "p"),
        request,
        'Basic realm="unterminated',
        'Digest realm="r", nonce="n1", qop=auth, algorithm=MD5, Digest realm="r", nonce="n2", qop=auth, algorithm=SHA-256',
        'Digest realm="r", nonce="n3", qop=auth, algorithm=SHA3-512',
    )
    assert (fields["algorithm"], fields["nonce"]) == ("SHA-256", "n2")


@pytest.mark.parametrize(
    ("challenge", "error", "why"),
    [
        ('Digest realm="r"', httpstream.RemoteProtocolError, "without 'nonce'"),
        ('Digest nonce="n"', httpstream.RemoteProtocolError, "without 'realm'"),
        ('Digest realm="r", nonce="n", algorithm=MD5-sess', httpstream.RemoteProtocolError, "no qop"),
        ('Digest realm="r", nonce=n, algorithm="x', httpstream.RemoteProtocolError, "unterminated"),
        ('Digest realm="r", nonce="n", algorithm=SHA3-512', httpstream.LocalProtocolError, "SHA3-512"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', httpstream.LocalProtocolError, "auth-conf"),
    ],
)
def test_digest_bad_challenges(challenge: str, error: type[Exception], why: str) -> None:
    with pytest.raises(error, match=why):
        _answer(DigestAuth("u", "p"), httpstream.Request("GET", "http://example.org/"), challenge)


def test_digest_without_a_digest_challenge_returns_the_401() -> None:
    request = httpstream.Request("GET", "http://example.org/")
    flow = DigestAuth("u", "p").auth_flow(request)
    next(flow)
    with pytest.raises(StopIteration):
        flow.send(httpstream.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'}, request=request))


def test_digest_quotes_and_encodes_what_it_echoes() -> None:
    request = httpstream.Request("GET", "http://example.org/")
    raw = 'Digest realm="a \\"q\\" \\\\ b", nonce="n", qop=auth'
    flow = DigestAuth('we"ird', "p").auth_flow(request)
    next(flow)
    header = flow.send(httpstream.Response(401, headers={"WWW-Authenticate": raw}, request=request)).headers[
        "authorization"
    ]
    assert 'realm="a \\"q\\" \\\\ b"' in header and 'username="we\\"ird"' in header
    fields = _answer(DigestAuth("Jäsøn Doe", "p"), httpstream.Request("GET", "http://example.org/"), raw)
    assert fields["username*"] == "UTF-8''J%C3%A4s%C3%B8n%20Doe" and "username" not in fields


# -- Digest against the server ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm",
    ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess", "SHA-512", "SHA-512-sess"],
)
async def test_digest_algorithms(auth_server: HypercornServer, algorithm: str) -> None:
    url = auth_server.url(f"/digest/some%20path?algorithm={algorithm}&x=a%2Fb")
    responses = await drive(DigestAuth("Mufasa", "Circle of Life"), httpstream.Request("GET", url))
    assert [r.status_code for r in responses] == [401, 200], responses[-1].content
    info = responses[-1].json()
    assert (info["algorithm"], info["qop"], info["nc"], info["user"]) == (algorithm, "auth", "00000001", "Mufasa")


async def test_digest_auth_int_hashes_the_body(auth_server: HypercornServer) -> None:
    url = auth_server.url("/digest?algorithm=SHA-256&qop=auth-int")
    request = httpstream.Request("POST", url, content=b'{"some": "body"}')
    responses = await drive(DigestAuth("Mufasa", "Circle of Life"), request)
    assert [r.status_code for r in responses] == [401, 200], responses[-1].content
    assert responses[-1].json()["qop"] == "auth-int"


async def test_digest_rfc2069_server_without_qop(auth_server: HypercornServer) -> None:
    responses = await drive(DigestAuth("Mufasa", "Circle of Life"), httpstream.Request("GET", auth_server.url("/digest?qop=none")))
    assert [r.status_code for r in responses] == [401, 200], responses[-1].content
    assert responses[-1].json()["qop"] is None


@pytest.mark.parametrize("userhash", [True, False])
async def test_digest_non_ascii_user(auth_server: HypercornServer, userhash: bool) -> None:
    url = auth_server.url("/digest?algorithm=SHA-512-256" + ("&userhash=1" if userhash else ""))
    responses = await drive(DigestAuth("Jäsøn Doe", "Secret, or not?"), httpstream.Request("GET", url))
    assert [r.status_code for r in responses] == [401, 200], responses[-1].content
    info = responses[-1].json()
    assert info["user"] == "Jäsøn Doe"
    assert info["userhash"] == ("true" if userhash else None)


async def test_digest_chooses_among_many_challenges(auth_server: HypercornServer) -> None:
    url = auth_server.url("/digest?algorithm=SHA-256&multi=1")
    responses = await drive(DigestAuth("Mufasa", "Circle of Life"), httpstream.Request("GET", url))
    assert len(responses[0].headers.get_list("www-authenticate")) == 3
    assert [r.status_code for r in responses] == [401, 200], responses[-1].content
    assert responses[-1].json()["algorithm"] == "SHA-256"


async def test_digest_wrong_password_returns_the_second_401(auth_server: HypercornServer) -> None:
    auth = DigestAuth("Mufasa", "wrong")
    for _ in range(2):  # nothing is remembered from a failure: each call tries once more
        responses = await drive(auth, httpstream.Request("GET", auth_server.url("/digest")))
        assert [r.status_code for r in responses] == [401, 401]
        assert responses[-1].content == b"wrong response\n"


async def test_digest_reuses_the_nonce_and_counts(auth_server: HypercornServer) -> None:
    auth = DigestAuth("Mufasa", "Circle of Life")
    url = auth_server.url("/digest?algorithm=SHA-256")
    assert [r.status_code for r in await drive(auth, httpstream.Request("GET", url))] == [401, 200]
    for count in (2, 3):
        responses = await drive(auth, httpstream.Request("GET", url))
        assert [r.status_code for r in responses] == [200]  # preemptive: no 401 round trip
        assert responses[0].json()["nc"] == f"{count:08x}"


async def test_digest_stale_nonce_is_answered_once(auth_server: HypercornServer) -> None:
    app = auth_server.app
    assert isinstance(app, AuthApp)
    auth = DigestAuth("Mufasa", "Circle of Life")
    url = auth_server.url("/digest")
    assert [r.status_code for r in await drive(auth, httpstream.Request("GET", url))] == [401, 200]
    app.expire_nonces()
    responses = await drive(auth, httpstream.Request("GET", url))
    assert [r.status_code for r in responses] == [401, 200]
    assert "stale=TRUE" in responses[0].headers["www-authenticate"]
    assert responses[1].json()["nc"] == "00000001"  # a new nonce counts from one

    # Without stale=true a rejected preemptive attempt means wrong credentials
    # (RFC 7616 section 3.3): returned at once, and the nonce is forgotten.
    app.expire_nonces()
    responses = await drive(auth, httpstream.Request("GET", auth_server.url("/digest?nostale=1")))
    assert [r.status_code for r in responses] == [401]
    assert [r.status_code for r in await drive(auth, httpstream.Request("GET", url))] == [401, 200]


async def test_digest_cannot_resend_a_streamed_body(auth_server: HypercornServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"streamed once"

    request = httpstream.Request("POST", auth_server.url("/digest"), content=body())
    with pytest.raises(httpstream.LocalProtocolError, match="stream"):
        await drive(DigestAuth("Mufasa", "Circle of Life"), request)


def test_challenge_server_parser_agrees_on_quoting() -> None:
    """The test server's own parser reads what the flow writes (guards the guard)."""
    fields = parse_authorization('Digest username="a\\"b", nc=00000001, uri="/x?y=1"')
    assert fields == {"username": 'a"b', "nc": "00000001", "uri": "/x?y=1"}
    assert json.dumps(fields)
