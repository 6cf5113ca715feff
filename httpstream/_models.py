"""Request and Response: what crosses the transport contract.

A ``Request`` is complete when built: method checked, ``Host`` set, and the body
framing decided (``Content-Length`` for bytes, ``Transfer-Encoding: chunked`` for
an async iterator of unknown length) so every protocol sends the same thing.

A ``Response`` is handed over when its head arrives; its body is a
``ResponseStream`` (raw bytes) and the ``aiter_*`` / ``aread`` methods decode on
top of it.  The response is released (drained, reset or closed by its protocol)
when the body is read to the end, on ``aclose()``, or, with a ResourceWarning,
when it is garbage collected unclosed.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Union

from ._config import Timeout
from ._decoders import LineDecoder, TextDecoder, charset_from_content_type
from ._exceptions import (
    DecodingError,
    HTTPStatusError,
    LocalProtocolError,
    StreamClosed,
    StreamConsumed,
)
from ._headers import Headers, HeaderTypes
from ._streams import ByteStream, ResponseStream, aiter_chunks
from ._urls import URL

__all__ = ["Request", "Response", "RequestContent", "IDEMPOTENT_METHODS"]

RequestContent = Union[bytes, str, AsyncIterable[bytes], None]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_METHOD = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

_REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
    202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 413: "Content Too Large", 416: "Range Not Satisfiable",
    429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class Request:
    """An HTTP request: method, absolute URL, headers and a body.

    ``content`` is bytes (replayable: redirects and retries can send it again) or
    an async iterable of bytes (streamed once, with backpressure).
    """

    __slots__ = ("method", "url", "headers", "content", "timeout", "extensions")

    def __init__(
        self,
        method: str | bytes,
        url: str | URL,
        *,
        headers: HeaderTypes = None,
        content: RequestContent = None,
        timeout: Timeout | None = None,
    ) -> None:
        if isinstance(method, bytes):
            method = method.decode("ascii", "replace")
        if not _METHOD.match(method):
            raise LocalProtocolError(f"invalid HTTP method {method!r}")
        self.method = method.upper()
        self.url = url if isinstance(url, URL) else URL(url)
        if not self.url.is_absolute:
            raise LocalProtocolError(f"request URL must be absolute, got {str(self.url)!r}")
        self.headers = headers.copy() if isinstance(headers, Headers) else Headers(headers)
        if isinstance(content, str):
            content = content.encode("utf-8")
        self.content: bytes | AsyncIterable[bytes] | None = content
        self.timeout = timeout
        self.extensions: dict[str, object] = {}
        self._frame()

    def _frame(self) -> None:
        headers = self.headers
        headers.setdefault_raw(b"Host", self.url.netloc.encode("ascii"))
        content = self.content
        if content is None:
            if self.method in ("POST", "PUT", "PATCH"):
                headers.setdefault_raw(b"Content-Length", b"0")
        elif isinstance(content, (bytes, bytearray, memoryview)):
            self.content = bytes(content)
            if not headers.has(b"transfer-encoding"):
                headers.setdefault_raw(b"Content-Length", str(len(content)).encode("ascii"))
        elif not headers.has(b"content-length"):
            headers.setdefault_raw(b"Transfer-Encoding", b"chunked")

    @property
    def is_replayable(self) -> bool:
        return self.content is None or isinstance(self.content, bytes)

    @property
    def is_idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS

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
        """The body length known up front, or None (chunked, close-delimited).

        0 for responses that never have a body (HEAD, 204, 304), whatever their
        Content-Length header says about the resource.
        """
        if self._no_body():
            return 0
        if self.headers.has(b"transfer-encoding"):
            return None
        values = self.headers.get_raw(b"content-length")
        if not values:
            return None
        try:
            return int(values[0])
        except ValueError:
            return None

    def _no_body(self) -> bool:
        return (
            self.status_code in (204, 304)
            or 100 <= self.status_code < 200
            or (self._request is not None and self._request.method == "HEAD")
        )

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
            raise RuntimeError(
                "the body was not read yet: call 'await response.aread()' first "
                "(or use client.get(), which reads it)"
            )
        return self._content

    @property
    def text(self) -> str:
        decoder = TextDecoder(self.encoding)
        return decoder.decode(self.content) + decoder.flush()

    def json(self, **kwargs: Any) -> Any:
        try:
            return jsonlib.loads(self.content, **kwargs)
        except ValueError as exc:
            raise DecodingError(f"response body is not valid JSON: {exc}") from exc

    # -- body reading ----------------------------------------------------------
    def _start(self) -> ResponseStream | ByteStream:
        if self._consumed:
            raise StreamConsumed()
        if self.is_closed:
            raise StreamClosed()
        self._consumed = True
        return self.stream

    async def aread(self) -> bytes:
        """Read the whole body (once) and return it; later calls return it again."""
        if self._content is not None:
            return self._content
        stream = self._start()
        chunks = [chunk async for chunk in stream]
        self._content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        await stream.aclose()
        return self._content

    async def aiter_raw(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body bytes as they arrived on the wire (content codings not undone)."""
        if self._content is not None:
            for start in range(0, len(self._content), chunk_size or len(self._content) or 1):
                yield self._content[start : start + (chunk_size or len(self._content))]
            return
        stream = self._start()
        try:
            if chunk_size is None:
                async for chunk in stream:
                    yield chunk
            else:
                async for chunk in aiter_chunks(stream, chunk_size):
                    yield chunk
        finally:
            await stream.aclose()

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body bytes, decoded from any content coding; exact-size chunks if asked."""
        async for chunk in self.aiter_raw(chunk_size):
            yield chunk

    async def aiter_text(self, chunk_size: int | None = None) -> AsyncIterator[str]:
        decoder = TextDecoder(self.encoding)
        async for chunk in self.aiter_bytes(chunk_size):
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.flush()
        if tail:
            yield tail

    async def aiter_lines(self, *, max_line_length: int = 1024 * 1024) -> AsyncIterator[str]:
        """Lines split on \\n, \\r\\n and \\r, without their ending."""
        decoder = LineDecoder(max_line_length)
        async for text in self.aiter_text():
            for line in decoder.decode(text):
                yield line
        for line in decoder.flush():
            yield line

    async def aclose(self) -> None:
        """Release the body: the protocol drains, resets or closes as its rules say."""
        await self.stream.aclose()

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}] {self.http_version}>"
