"""The cookie jar: http.cookiejar rules through httpstream requests and responses.

Against a real server the jar is driven by hand around ``AsyncClient.send``
(a fresh client per request, so the client's own jar never adds a Cookie
header): ``extract_cookies`` after each response, ``set_cookie_header`` before
each request, and the server echoes what it received.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.cookiejar import CookieJar

import pytest

import httpstream
from httpstream._cookies import CookieConflict, Cookies, to_cookies

from .peers.auth_servers import AuthApp
from .peers.servers import HypercornServer


@pytest.fixture(scope="module")
def cookie_server() -> Iterator[HypercornServer]:
    server = HypercornServer(AuthApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_cookie_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(AuthApp(), certfile=cert_files["cert"], keyfile=cert_files["key"])
    server.start()
    yield server
    server.stop()


async def fetch(cookies: Cookies, url: str, ca: str | bool = True) -> httpstream.Response:
    request = httpstream.Request("GET", url)
    cookies.set_cookie_header(request)
    async with httpstream.AsyncClient(verify=ca) as client:
        response = await client.send(request)
    cookies.extract_cookies(response)
    return response


async def sent(cookies: Cookies, url: str, ca: str | bool = True) -> set[str]:
    """The cookies the server received on a request to ``url``."""
    header = (await fetch(cookies, url, ca)).json()["cookie"]
    return set(header.split("; ")) if header else set()


def _url(server: HypercornServer, host: str, path: str) -> str:
    return f"{server.scheme}://{host}:{server.port}{path}"


# -- against the server ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_hosts_store_and_send_back(cookie_server: HypercornServer, host: str) -> None:
    # http.cookiejar matches "localhost" as "localhost.local"; both forms of
    # loopback must round-trip, with and without a Domain attribute.
    cookies = Cookies()
    await fetch(cookies, _url(cookie_server, host, "/set?plain=1"))
    await fetch(cookies, _url(cookie_server, host, f"/set?scoped=2&_domain={host}"))
    assert len(cookies.jar) == 2
    assert await sent(cookies, _url(cookie_server, host, "/cookies")) == {"plain=1", "scoped=2"}
    # Cookies are not port-scoped, but they are host-scoped.
    other = "localhost" if host == "127.0.0.1" else "127.0.0.1"
    assert await sent(cookies, _url(cookie_server, other, "/cookies")) == set()


async def test_path_attribute_and_default_path(cookie_server: HypercornServer) -> None:
    cookies = Cookies()
    await fetch(cookies, cookie_server.url("/set?p=1&_path=/cookies/sub"))
    await fetch(cookies, cookie_server.url("/set/deeper/page?d=1"))  # default path: /set/deeper
    assert await sent(cookies, cookie_server.url("/cookies/sub/x")) == {"p=1"}
    assert await sent(cookies, cookie_server.url("/cookies/sub")) == {"p=1"}
    assert await sent(cookies, cookie_server.url("/cookies/subway")) == set()
    assert await sent(cookies, cookie_server.url("/cookies")) == set()
    assert cookies.get("d", path="/set/deeper") == "1"


async def test_secure_cookie_only_over_https(
    cookie_server: HypercornServer, tls_cookie_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    cookies = Cookies()
    await fetch(cookies, cookie_server.url("/set?s=1&_secure=1"))
    await fetch(cookies, cookie_server.url("/set?open=1"))
    assert "s" in cookies
    assert await sent(cookies, cookie_server.url("/cookies")) == {"open=1"}
    assert await sent(cookies, tls_cookie_server.url("/cookies"), cert_files["ca"]) == {"open=1", "s=1"}


async def test_max_age_zero_and_past_expires_delete(cookie_server: HypercornServer) -> None:
    cookies = Cookies()
    await fetch(cookies, cookie_server.url("/set?a=1&b=2&c=3&_max_age=100"))
    (cookie,) = [c for c in cookies.jar if c.name == "a"]
    assert cookie.expires is not None and 90 < cookie.expires - time.time() <= 100
    await fetch(cookies, cookie_server.url("/set?a=gone&_max_age=0"))
    await fetch(cookies, cookie_server.url("/set?b=gone&_expires=past"))
    await fetch(cookies, cookie_server.url("/set?never=1&_expires=past"))
    assert list(cookies) == ["c"]
    assert await sent(cookies, cookie_server.url("/cookies")) == {"c=3"}


async def test_foreign_domain_is_refused(cookie_server: HypercornServer) -> None:
    cookies = Cookies()
    await fetch(cookies, cookie_server.url("/set?evil=1&_domain=example.com"))
    await fetch(cookies, cookie_server.url("/set?tld=1&_domain=.com"))
    assert not cookies
    assert await sent(cookies, cookie_server.url("/cookies")) == set()


async def test_a_cookie_header_of_the_caller_is_kept(cookie_server: HypercornServer) -> None:
    cookies = Cookies({"jar": "1"})
    request = httpstream.Request("GET", cookie_server.url("/cookies"), headers={"Cookie": "mine=2"})
    cookies.set_cookie_header(request)
    assert request.headers.get_list("cookie") == ["mine=2"]
    assert await sent(cookies, cookie_server.url("/cookies")) == {"jar=1"}


# -- the jar without a network ------------------------------------------------------------------


def _header_for(cookies: Cookies, url: str) -> str | None:
    request = httpstream.Request("GET", url)
    cookies.set_cookie_header(request)
    return request.headers.get("cookie")


def test_set_with_and_without_domain() -> None:
    cookies = Cookies()
    cookies.set("everywhere", "1")
    cookies.set("only", "2", domain="example.com", path="/app")
    assert _header_for(cookies, "http://example.com/app/x") == "only=2; everywhere=1"
    assert _header_for(cookies, "http://example.com/") == "everywhere=1"
    assert _header_for(cookies, "http://127.0.0.1:8000/app") == "everywhere=1"


def test_mapping_and_conflicts() -> None:
    cookies = Cookies([("a", "1"), ("b", "2")])
    cookies["c"] = "3"
    cookies.set("a", "other", domain="example.org")
    assert list(cookies) == ["a", "b", "c"] and len(cookies) == 3
    assert "a" in cookies and "zz" not in cookies
    with pytest.raises(CookieConflict, match="domain='example.org'") as info:
        cookies["a"]
    assert isinstance(info.value, httpstream.HTTPStreamError) and isinstance(info.value, ValueError)
    assert cookies.get("a", domain="example.org") == "other"
    assert cookies.get("a", domain="") == "1"
    assert cookies.get("missing", "dflt") == "dflt"
    with pytest.raises(KeyError):
        cookies["missing"]
    cookies.delete("a", domain="example.org")
    assert cookies["a"] == "1"
    del cookies["a"]
    with pytest.raises(KeyError):
        del cookies["a"]
    cookies.set("x", "9", domain="example.org", path="/p")
    cookies.clear(domain="example.org")
    assert list(cookies) == ["b", "c"]
    cookies.clear()
    assert not cookies and len(cookies) == 0
    for bad_name, bad_value in (("a b", "1"), ("a;b", "1"), ("a", "x;y"), ("a", "x\ty")):
        with pytest.raises(httpstream.LocalProtocolError):
            cookies.set(bad_name, bad_value)


def test_update_keeps_attributes_and_repr_hides_values() -> None:
    source = Cookies()
    source.set("sid", "secret-value", domain="example.com", path="/app")
    copy = Cookies(source)
    assert copy is not source and copy.get("sid", domain="example.com", path="/app") == "secret-value"
    target = Cookies({"x": "1"})
    target.update(source)
    assert _header_for(target, "http://example.com/app/") == "sid=secret-value; x=1"
    assert "sid for example.com/app" in repr(target) and "secret-value" not in repr(target)


def test_to_cookies() -> None:
    existing = Cookies()
    assert to_cookies(existing) is existing
    jar = CookieJar()
    wrapped = to_cookies(jar)
    wrapped["k"] = "v"
    assert wrapped.jar is jar and len(jar) == 1  # the caller's jar is the one filled
    assert dict(to_cookies({"a": "1"})) == {"a": "1"}
    assert dict(to_cookies([("a", "1"), ("b", "2")])) == {"a": "1", "b": "2"}
    assert not to_cookies(None)


def test_hostile_set_cookie_headers_are_ignored_not_raised() -> None:
    request = httpstream.Request("GET", "http://127.0.0.1:9/p/q")
    nasty = [
        "=", ";;;", "novalue", "=onlyvalue", "a=1; Max-Age=abc", "b=2; Expires=not a date",
        "c=3; Domain=", "d=4; Path", 'e="quoted; inside"', "f=5; Expires=Thu, 01 Jan 99999 00:00:00 GMT",
        "g=\x7f\xff", "h=6; Max-Age=99999999999999999999", "i=7; Domain=..", "j=8; Port=80",
    ]
    response = httpstream.Response(200, headers=[("Set-Cookie", value) for value in nasty], request=request)
    cookies = Cookies()
    cookies.extract_cookies(response)
    # http.cookiejar drops a cookie with a bad Max-Age and keeps one with a bad
    # Expires (as a session cookie); nothing raises.
    assert "a" not in cookies and cookies.get("b") == "2" and cookies.get("h") == "6"
    header = _header_for(cookies, "http://127.0.0.1:9/p/q")
    assert header is not None and "b=2" in header
