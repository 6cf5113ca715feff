"""Pure pieces: requests, text and line decoding, the public API, the layer map and the architecture page.

URLs, headers, body buffers and the pool have their own modules (test_urls.py,
test_headers.py, test_streams.py, test_pool.py).
"""

from __future__ import annotations

import ast
import pathlib
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import httpstream
from httpstream._text import LineDecoder, TextDecoder, charset_from_content_type

# -- requests ----------------------------------------------------------------------


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


# -- text and lines ----------------------------------------------------------------------


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


# -- the public API and the layer map ------------------------------------------------------

PUBLIC = {
    "AsyncClient", "AsyncTransport", "Auth", "BasicAuth", "BearerAuth", "ConnectError", "ConnectTimeout",
    "ConnectionPool", "CookieConflict", "Cookies", "DecodingError", "DigestAuth", "EventSource", "FunctionAuth",
    "HTTPStatusError", "HTTPStreamError", "HTTPXTransport", "Headers", "IncompleteBody", "InsecureRedirect",
    "InvalidURL", "Limits", "LocalProtocolError", "NetworkStream", "Origin", "PoolClosed", "PoolStats", "PoolTimeout", "Proxy",
    "ProxyError", "ReadError", "ReadTimeout", "RemoteProtocolError", "Request", "Response", "ResponseNotRead", "ResponseStream",
    "Retry", "ServerSentEvent", "StaleConnection", "StreamClosed", "StreamConsumed", "StreamContext",
    "StreamError", "Timeout", "TimeoutException", "TooManyRedirects", "TotalTimeout", "TransportError", "URL",
    "USE_CLIENT_DEFAULT", "Upload", "WriteError", "WriteTimeout", "__version__", "delete", "get", "head", "options",
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
    "_exceptions": 0, "_config": 0, "_retry": 0, "_version": 0, "_requires": 0,
    "_urls": 1, "_headers": 1,
    "_models": 2, "_streams": 2, "_codings": 2, "_text": 2, "_sse": 2, "_altsvc": 2, "_content": 2, "_auth": 2,
    "_cookies": 2, "_proxy": 2, "_multiplexed": 2, "_interfaces": 2, "_network": 2,
    "_net": 3, "_h1": 3, "_h2": 3, "_h3": 3, "_server": 3,
    "_pool": 4,
    "_client": 5, "_httpx": 5, "_api": 5, "_eventsource": 5,
    "proxy": 6, "tunnel": 6,
    "cli": 7, "demo": 7, "__main__": 7,
    "__init__": 8,
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


# -- what the backends take from the wire libraries' internals ----------------------------


def test_h11_internals_are_there() -> None:
    import h11

    from httpstream._h1 import _internals

    buf = _internals.ReceiveBuffer()
    buf += b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A:  b \r\n\r\nrest"
    head = _internals.read_response_head(buf)
    assert type(head) is h11.Response and head.status_code == 200
    assert _internals.header_triples(head) == [(b"Content-Type", b"content-type", b"text/plain"), (b"X-A", b"x-a", b"b")]
    assert bytes(buf) == b"rest"
    reader = _internals.trailer_reader()
    buf = _internals.ReceiveBuffer()
    buf += b"X-Sum: 1\r\n"
    assert reader(buf) is None  # the trailer section is not complete yet
    buf += b"\r\n"
    end = reader(buf)
    assert type(end) is h11.EndOfMessage and list(end.headers) == [(b"x-sum", b"1")]


def test_h2_internals_are_there() -> None:
    import h2.config
    import h2.connection
    import h2.exceptions
    import h2.stream

    from httpstream._h2 import _internals

    for name in ("_begin_new_stream", "_receive_goaway_frame", "_receive_data_frame"):
        assert callable(getattr(h2.connection.H2Connection, name)), name
    for name in ("_initialize_content_length", "_track_content_length"):
        assert callable(getattr(h2.stream.H2Stream, name)), name
    config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_inbound_headers=False)
    client = _internals.ClientH2Connection(config)
    assert _internals._QuietDataFrame in client._frame_dispatch_table
    assert client.state_machine.state is h2.connection.ConnectionState.IDLE
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")])
    assert type(client._get_stream_by_id(stream_id)) is _internals._StreamWithoutLengthChecks
    server.receive_data(client.data_to_send())
    # A header list above the limit is recognised by its class and cause, whatever h2's message says.
    _internals.limit_header_list(client, 100)
    server.send_headers(stream_id, [(b":status", b"200"), (b"x-big", b"a" * 200)])
    with pytest.raises(h2.exceptions.ProtocolError) as info:
        client.receive_data(server.data_to_send())
    assert _internals.oversized_header_block(info.value)
    assert not _internals.oversized_header_block(h2.exceptions.ProtocolError("Oversized header block: no cause"))


def test_aioquic_internals_are_there() -> None:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    from httpstream._h3 import _internals

    assert callable(QuicConnection._write_stream_limits) and callable(QuicConnection._on_max_stream_data_delivery)
    quic = _internals.CreditedQuic(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]), stream_window=1000)
    assert _internals.remote_max_streams_bidi(quic) == 0  # until the peer's transport parameters arrive
    stream_id = quic.get_next_available_stream_id()
    assert stream_id not in _internals.live_stream_ids(quic)
    assert (_internals.unacked_send_bytes(quic, stream_id), _internals.receive_limit(quic, stream_id)) == (0, None)
    quic.send_stream_data(stream_id, b"hello")
    assert stream_id in _internals.live_stream_ids(quic)
    assert _internals.unacked_send_bytes(quic, stream_id) == 5
    assert isinstance(_internals.receive_limit(quic, stream_id), int)
    quic_stream = quic._streams[stream_id]
    assert quic_stream.max_stream_data_local_sent == quic_stream.max_stream_data_local


@pytest.mark.parametrize(
    ("dist", "module"), [("h11", "httpstream._h1._internals"), ("h2", "httpstream._h2._internals"), ("aioquic", "httpstream._h3._internals")]
)
def test_each_backend_checks_its_wire_library_version(dist: str, module: str) -> None:
    import importlib
    import importlib.metadata

    from httpstream._requires import require_version

    internals = importlib.import_module(module)
    assert importlib.metadata.version(dist) == internals.VERIFIED
    assert require_version(dist, internals.MINIMUM, internals.BELOW, installed=internals.MINIMUM) == internals.MINIMUM
    for outside in (internals.BELOW, "0.1", "99.0"):
        with pytest.raises(ImportError) as info:
            require_version(dist, internals.MINIMUM, internals.BELOW, installed=outside)
        message = str(info.value)
        assert f"{dist}>={internals.MINIMUM},<{internals.BELOW}" in message and f"{dist} {outside} is installed" in message


def test_version_check_reads_versions_as_numbers() -> None:
    from httpstream._requires import require_version

    assert require_version("h2", "4.4.1", "5", installed="4.10.0") == "4.10.0"
    assert require_version("aioquic", "1.2", "2", installed="1.2.0") == "1.2.0"
    assert require_version("h11", "0.16", "0.17", installed="0.16.0rc1") == "0.16.0rc1"
    with pytest.raises(ImportError, match=r"h2>=4\.4\.1,<5.*h2 4\.4\.0 is installed"):
        require_version("h2", "4.4.1", "5", installed="4.4.0")
    with pytest.raises(ImportError, match="not installed"):
        require_version("no-such-dist-for-httpstream", "1", "2")


# -- the architecture page ---------------------------------------------------------------

ARCHITECTURE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
MODULE_ROW = re.compile(r"^\| `httpstream/(?P<path>[\w/]+\.py)` \| (?P<layer>\d) \| \S", re.M)


def test_architecture_page_names_every_module_with_its_layer() -> None:
    """docs/architecture.md lists every module of the package, each once, at the layer LAYERS gives it."""
    root = pathlib.Path(httpstream.__file__).parent
    modules = {path.relative_to(root).as_posix() for path in root.rglob("*.py")}
    rows = MODULE_ROW.findall(ARCHITECTURE.read_text(encoding="utf-8"))
    listed = [path for path, _ in rows]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(modules - set(listed)) == [], "modules missing from docs/architecture.md"
    assert sorted(set(listed) - modules) == [], "docs/architecture.md lists modules that do not exist"
    for path, layer in rows:
        top = path.split("/")[0].removesuffix(".py")
        assert top in LAYERS, f"{path}: add {top!r} to LAYERS"
        assert int(layer) == LAYERS[top], f"{path}: layer {layer} on the page, {LAYERS[top]} in LAYERS"
