"""httpx on top of httpstream: ``httpx.AsyncClient(transport=HTTPXTransport())``.

Theory of operation
-------------------
httpx asks one thing of a transport: ``await handle_async_request(request)``
returning an ``httpx.Response`` whose ``stream`` is an ``httpx.AsyncByteStream``.
The adapter converts the request (method, URL, raw header fields in order with
repeats and case, the body), sends it through ``ConnectionPool.handle_request``
and wraps our response:

- the body: bytes when httpx already holds them (it reads ``content=bytes``,
  ``data=``, ``json=`` and ``files=`` up front), which keeps the request
  replayable for the pool's one retry on a stale connection; otherwise httpx's
  async byte stream itself, so uploads stream with our backpressure.  httpx has
  already framed the body (Content-Length or chunked) and its headers are kept;
- the timeouts httpx puts in ``request.extensions["timeout"]`` become the
  request's ``Timeout`` (our ``total`` and ``expect`` come from the pool);
- the response: status, raw headers, ``http_version`` and ``reason_phrase`` in
  the extensions httpx reads, and a stream that yields our *raw* body chunks
  (httpx undoes the content coding itself) and whose ``aclose()`` releases our
  stream, so an early close in httpx drains, resets or closes exactly as the
  lifecycle table says;
- errors: every httpstream error, at request time or while the body is read, is
  raised as the matching httpx exception, ours chained as its cause.

httpx is optional: ``import httpstream`` does not import it, and this class can
be imported without it (it fails only when built, with an ImportError that says
what to install).  So nothing here subclasses httpx when the module is loaded:
``HTTPXTransport`` implements httpx's transport protocol by its methods (httpx
calls them and never checks the class; type checkers see it as an
``httpx.AsyncBaseTransport`` subclass), and the one class httpx does check with
``isinstance``, the response stream, is created on first use.

A pool passed in belongs to the caller (it may be shared with an
``httpstream.AsyncClient``) and is left open by ``aclose()``; a pool the adapter
made from ``**pool_kwargs`` is closed with it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._config import Timeout
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    HTTPStreamError,
    InvalidURL,
    LocalProtocolError,
    PoolTimeout,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TimeoutException,
    WriteError,
    WriteTimeout,
)
from ._models import Request, Response
from ._pool import ConnectionPool
from ._streams import ByteStream, ResponseStream

if TYPE_CHECKING:
    import httpx
    from httpx import AsyncBaseTransport as _TransportBase
else:
    _TransportBase = object

__all__ = ["HTTPXTransport"]


class HTTPXTransport(_TransportBase):
    """An httpx transport that sends through an httpstream ``ConnectionPool``.

    ``HTTPXTransport(http2=True, verify="ca.pem")`` makes (and owns) a pool with
    those options; ``HTTPXTransport(pool)`` uses an existing one.
    """

    def __init__(self, pool: ConnectionPool | None = None, **pool_kwargs: Any) -> None:
        _bridge()  # no httpx: fail here, with an ImportError that says what to do
        if pool is not None and pool_kwargs:
            raise TypeError("pass either a ConnectionPool or options for a new one, not both")
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else ConnectionPool(**pool_kwargs)

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    async def __aenter__(self) -> HTTPXTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_pool:
            await self._pool.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        bridge = _bridge()
        import httpx

        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r} in {url}", request=request)
        try:
            ours = Request(
                request.method,
                str(url),
                headers=request.headers.raw,
                content=_content(request),
                timeout=self._timeout(request.extensions.get("timeout")),
            )
            response = await self._pool.handle_request(ours)
        except HTTPStreamError as exc:
            raise bridge.error(exc, request) from exc
        extensions: dict[str, object] = {
            "http_version": response.http_version.encode("ascii"),
            "reason_phrase": response.reason_phrase.encode("latin-1", "replace"),
        }
        network_stream = response.extensions.get("network_stream")
        if network_stream is not None:
            # An Upgrade (101) or CONNECT (2xx): httpcore's extension, which
            # httpx-ws and other httpx tools read; our stream has its methods.
            extensions["network_stream"] = network_stream
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=bridge.body(response, request),
            extensions=extensions,
            request=request,
        )

    def _timeout(self, value: object) -> Timeout:
        """httpx's per-request timeouts over the pool's (which keeps ``total`` and ``expect``)."""
        base = self._pool.timeout
        if not isinstance(value, dict):
            return base
        return dataclasses.replace(
            base,
            connect=value.get("connect", base.connect),
            read=value.get("read", base.read),
            write=value.get("write", base.write),
            pool=value.get("pool", base.pool),
        )


def _content(request: httpx.Request) -> bytes | AsyncIterable[bytes] | None:
    import httpx

    try:
        body = request.content
    except httpx.RequestNotRead:
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise LocalProtocolError("the request body is a sync stream; an async transport needs an async one")
        return stream
    return body or None


class _Bridge:
    """The httpx-dependent pieces, made once on first use."""

    def __init__(self) -> None:
        import httpx

        # Most specific first: timeouts are TransportErrors too, ProxyError and
        # ConnectError are siblings, StaleConnection / IncompleteBody are
        # RemoteProtocolErrors.  InvalidURL here means httpx and we parsed the URL
        # differently: the request cannot be sent as given.
        self.errors: tuple[tuple[type[HTTPStreamError], type[httpx.TransportError]], ...] = (
            (ConnectTimeout, httpx.ConnectTimeout),
            (ReadTimeout, httpx.ReadTimeout),
            (WriteTimeout, httpx.WriteTimeout),
            (PoolTimeout, httpx.PoolTimeout),
            (TimeoutException, httpx.TimeoutException),
            (ProxyError, httpx.ProxyError),
            (ConnectError, httpx.ConnectError),
            (ReadError, httpx.ReadError),
            (WriteError, httpx.WriteError),
            (RemoteProtocolError, httpx.RemoteProtocolError),
            (LocalProtocolError, httpx.LocalProtocolError),
            (InvalidURL, httpx.LocalProtocolError),
        )
        self.fallback: type[httpx.TransportError] = httpx.TransportError
        self.body = _body_class(self)

    def error(self, exc: HTTPStreamError, request: httpx.Request) -> httpx.TransportError:
        """The httpx exception for ``exc`` (any other HTTPStreamError: ``httpx.TransportError``)."""
        kind = next((theirs for ours, theirs in self.errors if isinstance(exc, ours)), self.fallback)
        return kind(str(exc) or type(exc).__name__, request=request)


def _body_class(bridge: _Bridge) -> Callable[[Response, httpx.Request], httpx.AsyncByteStream]:
    import httpx

    class HTTPStreamBody(httpx.AsyncByteStream):
        """Our raw response body as httpx's ``AsyncByteStream`` (httpx checks the class)."""

        def __init__(self, response: Response, request: httpx.Request) -> None:
            self._stream: ResponseStream | ByteStream = response.stream
            self._request = request

        def __aiter__(self) -> HTTPStreamBody:
            return self

        async def __anext__(self) -> bytes:
            try:
                return await self._stream.__anext__()
            except HTTPStreamError as exc:
                raise bridge.error(exc, self._request) from exc

        async def aclose(self) -> None:
            await self._stream.aclose()

    return HTTPStreamBody


@functools.cache
def _bridge() -> _Bridge:
    try:
        return _Bridge()
    except ImportError as exc:
        raise ImportError("HTTPXTransport needs httpx: pip install 'httpstream[httpx]'") from exc
