"""Pure pieces: URLs, headers, decoders, re-chunking, the public API and the layer map."""

from __future__ import annotations

import ast
import pathlib
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import httpstream
from httpstream._decoders import LineDecoder, TextDecoder, charset_from_content_type
from httpstream._streams import aiter_chunks

# -- URLs ------------------------------------------------------------------------


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


# -- headers and requests ------------------------------------------------------------


def test_headers_are_ordered_case_insensitive_and_keep_repeats() -> None:
    h = httpstream.Headers([("Set-Cookie", "a=1"), ("X-A", "1"), ("set-cookie", "b=2")])
    assert h.get_list("SET-COOKIE") == ["a=1", "b=2"]
    assert h["set-cookie"] == "a=1, b=2"
    assert h.raw == [(b"Set-Cookie", b"a=1"), (b"X-A", b"1"), (b"set-cookie", b"b=2")]
    assert list(h) == ["Set-Cookie", "X-A"]
    h["x-a"] = "2"
    assert h.multi_items()[1] == ("x-a", "2")
    del h["set-cookie"]
    assert "Set-Cookie" not in h
    assert h == {"X-A": "2"}


@pytest.mark.parametrize("name", ["X\r\nY", "X Y", "", "X:"])
def test_header_names_that_could_inject_are_refused(name: str) -> None:
    with pytest.raises(httpstream.LocalProtocolError, match="header name"):
        httpstream.Headers({name: "v"})


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_header_values_that_could_inject_are_refused(value: str) -> None:
    with pytest.raises(httpstream.LocalProtocolError, match="CR, LF or NUL"):
        httpstream.Headers({"X": value})


@pytest.mark.parametrize("method", ["GE T", "GET\r\n", "", "G\x00"])
def test_methods_that_could_inject_are_refused(method: str) -> None:
    with pytest.raises(httpstream.LocalProtocolError, match="method"):
        httpstream.Request(method, "http://h/")


def test_request_framing() -> None:
    assert httpstream.Request("POST", "http://h/", content=b"abc").headers["content-length"] == "3"
    assert httpstream.Request("POST", "http://h/").headers["content-length"] == "0"
    assert "content-length" not in httpstream.Request("GET", "http://h/").headers

    async def gen() -> AsyncIterator[bytes]:
        yield b"x"

    streamed = httpstream.Request("PUT", "http://h:81/", content=gen())
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.headers["host"] == "h:81"
    assert not streamed.is_replayable
    with pytest.raises(httpstream.LocalProtocolError, match="absolute"):
        httpstream.Request("GET", "/relative")


# -- decoders ----------------------------------------------------------------------


def test_charset_from_content_type() -> None:
    assert charset_from_content_type('text/plain; charset="ISO-8859-1"') == "iso8859-1"
    assert charset_from_content_type("text/plain; charset=nonsense") is None
    assert charset_from_content_type(None) is None


def test_text_decoder_across_boundaries() -> None:
    data = "héllo wörld €".encode()
    decoder = TextDecoder("utf-8")
    assert "".join(decoder.decode(data[i : i + 1]) for i in range(len(data))) + decoder.flush() == "héllo wörld €"


def reference_lines(text: str) -> list[str]:
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(["a", "b", "\r", "\n", "é"]), max_size=60),
    st.lists(st.integers(min_value=0, max_value=60), max_size=8),
)
def test_line_decoder_matches_reference_for_any_split(text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    decoder = LineDecoder()
    lines: list[str] = []
    for piece in pieces:
        lines.extend(decoder.decode(piece))
    lines.extend(decoder.flush())
    assert lines == reference_lines(text)


def test_line_decoder_caps_line_length_and_is_linear() -> None:
    decoder = LineDecoder(max_line_length=1000)
    decoder.decode("x" * 999)
    with pytest.raises(httpstream.DecodingError, match="longer than the limit"):
        decoder.decode("xx")
    big = LineDecoder(max_line_length=10**8)
    for _ in range(20_000):  # 20,000 one-byte pieces of one line: linear work
        big.decode("y")
    assert big.flush() == ["y" * 20_000]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=20), st.integers(min_value=1, max_value=40))
async def test_aiter_chunks_gives_exact_sizes(pieces: list[bytes], size: int) -> None:
    async def source() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    out = [chunk async for chunk in aiter_chunks(source(), size)]
    assert b"".join(out) == b"".join(pieces)
    assert all(len(chunk) == size for chunk in out[:-1])
    assert not out or 0 < len(out[-1]) <= size


# -- the public API and the layer map ------------------------------------------------------

PUBLIC = {
    "AsyncClient", "AsyncTransport", "Auth", "BasicAuth", "BearerAuth", "ConnectError", "ConnectTimeout",
    "ConnectionPool", "CookieConflict", "Cookies", "DecodingError", "DigestAuth", "EventSource", "FunctionAuth",
    "HTTPStatusError", "HTTPStreamError", "HTTPXTransport", "Headers", "IncompleteBody", "InsecureRedirect",
    "InvalidURL", "Limits", "LocalProtocolError", "Origin", "PoolClosed", "PoolStats", "PoolTimeout", "Proxy",
    "ProxyError", "ReadError", "ReadTimeout", "RemoteProtocolError", "Request", "Response", "ResponseStream",
    "Retry", "ServerSentEvent", "StaleConnection", "StreamClosed", "StreamConsumed", "StreamContext",
    "StreamError", "Timeout", "TimeoutException", "TooManyRedirects", "TotalTimeout", "TransportError", "URL",
    "USE_CLIENT_DEFAULT", "WriteError", "WriteTimeout", "__version__", "delete", "get", "head", "options",
    "patch", "post", "put", "request", "stream"
}


def test_public_api_is_pinned() -> None:
    assert set(httpstream.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(httpstream, name)


def test_exception_tree() -> None:
    for name in httpstream.__all__:
        obj = getattr(httpstream, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, httpstream.HTTPStreamError), name
    assert issubclass(httpstream.ConnectTimeout, httpstream.TimeoutException)
    assert issubclass(httpstream.PoolTimeout, httpstream.TransportError)
    assert issubclass(httpstream.StreamConsumed, httpstream.StreamError)


def test_config_values_are_frozen() -> None:
    timeout = httpstream.Timeout(connect=1)
    with pytest.raises(AttributeError):
        timeout.connect = 2  # type: ignore[misc]
    assert httpstream.Timeout.all(3).pool == 3
    with pytest.raises(ValueError, match="low_water"):
        httpstream.Limits(read_high_water=1, read_low_water=2)


LAYERS = {
    "_exceptions": 0, "_config": 0, "_urls": 1, "_headers": 1, "_models": 2, "_streams": 2, "_decoders": 2,
    "_altsvc": 2, "_content": 2, "_auth": 2, "_cookies": 2, "_proxy": 2, "_multiplexed": 2, "_retry": 0, "_net": 3, "_h1": 3, "_h2": 3, "_h3": 3, "_server": 3, "_pool": 4, "_client": 5,
    "_httpx": 5, "_api": 5, "_eventsource": 5, "proxy": 6, "tunnel": 6, "cli": 7, "_demo": 7, "__main__": 7, "__init__": 8,
}
SIBLINGS = {"_h1", "_h2", "_h3", "_server", "_net"}


def test_modules_import_only_layers_below() -> None:
    root = pathlib.Path(httpstream.__file__).parent
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        top = rel[0].removesuffix(".py")
        if top not in LAYERS:
            continue
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            depth = node.level - (len(rel) - 1)
            if depth < 1:
                continue  # inside the same package
            target = (node.module or "").split(".")[0]
            if target not in LAYERS or target == top:
                continue
            assert LAYERS[target] < LAYERS[top] or (
                LAYERS[target] == LAYERS[top] and not ({top, target} <= SIBLINGS)
            ), f"{'/'.join(rel)} imports {target}"
            assert not ({top, target} <= SIBLINGS), f"{'/'.join(rel)} imports its sibling {target}"
    for path in root.rglob("*.py"):
        text = path.read_text()
        top = path.relative_to(root).parts[0]
        if top not in ("_h1", "_h2", "_h3", "_server"):
            assert not re.search(r"^\s*(import|from) (h11|h2|aioquic)\b", text, re.M), f"{path} imports a wire library"
