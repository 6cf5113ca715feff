"""Module-level helpers: one request with a throwaway client."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._client import AsyncClient, URLTypes
from ._models import Response

__all__ = ["delete", "get", "head", "options", "patch", "post", "put", "request", "stream"]

_CLIENT_OPTIONS = (
    "verify",
    "cert",
    "http1",
    "http2",
    "http3",
    "limits",
    "proxy",
    "trust_env",
    "retry",
    "max_redirects",
    "allow_insecure_redirects",
)


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: kwargs.pop(name) for name in _CLIENT_OPTIONS if name in kwargs}


async def request(method: str, url: URLTypes, **kwargs: Any) -> Response:
    """``await httpstream.request("GET", url)``: the body is read before returning."""
    client_options = _split(kwargs)
    async with AsyncClient(**client_options) as client:
        return await client.request(method, url, **kwargs)


async def get(url: URLTypes, **kwargs: Any) -> Response:
    return await request("GET", url, **kwargs)


async def head(url: URLTypes, **kwargs: Any) -> Response:
    return await request("HEAD", url, **kwargs)


async def options(url: URLTypes, **kwargs: Any) -> Response:
    return await request("OPTIONS", url, **kwargs)


async def delete(url: URLTypes, **kwargs: Any) -> Response:
    return await request("DELETE", url, **kwargs)


async def post(url: URLTypes, **kwargs: Any) -> Response:
    return await request("POST", url, **kwargs)


async def put(url: URLTypes, **kwargs: Any) -> Response:
    return await request("PUT", url, **kwargs)


async def patch(url: URLTypes, **kwargs: Any) -> Response:
    return await request("PATCH", url, **kwargs)


class stream:  # noqa: N801 - reads as a function: ``async with httpstream.stream(...)``
    """``async with httpstream.stream("GET", url) as response:`` with a throwaway client."""

    def __init__(self, method: str, url: URLTypes, **kwargs: Any) -> None:
        self._client = AsyncClient(**_split(kwargs))
        self._context = self._client.stream(method, url, **kwargs)

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
