"""The one exception hierarchy of httpstream.

Every error a caller can see is one of these; errors raised by h11, h2, aioquic
or ssl are converted at the single place the library is called and chained with
``raise ... from exc`` so the cause stays visible.

    HTTPStreamError
    ├── TransportError                 something went wrong moving bytes
    │   ├── ConnectError               DNS, TCP or TLS set-up failed
    │   ├── ReadError                  the socket failed while reading
    │   ├── WriteError                 the socket failed while writing
    │   ├── RemoteProtocolError        the peer broke HTTP (or hung up mid-message)
    │   │   ├── StaleConnection        a reused connection was dead before any answer
    │   │   └── IncompleteBody         the body ended short: received / expected bytes
    │   ├── LocalProtocolError         the request cannot be sent as given
    │   ├── ProxyError                 the proxy refused or broke the tunnel
    │   ├── PoolClosed                 the pool was closed
    │   └── TimeoutException           a deadline passed
    │       ├── ConnectTimeout
    │       ├── ReadTimeout
    │       ├── WriteTimeout
    │       ├── PoolTimeout
    │       └── TotalTimeout           Timeout(total=...): the whole request's deadline
    ├── DecodingError                  a body could not be decoded (text, lines, JSON)
    ├── HTTPStatusError                from ``Response.raise_for_status()``
    ├── StreamError
    │   ├── StreamConsumed             the body was already read
    │   ├── StreamClosed               the body was closed before it was read
    │   └── ResponseNotRead            ``.content`` / ``.text`` / ``.json()`` before ``aread()``
    ├── TooManyRedirects
    ├── InsecureRedirect               an https -> http redirect nobody allowed
    ├── CookieConflict                 ``cookies[name]`` matched cookies of several domains
    └── InvalidURL

``TimeoutException`` sits under ``TransportError`` (as in httpx) because a timeout
is a failure to move bytes in time: code that retries transport failures should
retry timeouts too, and users migrating from httpx keep their ``except`` clauses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Request, Response

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "CookieConflict",
    "DecodingError",
    "HTTPStatusError",
    "HTTPStreamError",
    "IncompleteBody",
    "InvalidURL",
    "LocalProtocolError",
    "PoolClosed",
    "PoolTimeout",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ResponseNotRead",
    "StaleConnection",
    "StreamClosed",
    "StreamConsumed",
    "StreamError",
    "TimeoutException",
    "TooManyRedirects",
    "TotalTimeout",
    "InsecureRedirect",
    "TransportError",
    "WriteError",
    "WriteTimeout",
]


class HTTPStreamError(Exception):
    """Root of every exception httpstream raises on purpose."""


class TransportError(HTTPStreamError):
    """Bytes could not be moved to or from the peer."""


class ConnectError(TransportError):
    """The connection (DNS, TCP or TLS) could not be established."""


class ReadError(TransportError):
    """The socket failed while reading."""


class WriteError(TransportError):
    """The socket failed while writing."""


class RemoteProtocolError(TransportError):
    """The peer violated the protocol or closed the connection mid-message.

    ``error_code`` carries the wire error code when the protocol has one
    (HTTP/2 RST_STREAM / GOAWAY, HTTP/3 stream and connection errors).
    """

    def __init__(self, message: str, *, error_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class StaleConnection(RemoteProtocolError):
    """A reused keep-alive connection was closed by the server before it answered.

    The pool retries such a request once on a new connection when it is safe
    (idempotent method, replayable body); otherwise this is what the caller sees.
    """


class IncompleteBody(RemoteProtocolError):
    """The body ended (connection closed, stream ended or reset) before it was complete.

    Raised after every byte that did arrive was handed to the caller.
    ``received`` is the count of body bytes that arrived; ``expected`` the count
    the message promised (Content-Length), or None when the framing (chunked,
    close-delimited) gave no count.
    """

    def __init__(self, message: str, *, received: int, expected: int | None, error_code: int | None = None) -> None:
        super().__init__(message, error_code=error_code)
        self.received = received
        self.expected = expected


class LocalProtocolError(TransportError):
    """The request, as given by the caller, cannot be sent."""


class ProxyError(TransportError):
    """The proxy refused or failed the tunnel (CONNECT, SOCKS5) or its handshake."""


class PoolClosed(TransportError):
    """A request was made through a pool that has been closed."""


class TimeoutException(TransportError):
    """A deadline passed."""


class ConnectTimeout(TimeoutException):
    """Connecting (including TLS) took longer than ``Timeout.connect``."""


class ReadTimeout(TimeoutException):
    """No data arrived within ``Timeout.read``."""


class WriteTimeout(TimeoutException):
    """The peer did not accept data within ``Timeout.write``."""


class TotalTimeout(TimeoutException):
    """The request's overall deadline (``Timeout(total=...)``) passed."""


class PoolTimeout(TimeoutException):
    """No connection became free within ``Timeout.pool``."""


class DecodingError(HTTPStreamError):
    """A body could not be decoded as asked (text, lines, JSON, SSE)."""


class HTTPStatusError(HTTPStreamError):
    """Raised by ``Response.raise_for_status()`` for 4xx and 5xx responses."""

    def __init__(self, message: str, *, request: Request, response: Response) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


class StreamError(HTTPStreamError):
    """A body was used in a way its state does not allow."""


class StreamConsumed(StreamError):
    """The body was already read to the end; it cannot be read twice."""

    def __init__(self) -> None:
        super().__init__(
            "the response body was already consumed; read it once "
            "(or call aread() first and use .content)"
        )


class StreamClosed(StreamError):
    """The body was closed before it was read."""

    def __init__(self, message: str = "the response body was closed before it was read") -> None:
        super().__init__(message)


class ResponseNotRead(StreamError):
    """``content``, ``text`` or ``json()`` was used on a streamed response before ``aread()``.

    httpx's name, so ``except httpx.ResponseNotRead`` carries over.
    """

    def __init__(
        self,
        message: str = (
            "the response body was not read yet: call 'await response.aread()' first "
            "(or use client.get() / client.request(), which read it before returning)"
        ),
    ) -> None:
        super().__init__(message)


class TooManyRedirects(HTTPStreamError):
    """More redirects than ``max_redirects`` were followed."""


class InsecureRedirect(HTTPStreamError):
    """A redirect from https to http was refused (``allow_insecure_redirects=False``)."""


class CookieConflict(HTTPStreamError, ValueError):
    """A cookie name was looked up without domain/path and several cookies match."""


class InvalidURL(HTTPStreamError):
    """A URL could not be parsed, or its host is not valid (IDNA/UTS46)."""
