"""URL and Origin (layer 1, ``_urls``): parsing, IDNA, the request target, join and params."""

from __future__ import annotations

import pytest

import httpstream


def test_url_parts_and_target() -> None:
    url = httpstream.URL("HTTPS://User:pw@Example.COM:8443/a b/c?q=1 2#frag")
    assert (url.scheme, url.host, url.port) == ("https", "example.com", 8443)
    assert url.target == "/a%20b/c?q=1%202"
    assert url.origin == httpstream.Origin("https", "example.com", 8443)
    assert url.userinfo == "User:pw"
    assert httpstream.URL("http://example.com").target == "/"
    assert httpstream.URL("http://[::1]:8080/x").origin == ("http", "::1", 8080)
    assert str(httpstream.URL("http://[::1]:80/x")) == "http://[::1]/x"


def test_idna_hosts_go_on_the_wire_as_ascii() -> None:
    assert httpstream.URL("http://bücher.example/").host == "xn--bcher-kva.example"
    assert httpstream.URL("http://BÜCHER.example/").host == "xn--bcher-kva.example"  # UTS46 mapping
    with pytest.raises(httpstream.InvalidURL):
        httpstream.URL("http://xn--a.example\u200d/")
    with pytest.raises(httpstream.InvalidURL):
        httpstream.URL("http://a..b\u0000/")


@pytest.mark.parametrize(
    "bad",
    ["http://example.com/\r\nX-Injected: 1", "http://exa mple.com/", "http://example.com/\n", "http://example.com/\x00", "http://:99999/", "http://[::1/"],
)
def test_urls_that_could_split_a_request_are_refused(bad: str) -> None:
    with pytest.raises(httpstream.InvalidURL):
        httpstream.URL(bad)


def test_url_join_and_params() -> None:
    base = httpstream.URL("http://h/a/b?x=1")
    assert str(base.join("../c")) == "http://h/c"
    assert str(base.join("//other/p")) == "http://other/p"
    assert base.copy_merge_params({"y": [1, 2], "z": None}).query == "x=1&y=1&y=2&z="
