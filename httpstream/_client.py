"""AsyncClient: the user-facing API on top of a transport (the pool by default).

One pipeline serves ``client.stream()`` and ``client.request()`` alike; the only
difference is that ``request()`` reads the body before returning and
``stream()`` hands the response over at its head.  From the outside in:

    send                 total deadline, debug-leak origin, download progress
    _send_handling_auth  the auth flow (a generator; Digest answers a 401 once)
    _send_handling_redirects
                         per hop: Cookie header from the jar, request hooks,
                         the transport, Set-Cookie into the jar at the head,
                         response hooks, then the redirect rules
    _send_with_retries   the opt-in Retry policy (statuses, transport errors,
                         Retry-After); below it the pool's own transparent retry
                         of a request that died on a reused connection
"""

from __future__ import annotations

import asyncio
import inspect
import os
import traceback
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, Union
from urllib.parse import unquote

from ._auth import Auth, AuthTypes, BasicAuth, to_auth
from ._codings import accept_encoding
from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    CertTypes,
    Limits,
    Timeout,
    TimeoutTypes,
    VerifyTypes,
    to_timeout,
)
from ._content import encode_request, with_progress
from ._cookies import Cookies, CookieTypes, to_cookies
from ._exceptions import (
    InsecureRedirect,
    LocalProtocolError,
    RemoteProtocolError,
    TooManyRedirects,
    TotalTimeout,
    TransportError,
)
from ._headers import Headers, HeaderTypes
from ._models import Request, RequestContent, Response
from ._pool import ConnectionPool
from ._proxy import ProxyTypes
from ._retry import Retry, parse_retry_after
from ._streams import BodyBuffer, ResponseStream
from ._urls import URL, QueryParamTypes
from ._version import __version__

__all__ = ["AsyncClient", "AsyncTransport", "USE_CLIENT_DEFAULT", "StreamContext", "EventHook", "ProgressCallback"]

USER_AGENT = f"httpstream/{__version__}"
_PACKAGE_DIR = str(Path(__file__).parent)


class _UseClientDefault:
    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Any = _UseClientDefault()


class AsyncTransport(Protocol):
    """The transport contract (DESIGN.md): one method, plus closing."""

    async def handle_request(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


URLTypes = Union[str, URL]
EventHook = Callable[[Any], Union[Awaitable[None], None]]
ProgressCallback = Callable[[int, Union[int, None]], None]
"""Called as ``callback(bytes_so_far, total_or_None)``."""


_P = ParamSpec("_P")
_Self = TypeVar("_Self")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., object])


def verb(
    method: str, request: Callable[Concatenate[_Self, str, _P], Coroutine[Any, Any, _R]]
) -> Callable[Concatenate[_Self, _P], Coroutine[Any, Any, _R]]:
    """The method ``request(self, method, url, ...)`` with its method filled in.

    The result keeps the parameters: type checkers see them through the
    ParamSpec (a wrong keyword is an error), ``inspect.signature`` and
    ``help()`` through ``__signature__``; nothing is written twice.
    """

    async def call(self: _Self, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await request(self, method, *args, **kwargs)

    return _named_after(call, request, method)


def verb_function(
    method: str, request: Callable[Concatenate[str, _P], Coroutine[Any, Any, _R]]
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """``verb`` for a module-level ``request(method, url, ...)``."""

    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await request(method, *args, **kwargs)

    return _named_after(call, request, method)


def _named_after(call: _F, request: Callable[..., object], method: str) -> _F:
    """``call`` dressed as ``request`` minus its ``method`` parameter."""
    signature = inspect.signature(request)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "method"]
    )
    call.__wrapped__ = request  # type: ignore[attr-defined]  # typing.get_type_hints() finds the namespace
    call.__annotations__ = {k: v for k, v in request.__annotations__.items() if k != "method"}
    call.__name__ = method.lower()
    call.__qualname__ = request.__qualname__.removesuffix(request.__name__) + call.__name__
    call.__module__ = request.__module__
    call.__doc__ = f"Send a {method} request: ``{request.__name__}({method!r}, url, ...)``, the same parameters."
    return call


class AsyncClient:
    """An HTTP client with a connection pool, cookies, auth, redirects and retries.

    ``async with AsyncClient() as client:`` closes the pool at the end.
    ``retry=Retry(...)`` turns on the retry policy (off by default);
    ``event_hooks={"request": [...], "response": [...]}`` run on every hop
    (sync or async callables; response hooks run at the head, before the body);
    ``debug_leaks=True`` (or ``HTTPSTREAM_DEBUG_LEAKS=1``) makes the warning
    about a response dropped unclosed say where it was opened;
    ``allow_insecure_redirects`` lets a redirect go from https to http.
    """

    def __init__(
        self,
        *,
        base_url: URLTypes | None = None,
        headers: HeaderTypes = None,
        params: QueryParamTypes = None,
        cookies: CookieTypes = None,
        auth: AuthTypes = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
        verify: VerifyTypes = True,
        cert: CertTypes = None,
        http1: bool = True,
        http2: bool = False,
        http3: bool | str = False,
        proxy: ProxyTypes = None,
        trust_env: bool = True,
        follow_redirects: bool = False,
        max_redirects: int = 20,
        allow_insecure_redirects: bool = False,
        retry: Retry | None = None,
        event_hooks: Mapping[str, Iterable[EventHook]] | None = None,
        debug_leaks: bool | None = None,
        transport: AsyncTransport | None = None,
    ) -> None:
        self.base_url = URL(base_url) if base_url is not None else None
        if self.base_url is not None and not self.base_url.path.endswith("/"):
            self.base_url.path += "/"
            self.base_url._str = None
        self.headers = Headers({"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": accept_encoding()})
        if headers is not None:
            self.headers.update(headers)
        self.params = params
        self._cookies = to_cookies(cookies)
        self.auth: Auth | None = to_auth(auth)
        self.timeout = to_timeout(timeout)
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.allow_insecure_redirects = allow_insecure_redirects
        self.retry = retry
        self.event_hooks: dict[str, list[EventHook]] = {"request": [], "response": []}
        for name, hooks in (event_hooks or {}).items():
            if name not in self.event_hooks:
                raise ValueError(f"unknown event hook {name!r}: use 'request' or 'response'")
            self.event_hooks[name] = list(hooks)
        if debug_leaks is None:
            debug_leaks = os.environ.get("HTTPSTREAM_DEBUG_LEAKS", "") not in ("", "0")
        self.debug_leaks = debug_leaks
        self._transport: AsyncTransport = transport or ConnectionPool(
            limits=limits,
            timeout=self.timeout,
            verify=verify,
            cert=cert,
            http1=http1,
            http2=http2,
            http3=http3,
            proxy=proxy,
            trust_env=trust_env,
        )
        # For the repr only: the pool holds the real choice.
        self._protocols = None if transport is not None else (http1, http2, http3)
        self._closed = False

    def __repr__(self) -> str:
        base = None if self.base_url is None else str(self.base_url)
        if self._protocols is None:
            how = f"transport={type(self._transport).__name__}"
        else:
            http1, http2, http3 = self._protocols
            how = f"http1={http1} http2={http2} http3={http3!r}"
        return f"<AsyncClient base_url={base!r} {how} closed={self._closed}>"

    @property
    def transport(self) -> AsyncTransport:
        return self._transport

    @property
    def cookies(self) -> Cookies:
        """The cookie jar: filled from every Set-Cookie, sent where it matches."""
        return self._cookies

    @cookies.setter
    def cookies(self, value: CookieTypes) -> None:
        self._cookies = to_cookies(value)

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
        if not ("://" in text and URL(text).is_absolute):
            return self.base_url.join(text.lstrip("/") if isinstance(url, str) else url)
        return url if isinstance(url, URL) else URL(url)

    def build_request(
        self,
        method: str,
        url: URLTypes,
        *,
        params: QueryParamTypes = None,
        headers: HeaderTypes = None,
        cookies: CookieTypes = None,
        content: RequestContent = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        timeout: TimeoutTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        trailers: HeaderTypes = None,
        extensions: dict[str, object] | None = None,
    ) -> Request:
        """A Request with the client's defaults merged in (not sent).

        ``extensions`` go to the transport as they are (``"on_informational"``,
        ``"protocol"``: see ``Request``); ``trailers`` follow the body.
        """
        target = self._merge_url(url)
        if self.params:
            target = target.copy_merge_params(self.params)
        if params:
            target = target.copy_merge_params(params)
        body_headers, body = encode_request(content=content, data=data, files=files, json=json)
        merged = self.headers  # Request copies it; merge into a copy only when there is something to merge
        if headers is not None or body_headers:
            merged = merged.copy()
            if headers is not None:
                merged.update(headers)
            for name, value in body_headers:
                merged.setdefault_raw(name, value)
        if on_upload_progress is not None and body is not None:
            body = with_progress(body, on_upload_progress)
        request_timeout = self.timeout if isinstance(timeout, _UseClientDefault) else to_timeout(timeout)
        request = Request(
            method,
            target,
            headers=merged,
            content=body,
            timeout=request_timeout,
            trailers=trailers,
            extensions=extensions,
        )
        if cookies is not None:
            # Request cookies go with this request only, next to the jar's.
            once = Cookies()
            for cookie in self._cookies.jar:
                once.jar.set_cookie(cookie)
            once.update(to_cookies(cookies))
            once.set_cookie_header(request)
        if on_download_progress is not None:
            request.extensions["on_download_progress"] = on_download_progress
        return request

    # -- sending ------------------------------------------------------------------------
    def stream(
        self,
        method: str,
        url: URLTypes,
        *,
        params: QueryParamTypes = None,
        headers: HeaderTypes = None,
        cookies: CookieTypes = None,
        content: RequestContent = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        auth: AuthTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        timeout: TimeoutTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        trailers: HeaderTypes = None,
        extensions: dict[str, object] | None = None,
    ) -> StreamContext:
        """``async with client.stream(...) as response:`` yields at the response head."""
        request = self.build_request(
            method,
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            content=content,
            data=data,
            files=files,
            json=json,
            timeout=timeout,
            on_upload_progress=on_upload_progress,
            on_download_progress=on_download_progress,
            trailers=trailers,
            extensions=extensions,
        )
        return StreamContext(self, request, auth, follow_redirects)

    async def send(
        self,
        request: Request,
        *,
        stream: bool = False,
        auth: AuthTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> Response:
        """Send a built request through the whole pipeline.

        With ``stream=True`` the response comes back at its head and the caller
        must close it; otherwise its body is read (and the stream released) first.
        """
        if self._closed:
            raise RuntimeError("the client was closed; create a new AsyncClient")
        follow = self.follow_redirects if isinstance(follow_redirects, _UseClientDefault) else follow_redirects
        flow_auth = self.auth if isinstance(auth, _UseClientDefault) else to_auth(auth)
        if flow_auth is None and request.url.userinfo:
            user, _, password = request.url.userinfo.partition(":")
            flow_auth = BasicAuth(unquote(user), unquote(password))
        timeout = request.timeout or self.timeout
        if timeout.total is None:
            if flow_auth is None:  # one coroutine layer less on the common path
                response = await self._send_handling_redirects(request, follow, [])
            else:
                response = await self._send_handling_auth(request, flow_auth, follow)
        else:
            response = await self._send_within_total(request, flow_auth, follow, timeout)
        if self.debug_leaks and isinstance(response.stream, ResponseStream):
            response.stream.opened_at = _caller_stack()
        progress = response.request.extensions.get("on_download_progress")
        if progress is not None:
            response.on_download = progress  # type: ignore[assignment]
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
        cookies: CookieTypes = None,
        content: RequestContent = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        auth: AuthTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        timeout: TimeoutTypes | _UseClientDefault = USE_CLIENT_DEFAULT,
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        trailers: HeaderTypes = None,
        extensions: dict[str, object] | None = None,
    ) -> Response:
        """Send a request and read the whole body."""
        request = self.build_request(
            method,
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            content=content,
            data=data,
            files=files,
            json=json,
            timeout=timeout,
            on_upload_progress=on_upload_progress,
            on_download_progress=on_download_progress,
            trailers=trailers,
            extensions=extensions,
        )
        return await self.send(request, auth=auth, follow_redirects=follow_redirects)

    # The verbs are ``request`` with the method filled in: same parameters, for
    # editors, mypy and ``help()`` alike, written once (see ``verb``).
    get = verb("GET", request)
    head = verb("HEAD", request)
    options = verb("OPTIONS", request)
    delete = verb("DELETE", request)
    post = verb("POST", request)
    put = verb("PUT", request)
    patch = verb("PATCH", request)

    # -- the pipeline ---------------------------------------------------------------------
    async def _send_within_total(self, request: Request, auth: Auth | None, follow: bool, timeout: Timeout) -> Response:
        """The pipeline under ``Timeout.total``: the head phase by a cancelling
        deadline, the body by a timer that fails the body buffer (so the read
        path releases the stream as on any read error)."""
        assert timeout.total is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._send_handling_auth(request, auth, follow)
        except TimeoutError:
            if loop.time() >= deadline:
                raise TotalTimeout(
                    f"{request.method} {request.url} did not complete within {timeout.total:g} s (total timeout)"
                ) from None
            raise
        if isinstance(response.stream, ResponseStream):
            loop.call_at(deadline, _expire_total, response.stream.buffer, timeout)
        return response

    async def _send_handling_auth(self, request: Request, auth: Auth | None, follow: bool) -> Response:
        if auth is None:
            return await self._send_handling_redirects(request, follow, [])
        flow = auth.auth_flow(request)
        history: list[Response] = []
        try:
            request = next(flow)
            while True:
                response = await self._send_handling_redirects(request, follow, history)
                try:
                    if auth.requires_response_body:
                        await response.aread()
                    try:
                        next_request = flow.send(response)
                    except StopIteration:
                        return response
                except BaseException:
                    await response.aclose()
                    raise
                await response.aclose()  # the 401's small body is drained; the connection stays
                history = [*response.history, response]
                if next_request.extensions.pop("jar_cookie", False) and "cookie" in next_request.headers:
                    del next_request.headers["cookie"]  # the jar may hold a cookie the 401 just set
                request = next_request
        finally:
            flow.close()

    async def _send_handling_redirects(self, request: Request, follow: bool, history: list[Response]) -> Response:
        history = list(history)
        while True:
            cookies = self._cookies
            if cookies.maybe_filled and not request.headers.has(b"cookie"):
                cookies.set_cookie_header(request)
                if request.headers.has(b"cookie"):
                    request.extensions["jar_cookie"] = True
            for hook in self.event_hooks["request"]:
                await _call(hook, request)
            if self.retry is None:
                response = await self._transport.handle_request(request)
            else:
                response = await self._send_with_retries(request, self.retry)
            try:
                # Set-Cookie is honoured at the head, streamed or not, on every hop.
                self._cookies.extract_cookies(response)
                if history:
                    response.history = list(history)
                for hook in self.event_hooks["response"]:
                    await _call(hook, response)
                if not (follow and response.is_redirect):
                    return response
                if len(history) >= self.max_redirects:
                    raise TooManyRedirects(
                        f"exceeded max_redirects={self.max_redirects} (next hop: {response.headers.get('location')}); "
                        "raise AsyncClient(max_redirects=...) if the chain is legitimate"
                    )
                next_request = self._redirect_request(request, response)
            except BaseException:
                await response.aclose()
                raise
            await response.aclose()  # drain rules apply: a small remainder keeps the connection
            history.append(response)
            request = next_request

    async def _send_with_retries(self, request: Request, retry: Retry) -> Response:
        attempt = 0
        while True:
            may_retry = attempt < retry.total and retry.allows(request.method) and request.is_replayable
            try:
                response = await self._transport.handle_request(request)
            except LocalProtocolError:
                raise
            except TransportError:
                if not (may_retry and retry.transport_errors):
                    raise
                attempt += 1
                await asyncio.sleep(retry.backoff(attempt))
                continue
            if not (may_retry and response.status_code in retry.statuses):
                return response
            delay = None
            if retry.respect_retry_after:
                delay = parse_retry_after(response.headers.get("retry-after"))
                if delay is not None and delay > retry.max_retry_after:
                    return response  # the server wants a longer pause than the policy allows
            attempt += 1
            if delay is None:
                delay = retry.backoff(attempt)
            await response.aclose()
            await asyncio.sleep(delay)

    def _redirect_request(self, request: Request, response: Response) -> Request:
        location = response.headers["location"]
        try:
            url = request.url.join(location)
        except Exception as exc:
            raise RemoteProtocolError(f"invalid redirect Location {location!r}: {exc}") from exc
        if url.scheme not in ("http", "https"):
            raise RemoteProtocolError(f"redirect to unsupported scheme {url.scheme!r}: {url}")
        if request.url.scheme == "https" and url.scheme == "http" and not self.allow_insecure_redirects:
            raise InsecureRedirect(
                f"refused a redirect from {request.url} to {url}: it drops TLS "
                "(pass allow_insecure_redirects=True to follow it)"
            )
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
        elif not request.is_replayable:
            raise LocalProtocolError(
                f"cannot follow a {status} redirect: the request body was a stream and "
                "has been sent already (pass bytes to make it replayable)"
            )
        names = ["cookie", "proxy-authorization", "host"]  # the jar sets Cookie again for the new URL
        if url.origin != request.url.origin:
            names.append("authorization")
        for name in names:
            if name in headers:
                del headers[name]
        # The caller's extensions (progress, the 1xx hook) go with every hop;
        # the client's own bookkeeping ("jar_cookie") does not.
        extensions = {k: v for k, v in request.extensions.items() if k != "jar_cookie"} if request.extensions else None
        trailers = request.trailers if content is not None else None  # a replayed body keeps its trailers
        return Request(
            method,
            url,
            headers=headers,
            content=content,
            timeout=request.timeout,
            trailers=trailers,
            extensions=extensions,
        )


async def _call(hook: EventHook, arg: Any) -> None:
    result = hook(arg)
    if inspect.isawaitable(result):
        await result


def _expire_total(buffer: BodyBuffer, timeout: Timeout) -> None:
    buffer.feed_error(TotalTimeout(f"the body did not arrive within {timeout.total:g} s (total timeout)"))


def _caller_stack() -> str:
    """The caller's frames (ours left out), for the leak warning."""
    frames = [frame for frame in traceback.extract_stack()[:-1] if not frame.filename.startswith(_PACKAGE_DIR)]
    return "".join(traceback.format_list(frames[-8:]))


class StreamContext:
    """What ``client.stream()`` returns: an async context manager over a Response."""

    __slots__ = ("_client", "_request", "_auth", "_follow", "_response")

    def __init__(
        self,
        client: AsyncClient,
        request: Request,
        auth: AuthTypes | _UseClientDefault,
        follow: bool | _UseClientDefault,
    ) -> None:
        self._client = client
        self._request = request
        self._auth = auth
        self._follow = follow
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._client.send(
            self._request, stream=True, auth=self._auth, follow_redirects=self._follow
        )
        return self._response

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            await self._response.aclose()
