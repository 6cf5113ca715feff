"""The flow an addon sees: ``HTTPFlow``, ``Request``, ``Response``, ``Headers`` (mitmproxy's names).

An addon written for mitmproxy imports these as ``from mitmproxy import http``;
``from httpstream.proxy import http`` gives the same names, so a script can try
one and fall back to the other.  Only the part of mitmproxy's API that the
streaming use needs is here: the attributes the hooks read and write.

``content`` is None while a body has not been read (in the ``*headers`` hooks)
and after a streamed body (unless ``store_streamed_bodies`` keeps a bounded
prefix, with ``truncated`` set when the body was longer).  ``stream`` is what
an addon sets in ``requestheaders`` / ``responseheaders``: ``True``, a per-chunk
callable (called once more with ``b""`` to flush) or a generator function over
the chunk iterator; ``_relay`` reads it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import ItemsView, Iterable
from typing import Any

from .._headers import Headers as _Headers
from .._headers import HeaderTypes

__all__ = ["HTTPFlow", "Headers", "Request", "Response", "StreamSetting"]

StreamSetting = Any  # bool | per-chunk callable | generator function (sync or async)

_ids = itertools.count(1)


class Headers(_Headers):
    """Case-insensitive, ordered, repeats kept: ``h["a"]`` joins repeats with ", "."""

    __slots__ = ()

    def get_all(self, name: str) -> list[str]:
        return self.get_list(name)

    def set_all(self, name: str, values: Iterable[str]) -> None:
        if name in self:
            del self[name]
        for value in values:
            self.add(name, value)

    def items(self, multi: bool = False) -> ItemsView[str, str] | list[tuple[str, str]]:  # type: ignore[override]
        if multi:
            return self.multi_items()
        return super().items()


def _headers(value: HeaderTypes) -> Headers:
    if isinstance(value, _Headers):
        headers = Headers()
        headers.extend_raw(value.raw)
        return headers
    return Headers(value)


class _Message:
    headers: Headers
    content: bytes | None
    stream: StreamSetting
    http_version: str
    truncated: bool

    @property
    def raw_content(self) -> bytes | None:
        return self.content

    @property
    def text(self) -> str | None:
        content = self.content
        return None if content is None else content.decode(self._charset(), "replace")

    @text.setter
    def text(self, value: str) -> None:
        self.set_text(value)

    def set_text(self, value: str) -> None:
        self.set_content(value.encode(self._charset()))

    def get_text(self) -> str | None:
        return self.text

    def set_content(self, value: bytes | None) -> None:
        self.content = value
        if value is not None and "content-length" in self.headers:
            self.headers["content-length"] = str(len(value))

    def get_content(self) -> bytes | None:
        return self.content

    def _charset(self) -> str:
        ctype = self.headers.get("content-type", "")
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"


class Request(_Message):
    """The request as the proxy will send it upstream; addons may change any field."""

    def __init__(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        path: str,
        http_version: str = "HTTP/1.1",
        headers: HeaderTypes = None,
        content: bytes | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.http_version = http_version
        self.headers = _headers(headers)
        self.content = content
        self.stream: StreamSetting = False
        self.truncated = False
        self.timestamp_start = time.time()

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}.get(self.scheme)
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"

    @property
    def pretty_host(self) -> str:
        return self.headers.get("host", "").rsplit(":", 1)[0] or self.host

    @property
    def pretty_url(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url})"


class Response(_Message):
    """The response the proxy will send downstream; addons may change any field."""

    def __init__(
        self,
        status_code: int,
        reason: str = "",
        http_version: str = "HTTP/1.1",
        headers: HeaderTypes = None,
        content: bytes | None = None,
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.http_version = http_version
        self.headers = _headers(headers)
        self.content = content
        self.stream: StreamSetting = False
        self.truncated = False
        self.timestamp_start = time.time()

    @classmethod
    def make(
        cls,
        status_code: int = 200,
        content: bytes | str = b"",
        headers: HeaderTypes = None,
    ) -> Response:
        """A response an addon answers with (mitmproxy's ``Response.make``)."""
        body = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        response = cls(status_code, headers=headers, content=body)
        if "content-length" in response.headers or "transfer-encoding" not in response.headers:
            response.headers["content-length"] = str(len(body))
        return response

    def __repr__(self) -> str:
        return f"Response({self.status_code})"


class Error:
    """What went wrong with a flow (``flow.error.msg``)."""

    KILLED_MESSAGE = "Connection killed."

    def __init__(self, msg: str) -> None:
        self.msg = msg
        self.timestamp = time.time()

    def __str__(self) -> str:
        return self.msg

    def __repr__(self) -> str:
        return f"Error({self.msg!r})"


class HTTPFlow:
    """One exchange through the proxy."""

    def __init__(self, request: Request, client_addr: tuple[str, int] = ("", 0)) -> None:
        self.id = f"{next(_ids):08x}"
        self.request = request
        self.response: Response | None = None
        self.error: Error | None = None
        self.metadata: dict[str, Any] = {}
        self.client_conn = client_addr
        self.killed = False
        self.live = True

    def kill(self) -> None:
        """Drop the exchange: the client's connection (or HTTP/2 stream) is reset."""
        self.killed = True
        self.error = Error(Error.KILLED_MESSAGE)

    @property
    def killable(self) -> bool:
        return not self.killed

    def __repr__(self) -> str:
        return f"<HTTPFlow {self.id} {self.request!r} {self.response!r}>"
