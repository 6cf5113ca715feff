"""httpstream: a pure-asyncio HTTP client and transport stack built for streaming."""

from ._api import delete, get, head, options, patch, post, put, request, stream
from ._auth import Auth, BasicAuth, BearerAuth, DigestAuth, FunctionAuth
from ._client import USE_CLIENT_DEFAULT, AsyncClient, AsyncTransport, StreamContext
from ._config import Limits, Timeout
from ._cookies import Cookies
from ._eventsource import EventSource
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    CookieConflict,
    DecodingError,
    HTTPStatusError,
    HTTPStreamError,
    IncompleteBody,
    InsecureRedirect,
    InvalidURL,
    LocalProtocolError,
    PoolClosed,
    PoolTimeout,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    ResponseNotRead,
    StaleConnection,
    StreamClosed,
    StreamConsumed,
    StreamError,
    TimeoutException,
    TooManyRedirects,
    TotalTimeout,
    TransportError,
    WriteError,
    WriteTimeout,
)
from ._headers import Headers
from ._httpx import HTTPXTransport
from ._models import Request, Response
from ._network import NetworkStream
from ._pool import ConnectionPool, PoolStats
from ._proxy import Proxy
from ._retry import Retry
from ._sse import ServerSentEvent
from ._streams import ResponseStream, Upload
from ._urls import URL, Origin
from ._version import __version__

__all__ = [
    "URL",
    "USE_CLIENT_DEFAULT",
    "AsyncClient",
    "AsyncTransport",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionPool",
    "Cookies",
    "CookieConflict",
    "DecodingError",
    "DigestAuth",
    "EventSource",
    "FunctionAuth",
    "HTTPStatusError",
    "HTTPStreamError",
    "HTTPXTransport",
    "IncompleteBody",
    "Headers",
    "InsecureRedirect",
    "InvalidURL",
    "Limits",
    "LocalProtocolError",
    "Origin",
    "PoolClosed",
    "PoolStats",
    "PoolTimeout",
    "Proxy",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Request",
    "Response",
    "ResponseNotRead",
    "Retry",
    "ServerSentEvent",
    "ResponseStream",
    "NetworkStream",
    "Upload",
    "StaleConnection",
    "StreamClosed",
    "StreamConsumed",
    "StreamContext",
    "StreamError",
    "Timeout",
    "TimeoutException",
    "TooManyRedirects",
    "TotalTimeout",
    "TransportError",
    "WriteError",
    "WriteTimeout",
    "__version__",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
    "stream",
]
