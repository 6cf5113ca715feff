"""AsyncClient: the user-facing API on top of a transport (the pool by default).

``client.stream()`` and ``client.request()`` run one pipeline, ``_send``: build
the request, send it through the transport, follow redirects; the only
difference is that ``request()`` reads the body before returning and
``stream()`` hands the response over at its head.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterable
from types import TracebackType
from typing import Any, Protocol, Union

from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    CertTypes,
    Limits,
    TimeoutTypes,
    VerifyTypes,
    to_timeout,
)
from ._exceptions import LocalProtocolError, RemoteProtocolError, TooManyRedirects
from ._headers import Headers, HeaderTypes
from ._models import Request, RequestContent, Response
from ._pool import ConnectionPool
from ._urls import URL, QueryParamTypes

__all__ = ["AsyncClient", "AsyncTransport", "USE_CLIENT_DEFAULT", "StreamContext"]

__version__ = "0.1.0"
USER_AGENT = f"httpstream/{__version__}"


class _UseClientDefault:
    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Any = _UseClientDefault()


class AsyncTransport(Protocol):
    """The transport contract (DESIGN.md): one method, plus closing."""

    async def handle_request(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


URLTypes = Union[str, URL]


class AsyncClient:
    """An HTTP client with a connection pool.

    ``async with AsyncClient() as client:`` closes the pool at the end.
    """

    def __init__(
        self,
        *,
        base_url: URLTypes | None = None,
        headers: HeaderTypes = None,
        params: QueryParamTypes = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
        verify: VerifyTypes = True,
        cert: CertTypes = None,
        http1: bool = True,
        http2: bool = False,
        http3: bool | str = False,
        follow_redirects: bool = False,
        max_redirects: int = 20,
        transport: AsyncTransport | None = None,
    ) -> None:
        self.base_url = URL(base_url) if base_url is not None else None
        if self.base_url is not None and not self.base_url.path.endswith("/"):
            self.base_url.path += "/"
            self.base_url._str = None
        self.headers = Headers({"User-Agent": USER_AGENT, "Accept": "*/*"})
        if headers is not None:
            self.headers.update(headers)
        self.params = params
        self.timeout = to_timeout(timeout)
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._transport: AsyncTransport = transport or ConnectionPool(
            limits=limits, timeout=self.timeout, verify=verify, cert=cert, http1=http1, http2=http2, http3=http3
        )
        self._closed = False

    @property
    def transport(self) -> AsyncTransport:
        return self._transport

    # -- lifecycle ----------------------------------------------------------------
    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._transport.aclose()

    @property
    def is_closed(self) -> bool:
        return self._closed

    # -- building ---------------------------------------------------------------------
    def _merge_url(self, url: URLTypes) -> URL:
        if self.base_url is None:
            return url if isinstance(url, URL) else URL(url)
        text = str(url)
        if self.base_url is not None and not ("://" in text and URL(text).is_absolute):
            return self.base_url.join(text.lstrip("/") if isinstance(url, str) else url)
        return url if isinstance(url, URL) else URL(url)

    def build_request(
        self,
        method: str,
        url: URLTypes,
        *,
        params: QueryParamTypes = None,
        headers: HeaderTypes = None,
        content: RequestContent = None,
        json: Any = None,
        timeout: TimeoutTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> Request:
        target = self._merge_url(url)
        if self.params:
            target = target.copy_merge_params(self.params)
        if params:
            target = target.copy_merge_params(params)
        merged = self.headers  # Request copies it
        if headers is not None:
            merged = merged.copy()
            merged.update(headers)
        if json is not None:
            if content is not None:
                raise LocalProtocolError("pass either content= or json=, not both")
            content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            if not merged.has(b"content-type"):
                merged = merged.copy()
                merged.setdefault_raw(b"Content-Type", b"application/json")
        request_timeout = self.timeout if isinstance(timeout, _UseClientDefault) else to_timeout(timeout)
        return Request(method, target, headers=merged, content=content, timeout=request_timeout)

    # -- sending ------------------------------------------------------------------------
    def stream(
        self,
        method: str,
        url: URLTypes,
        *,
        params: QueryParamTypes = None,
        headers: HeaderTypes = None,
        content: RequestContent = None,
        json: Any = None,
        timeout: TimeoutTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> StreamContext:
        """``async with client.stream(...) as response:`` yields at the response head."""
        request = self.build_request(
            method, url, params=params, headers=headers, content=content, json=json, timeout=timeout
        )
        return StreamContext(self, request, follow_redirects)

    async def send(
        self,
        request: Request,
        *,
        stream: bool = False,
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> Response:
        if self._closed:
            raise RuntimeError("the client was closed; create a new AsyncClient")
        follow = self.follow_redirects if isinstance(follow_redirects, _UseClientDefault) else follow_redirects
        response = await self._send(request, follow)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    async def request(
        self,
        method: str,
        url: URLTypes,
        *,
        params: QueryParamTypes = None,
        headers: HeaderTypes = None,
        content: RequestContent = None,
        json: Any = None,
        timeout: TimeoutTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> Response:
        """Send a request and read the whole body."""
        request = self.build_request(
            method, url, params=params, headers=headers, content=content, json=json, timeout=timeout
        )
        return await self.send(request, follow_redirects=follow_redirects)

    async def get(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("OPTIONS", url, **kwargs)

    async def delete(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("DELETE", url, **kwargs)

    async def post(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: URLTypes, **kwargs: Any) -> Response:
        return await self.request("PATCH", url, **kwargs)

    # -- the pipeline ---------------------------------------------------------------------
    async def _send(self, request: Request, follow: bool) -> Response:
        history: list[Response] = []
        while True:
            response = await self._transport.handle_request(request)
            response.history = list(history)
            if not (follow and response.is_redirect):
                return response
            try:
                if len(history) >= self.max_redirects:
                    raise TooManyRedirects(
                        f"exceeded {self.max_redirects} redirects, last to {response.headers.get('location')}"
                    )
                next_request = self._redirect_request(request, response)
            finally:
                await response.aclose()  # drain rules apply: a small remainder keeps the connection
            history.append(response)
            request = next_request

    def _redirect_request(self, request: Request, response: Response) -> Request:
        location = response.headers["location"]
        try:
            url = request.url.join(location)
        except Exception as exc:
            raise RemoteProtocolError(f"invalid redirect Location {location!r}: {exc}") from exc
        if url.scheme not in ("http", "https"):
            raise RemoteProtocolError(f"redirect to unsupported scheme {url.scheme!r}: {url}")
        if not url.fragment and request.url.fragment:
            url = url.copy_with(fragment=request.url.fragment)
        method = request.method
        status = response.status_code
        content: bytes | AsyncIterable[bytes] | None = request.content
        headers = request.headers.copy()
        # RFC 9110 section 15.4: 303 turns into GET (HEAD stays); 301/302 do so
        # for POST in every browser and client; 307/308 keep method and body.
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
            content = None
            for name in ("content-length", "content-type", "transfer-encoding", "content-encoding"):
                if name in headers:
                    del headers[name]
        elif content is not None and not isinstance(content, bytes):
            raise LocalProtocolError(
                f"cannot follow a {status} redirect: the request body was a stream and "
                "has been sent already (pass bytes to make it replayable)"
            )
        if url.origin != request.url.origin:
            for name in ("authorization", "cookie", "proxy-authorization"):
                if name in headers:
                    del headers[name]
        if "host" in headers:
            del headers["host"]
        return Request(method, url, headers=headers, content=content, timeout=request.timeout)


class StreamContext:
    """What ``client.stream()`` returns: an async context manager over a Response."""

    __slots__ = ("_client", "_request", "_follow", "_response")

    def __init__(
        self, client: AsyncClient, request: Request, follow: bool | _UseClientDefault
    ) -> None:
        self._client = client
        self._request = request
        self._follow = follow
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._client.send(self._request, stream=True, follow_redirects=self._follow)
        return self._response

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            await self._response.aclose()
