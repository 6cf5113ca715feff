"""Request and Response: what crosses the transport contract.

A ``Request`` is complete when built: method checked, ``Host`` set (first), and the body
framing decided (``Content-Length`` for bytes, ``Transfer-Encoding: chunked`` for
an async iterator of unknown length) so every protocol sends the same thing.

A ``Response`` is handed over when its head arrives; its body is a
``ResponseStream`` (raw bytes) and the ``aiter_*`` / ``aread`` methods decode on
top of it: ``aiter_raw`` gives the bytes as they arrived, ``aiter_bytes`` undoes
the content codings (see ``_codings``), and text, lines, Server-Sent Events and
NDJSON are read from the decoded bytes.  Without a Content-Encoding,
``aiter_bytes`` *is* ``aiter_raw`` (no extra generator on the hot path: the only
per-chunk cost is the download counter).  The response is released (drained,
reset or closed by its protocol) when the body is read to the end, on
``aclose()``, or, with a ResourceWarning, when it is garbage collected unclosed.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any, Union

from ._codings import content_decoder
from ._config import Timeout
from ._exceptions import (
    DecodingError,
    HTTPStatusError,
    LocalProtocolError,
    ResponseNotRead,
    StreamClosed,
    StreamConsumed,
)
from ._headers import Headers, HeaderTypes
from ._sse import MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder
from ._streams import ByteStream, ResponseStream, aiter_chunks
from ._text import LineDecoder, TextDecoder, charset_from_content_type
from ._urls import URL

__all__ = ["Request", "Response", "RequestContent", "IDEMPOTENT_METHODS"]

RequestContent = Union[bytes, str, AsyncIterable[bytes], None]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a token; fullmatch (``$`` lets a final "\n" by)
# RFC 9112 section 3.2: the four request-target forms, visible ASCII only.
_VISIBLE = re.compile(r"[\x21-\x7e]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+):[0-9]{1,5}")


def _check_target(method: str, target: str) -> str:
    """``target`` if it is a valid request target for ``method``, else LocalProtocolError."""
    if not isinstance(target, str) or not _VISIBLE.fullmatch(target):
        raise LocalProtocolError(f"invalid request target {target!r}: visible ASCII without spaces only")
    if target.startswith("/"):
        return target  # origin form
    if target == "*":
        if method != "OPTIONS":
            raise LocalProtocolError(f"the asterisk-form target '*' is for OPTIONS only, not {method}")
        return target
    if _SCHEME.match(target):
        return target  # absolute form
    if _AUTHORITY.fullmatch(target):
        if method != "CONNECT":
            raise LocalProtocolError(f"an authority-form target ({target!r}) is for CONNECT only, not {method}")
        return target
    raise LocalProtocolError(
        f"invalid request target {target!r}: expected '/path', 'scheme://host/path', 'host:port' (CONNECT) or '*'"
    )


_REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Request:
    """An HTTP request: method, URL, request target, headers, a body and trailers.

    ``content`` is bytes (replayable: redirects and retries can send it again) or
    an async iterable of bytes (streamed once, with backpressure, and full
    duplex: the response may arrive while it is still going up).

    The request target (RFC 9112 section 3.2) is explicit: ``target=`` takes any
    of the four forms, checked here: origin form (``/path?query``, the default,
    from the URL), absolute form (``http://host/path``, what a forward proxy
    gets), authority form (``host:port``, CONNECT only) and asterisk form
    (``*``, OPTIONS only).  ``Request("CONNECT", "example.test:443")`` is a
    CONNECT in authority form sent to that host; ``Request("CONNECT",
    "http://proxy:3128", target="example.test:443")`` sends it to a proxy.

    ``trailers`` are sent after the body (HTTP/1.1 chunked, HTTP/2 and HTTP/3
    trailing HEADERS); a streamed body may fill them in while it runs: they are
    read when the body ends.  ``extensions`` carries per-request options the
    protocols read: ``"on_informational"`` (a ``(status, headers)`` callable for
    every 1xx answer as it arrives) and ``"protocol"`` (RFC 8441 extended
    CONNECT, e.g. ``"websocket"``).
    """

    __slots__ = ("method", "url", "_target", "headers", "content", "trailers", "timeout", "extensions")

    def __init__(
        self,
        method: str | bytes,
        url: str | URL,
        *,
        headers: HeaderTypes = None,
        content: RequestContent = None,
        timeout: Timeout | None = None,
        target: str | None = None,
        trailers: HeaderTypes = None,
        extensions: dict[str, object] | None = None,
    ) -> None:
        if isinstance(method, bytes):
            method = method.decode("ascii", "replace")
        if not _METHOD.fullmatch(method):
            raise LocalProtocolError(f"invalid HTTP method {method!r}")
        self.method = method = method.upper()
        if method == "CONNECT" and isinstance(url, str) and "://" not in url and target is None:
            # Authority form given as the URL: the connection goes to that host.
            target = url
            url = URL("http://" + url)
        self.url = url if isinstance(url, URL) else URL(url)
        if not self.url.is_absolute:
            raise LocalProtocolError(f"request URL must be absolute, got {str(self.url)!r}")
        if method == "CONNECT" and target is None and not (extensions and "protocol" in extensions):
            host = self.url.host
            port = self.url.effective_port
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._target = None if target is None else _check_target(method, target)
        self.headers = headers.copy() if isinstance(headers, Headers) else Headers(headers)
        if isinstance(content, str):
            content = content.encode("utf-8")
        self.content: bytes | AsyncIterable[bytes] | None = content
        # Headers given as such are kept, not copied: the body may fill them in as it runs.
        self.trailers = None if trailers is None else trailers if isinstance(trailers, Headers) else Headers(trailers)
        self.timeout = timeout
        self.extensions: dict[str, object] = {} if extensions is None else dict(extensions)
        self._frame()

    @property
    def target(self) -> str:
        """The request target as it goes on the wire (HTTP/2 and HTTP/3: ``:path``)."""
        target = self._target
        return self.url.target if target is None else target

    @target.setter
    def target(self, value: str) -> None:
        self._target = _check_target(self.method, value)

    def _frame(self) -> None:
        headers = self.headers
        target = self._target
        # RFC 9110 section 7.2: Host goes first (unless the caller placed one).
        if target is not None and self.method == "CONNECT" and not target.startswith("/"):
            headers.setdefault_first_raw(b"Host", target.encode("ascii"))  # RFC 9110 section 9.3.6
        else:
            headers.setdefault_first_raw(b"Host", self.url.netloc.encode("ascii"))
        content = self.content
        if self.trailers is not None and not headers.has(b"content-length"):
            # Trailers need chunked framing on HTTP/1.1, whatever the body is.
            if isinstance(content, (bytearray, memoryview)):
                self.content = bytes(content)
            headers.setdefault_raw(b"Transfer-Encoding", b"chunked")
            return
        if content is None:
            if self.method in ("POST", "PUT", "PATCH"):
                headers.setdefault_raw(b"Content-Length", b"0")
        elif isinstance(content, (bytes, bytearray, memoryview)):
            self.content = bytes(content)
            if not headers.has(b"transfer-encoding"):
                headers.setdefault_raw(b"Content-Length", str(len(content)).encode("ascii"))
        elif not headers.has(b"content-length") and not headers.has(b"transfer-encoding"):
            # A stream that knows its length (a multipart body of files, a
            # progress wrapper around bytes) goes with Content-Length.
            length = getattr(content, "content_length", None)
            if isinstance(length, int):
                headers.setdefault_raw(b"Content-Length", str(length).encode("ascii"))
            else:
                headers.setdefault_raw(b"Transfer-Encoding", b"chunked")

    def copy_for_send(self) -> Request:
        """A shallow copy (same body, own headers and extensions) for one attempt."""
        sent = object.__new__(Request)
        sent.method = self.method
        sent.url = self.url
        sent._target = self._target
        sent.headers = self.headers.copy()
        sent.content = self.content
        sent.trailers = self.trailers
        sent.timeout = self.timeout
        sent.extensions = dict(self.extensions)
        return sent

    @property
    def is_replayable(self) -> bool:
        """True when the body can be sent again (redirects 307/308, retries, auth).

        Bytes can; so can a streamed body that says so (a multipart body whose
        files are seekable rewinds itself); a plain async iterator cannot.
        """
        content = self.content
        return content is None or isinstance(content, bytes) or getattr(content, "replayable", False) is True

    @property
    def is_idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS

    def expect_continue_timeout(self) -> float | None:
        """Seconds to wait for ``100 Continue``, or None when the request expects nothing.

        Only a request with ``Expect: 100-continue`` (any case) waits; the
        protocols ask only when there is a body to hold back.  The wait is always
        bounded (RFC 9110 section 10.1.1 lets a client send the body after a
        while): ``Timeout.expect``, else the read timeout, else one second.
        """
        values = self.headers.get_raw(b"expect")
        if not values or not any(b"100-continue" in value.lower() for value in values):
            return None
        timeout = self.timeout
        seconds = None if timeout is None else timeout.expect if timeout.expect is not None else timeout.read
        return seconds if seconds is not None else 1.0

    def __repr__(self) -> str:
        return f"<Request [{self.method} {self.url}]>"


class Response:
    """An HTTP response whose body is read on demand."""

    __slots__ = (
        "status_code",
        "reason_phrase",
        "http_version",
        "headers",
        "_request",
        "stream",
        "trailers",
        "history",
        "extensions",
        "default_encoding",
        "_content",
        "_consumed",
        "_downloaded",
        "on_download",
        "__weakref__",
    )

    def __init__(
        self,
        status_code: int,
        *,
        headers: HeaderTypes = None,
        http_version: str = "HTTP/1.1",
        reason_phrase: str = "",
        request: Request | None = None,
        stream: ResponseStream | ByteStream | None = None,
        content: bytes | None = None,
    ) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase or _REASONS.get(status_code, "")
        self.http_version = http_version
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self._request = request
        self.trailers = Headers()
        self.history: list[Response] = []
        self.extensions: dict[str, object] = {}
        self.default_encoding = "utf-8"
        self._consumed = False
        self._downloaded = 0
        # Called with (num_bytes_downloaded, content_length) after each raw chunk
        # (the client sets it for download progress).
        self.on_download: Callable[[int, int | None], None] | None = None
        if content is not None:
            self._content: bytes | None = content
            self.stream: ResponseStream | ByteStream = ByteStream(content)
            self._consumed = True
        else:
            self._content = None
            self.stream = stream if stream is not None else ByteStream(b"")

    # -- head ----------------------------------------------------------------
    @property
    def request(self) -> Request:
        if self._request is None:
            raise RuntimeError("this response has no request attached")
        return self._request

    @request.setter
    def request(self, value: Request) -> None:
        self._request = value

    @property
    def url(self) -> URL:
        return self.request.url

    @property
    def content_length(self) -> int | None:
        """The length the Content-Length header announces, or None (no header,
        chunked, or a value that is not a number).

        It is the header's value for every response, a HEAD's and a 304's too
        (RFC 9110 section 8.6: there it is the length a GET would have had), so
        ``(await client.head(url)).content_length`` sizes a download before it
        starts, as in aiohttp.  The body of a HEAD, 204 or 304 is empty whatever
        this says: the protocols frame bodies themselves and never read it.
        """
        if self.headers.has(b"transfer-encoding"):
            return None  # RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length
        values = self.headers.get_raw(b"content-length")
        if not values:
            return None
        try:
            return int(values[0])
        except ValueError:
            return None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def encoding(self) -> str:
        return charset_from_content_type(self.headers.get("content-type")) or self.default_encoding

    def raise_for_status(self) -> Response:
        if self.status_code < 400:
            return self
        kind = "Client error" if self.status_code < 500 else "Server error"
        message = f"{kind} '{self.status_code} {self.reason_phrase}' for url '{self.url}'"
        raise HTTPStatusError(message, request=self.request, response=self)

    # -- body state ------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        stream = self.stream
        return stream.is_closed if isinstance(stream, ResponseStream) else self._consumed

    @property
    def is_stream_consumed(self) -> bool:
        return self._consumed

    @property
    def content(self) -> bytes:
        if self._content is None:
            if self._consumed:
                raise ResponseNotRead(
                    "the response body was iterated, not kept: use 'await response.aread()' "
                    "instead of aiter_*() to keep it for .content"
                )
            if self.is_closed:
                raise ResponseNotRead(
                    "the response body was closed before it was read: call 'await response.aread()' "
                    "inside the 'async with client.stream(...)' block"
                )
            raise ResponseNotRead()
        return self._content

    @property
    def text(self) -> str:
        decoder = TextDecoder(self.encoding)
        return decoder.decode(self.content) + decoder.flush()

    @property
    def num_bytes_downloaded(self) -> int:
        """Raw body bytes received so far (before content decoding): what progress counts."""
        return self._downloaded

    def json(self, **kwargs: Any) -> Any:
        try:
            return jsonlib.loads(self.content, **kwargs)
        except (ValueError, RecursionError) as exc:
            raise DecodingError(f"response body is not valid JSON: {exc}") from exc

    # -- body reading ----------------------------------------------------------
    def _start(self) -> ResponseStream | ByteStream:
        if self._consumed:
            raise StreamConsumed()
        if self.is_closed:
            raise StreamClosed()
        self._consumed = True
        return self.stream

    async def aread(self, *, max_body_size: int | None = None) -> bytes:
        """Read the whole body (once), decoded, and return it; later calls return it again.

        ``max_body_size`` caps the decoded size: past it the body is closed and
        ``DecodingError`` raised, so a small compressed body cannot fill memory.
        """
        if self._content is not None:
            return self._content
        if max_body_size is None and self.on_download is None and not self.headers.has(b"content-encoding"):
            # The common case, without a generator in between: the raw chunks are the body.
            stream = self._start()
            try:
                raw = [chunk async for chunk in stream]
            finally:
                await stream.aclose()
            self._downloaded += sum(map(len, raw))
            self._content = raw[0] if len(raw) == 1 else b"".join(raw)
            return self._content
        chunks: list[bytes] = []
        size = 0
        pieces = self.aiter_bytes()
        try:
            async for piece in pieces:
                size += len(piece)
                if max_body_size is not None and size > max_body_size:
                    raise DecodingError(f"the body is larger than max_body_size ({max_body_size} bytes) once decoded")
                chunks.append(piece)
        finally:
            await pieces.aclose()
        self._content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._content

    async def aiter_raw(self, chunk_size: int | None = None) -> AsyncGenerator[bytes, None]:
        """The body bytes as they arrived on the wire (content codings not undone), not copied."""
        if self._content is not None:
            for start in range(0, len(self._content), chunk_size or len(self._content) or 1):
                yield self._content[start : start + (chunk_size or len(self._content))]
            return
        stream = self._start()
        try:
            if chunk_size is None:
                # The hot path: _counted() inlined, so no generator sits in between.
                length = self.content_length
                async for chunk in stream:
                    self._downloaded += len(chunk)
                    if self.on_download is not None:
                        self.on_download(self._downloaded, length)
                    yield chunk
            else:
                async for chunk in aiter_chunks(self._counted(stream), chunk_size):
                    yield chunk
        finally:
            await stream.aclose()

    async def _counted(self, stream: ResponseStream | ByteStream) -> AsyncGenerator[bytes, None]:
        length = self.content_length
        async for chunk in stream:
            self._downloaded += len(chunk)
            if self.on_download is not None:
                self.on_download(self._downloaded, length)
            yield chunk

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncGenerator[bytes, None]:
        """The body bytes with content codings undone; exact-size chunks if asked.

        Without a Content-Encoding this returns ``aiter_raw()`` itself.  Decoded
        pieces are at most 1 MiB whatever one raw chunk expands to.  A body built
        in memory (``Response(content=...)``) is already decoded.
        """
        if self._content is not None or not self.headers.has(b"content-encoding"):
            return self.aiter_raw(chunk_size)
        decoded = self._aiter_decoded()
        return decoded if chunk_size is None else _rechunked(decoded, chunk_size)

    async def _aiter_decoded(self) -> AsyncGenerator[bytes, None]:
        decoder = content_decoder(self.headers.get_list("content-encoding"))
        raw = self.aiter_raw()
        try:
            if decoder is None:  # identity only, or a coding we do not know: as it arrived
                async for chunk in raw:
                    yield chunk
            else:
                async for chunk in raw:
                    for piece in decoder.decode(chunk):
                        yield piece
                for piece in decoder.flush():
                    yield piece
        finally:
            await raw.aclose()

    async def aiter_text(self, chunk_size: int | None = None) -> AsyncGenerator[str, None]:
        decoder = TextDecoder(self.encoding)
        pieces = self.aiter_bytes(chunk_size)
        try:
            async for chunk in pieces:
                text = decoder.decode(chunk)
                if text:
                    yield text
        finally:
            await pieces.aclose()
        tail = decoder.flush()
        if tail:
            yield tail

    async def aiter_lines(self, *, max_line_length: int = 1024 * 1024) -> AsyncGenerator[str, None]:
        """Lines split on \\n, \\r\\n and \\r, without their ending."""
        decoder = LineDecoder(max_line_length)
        texts = self.aiter_text()
        try:
            async for text in texts:
                for line in decoder.decode(text):
                    yield line
        finally:
            await texts.aclose()
        for line in decoder.flush():
            yield line

    async def aiter_sse(self, *, max_event_size: int = MAX_EVENT_SIZE) -> AsyncGenerator[ServerSentEvent, None]:
        """Server-Sent Events of a ``text/event-stream`` body, each as soon as its blank line arrives.

        The Content-Type is not checked here (``EventSource`` does, and reconnects).
        """
        decoder = SSEDecoder(max_event_size=max_event_size)
        pieces = self.aiter_bytes()
        try:
            async for chunk in pieces:
                for event in decoder.decode(chunk):
                    yield event
            decoder.end()
        finally:
            await pieces.aclose()

    async def aiter_json(self, *, max_line_length: int = 1024 * 1024, **json_kwargs: Any) -> AsyncGenerator[Any, None]:
        """One parsed value per non-blank line of an NDJSON (JSON Lines) body.

        A line that is not JSON raises ``DecodingError`` naming its line number
        (counted from 1, blank lines included).
        """
        lines = self.aiter_lines(max_line_length=max_line_length)
        number = 0
        try:
            async for line in lines:
                number += 1
                if not line.strip(" \t\r\n"):  # JSON's whitespace only (RFC 8259 section 2)
                    continue
                try:
                    value = jsonlib.loads(line, **json_kwargs)
                except (ValueError, RecursionError) as exc:
                    raise DecodingError(f"line {number} of the NDJSON body is not valid JSON: {exc}") from exc
                yield value
        finally:
            await lines.aclose()

    async def aclose(self) -> None:
        """Release the body: the protocol drains, resets or closes as its rules say."""
        await self.stream.aclose()

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}] {self.http_version}>"


async def _rechunked(pieces: AsyncGenerator[bytes, None], chunk_size: int) -> AsyncGenerator[bytes, None]:
    """Decoded pieces re-cut to ``chunk_size``; closing this closes the decoding below."""
    try:
        async for chunk in aiter_chunks(pieces, chunk_size):
            yield chunk
    finally:
        await pieces.aclose()
