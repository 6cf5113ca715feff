"""Module-level helpers: one request with a throwaway client.

``request`` takes what ``AsyncClient.request`` takes plus the client options
that matter for one request; the verbs and ``stream`` are ``request`` with the
same parameters (``verb_function`` and ``_parameters_of``), so the list is
written here once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._auth import AuthTypes
from ._client import (
    USE_CLIENT_DEFAULT,
    AsyncClient,
    ProgressCallback,
    StreamContext,
    URLTypes,
    _UseClientDefault,
    verb_function,
)
from ._config import DEFAULT_LIMITS, CertTypes, Limits, TimeoutTypes, VerifyTypes
from ._cookies import CookieTypes
from ._headers import HeaderTypes
from ._models import RequestContent, Response
from ._proxy import ProxyTypes
from ._retry import Retry
from ._urls import QueryParamTypes

__all__ = ["delete", "get", "head", "options", "patch", "post", "put", "request", "stream"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _client_and_request(
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
    verify: VerifyTypes = True,
    cert: CertTypes = None,
    http1: bool = True,
    http2: bool = False,
    http3: bool | str = False,
    limits: Limits = DEFAULT_LIMITS,
    proxy: ProxyTypes = None,
    trust_env: bool = True,
    retry: Retry | None = None,
    max_redirects: int = 20,
    allow_insecure_redirects: bool = False,
) -> tuple[AsyncClient, StreamContext]:
    """The one parameter list: a throwaway client and the request it sends."""
    client = AsyncClient(
        verify=verify,
        cert=cert,
        http1=http1,
        http2=http2,
        http3=http3,
        limits=limits,
        proxy=proxy,
        trust_env=trust_env,
        retry=retry,
        max_redirects=max_redirects,
        allow_insecure_redirects=allow_insecure_redirects,
    )
    context = client.stream(
        method,
        url,
        params=params,
        headers=headers,
        cookies=cookies,
        content=content,
        data=data,
        files=files,
        json=json,
        auth=auth,
        timeout=timeout,
        follow_redirects=follow_redirects,
        on_upload_progress=on_upload_progress,
        on_download_progress=on_download_progress,
        trailers=trailers,
        extensions=extensions,
    )
    return client, context


def _parameters_of(source: Callable[_P, object]) -> Callable[[Callable[..., _R]], Callable[_P, _R]]:
    """Give the decorated function ``source``'s parameters (types and signature)."""

    def apply(target: Callable[..., _R]) -> Callable[_P, _R]:
        signature = inspect.signature(source)
        target.__signature__ = signature.replace(  # type: ignore[attr-defined]
            return_annotation=inspect.signature(target).return_annotation
        )
        target.__annotations__ = {**source.__annotations__, "return": target.__annotations__.get("return")}
        return target

    return apply


class _Throwaway:
    """``async with`` one streamed response, then close its client."""

    __slots__ = ("_client", "_context")

    def __init__(self, client: AsyncClient, context: StreamContext) -> None:
        self._client = client
        self._context = context

    async def __aenter__(self) -> Response:
        try:
            return await self._context.__aenter__()
        except BaseException:
            await self._client.aclose()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._context.__aexit__(exc_type, exc, tb)
        finally:
            await self._client.aclose()


@_parameters_of(_client_and_request)
def stream(*args: Any, **kwargs: Any) -> _Throwaway:
    """``async with httpstream.stream("GET", url) as response:`` with a throwaway client."""
    return _Throwaway(*_client_and_request(*args, **kwargs))


@_parameters_of(_client_and_request)
async def request(*args: Any, **kwargs: Any) -> Response:
    """``await httpstream.request("GET", url)``: the body is read before returning."""
    async with stream(*args, **kwargs) as response:
        await response.aread()
    return response


get = verb_function("GET", request)
head = verb_function("HEAD", request)
options = verb_function("OPTIONS", request)
delete = verb_function("DELETE", request)
post = verb_function("POST", request)
put = verb_function("PUT", request)
patch = verb_function("PATCH", request)
