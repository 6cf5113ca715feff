"""The proxy's options: mitmproxy's names and meanings, parsed and checked in one place.

``Options`` is a frozen value; ``Options.from_settings`` builds one from
``--set NAME=VALUE`` strings (or a mapping of the same) and refuses unknown
names and bad values with an ``OptionError`` that names the offender (the
command line turns it into a one-line usage error, exit 2; mitmdump silently
accepts an unknown name, we do not).

Sizes take mitmproxy's suffixes (``human.parse_size``): ``b``, ``k``, ``m``,
``g`` (powers of 1024), so ``stream_large_bodies=1m`` is 1,048,576 bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OptionError", "Options", "parse_mode", "parse_size"]


class OptionError(ValueError):
    """A bad option name or value; the message names it."""


_SIZE = re.compile(r"(\d+)\s*([bkmg]?)", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: str | int | None) -> int | None:
    """``"3m"`` -> 3145728; ``None`` or ``""`` -> None (no limit / no threshold)."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip()
    if not text or text.lower() == "none":
        return None
    match = _SIZE.fullmatch(text)
    if match is None:
        raise OptionError(f"invalid size {value!r} (a number with an optional k, m or g suffix)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise OptionError(f"invalid boolean {value!r} (true or false)")


def _text(value: str) -> str | None:
    return value or None


def _proxyauth(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        raise OptionError("proxyauth=@FILE (htpasswd) is not supported yet: give user:pass")
    if ":" not in value:
        raise OptionError(f"invalid proxyauth {value!r} (user:pass)")
    return value


def _regexes(value: str | Iterable[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        for part in item.split(",") if isinstance(value, str) else [item]:
            if not part:
                continue
            try:
                re.compile(part)
            except re.error as exc:
                raise OptionError(f"invalid regex {part!r}: {exc}") from exc
            out.append(part)
    return tuple(out)


def parse_mode(mode: str) -> tuple[str, str | None]:
    """``regular`` | ``reverse:URL`` | ``upstream:URL`` -> (kind, URL or None)."""
    kind, sep, url = mode.partition(":")
    if kind == "regular" and not sep:
        return kind, None
    if kind in ("reverse", "upstream") and url:
        if not re.match(r"https?://[^/]", url):
            raise OptionError(f"invalid mode {mode!r}: {kind}: takes an http:// or https:// URL")
        return kind, url.rstrip("/")
    raise OptionError(f"invalid mode {mode!r} (regular, reverse:URL or upstream:URL)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Every option the proxy knows (``--set`` names); defaults as mitmdump's, except where noted."""

    mode: str = "regular"
    listen_host: str = "127.0.0.1"  # mitmdump listens on every interface; we do not
    listen_port: int = 8080
    stream_large_bodies: int | None = None  # stream bodies above this size; None: buffer all
    body_size_limit: int | None = None  # 413 (request) / 502 (response) above it
    store_streamed_bodies: bool = False  # keep a bounded prefix of streamed bodies
    stored_body_limit: int = 1024 * 1024  # ours: the bound of that prefix
    keep_host_header: bool = False  # reverse mode: send the client's Host upstream
    ssl_insecure: bool = False  # do not verify upstream certificates
    ssl_verify_upstream_trusted_ca: str | None = None
    proxyauth: str | None = None  # user:pass
    block_global: bool = True  # refuse clients from non-loopback addresses
    http2: bool = True  # offer HTTP/2 to clients and upstreams
    confdir: str = "~/.httpstream"
    ignore_hosts: tuple[str, ...] = ()  # CONNECT hosts passed through without interception
    allow_hosts: tuple[str, ...] = ()
    via: bool = True  # ours: add a Via field both ways
    connect_timeout: float = 10.0  # ours: upstream connect deadline (504 past it)
    read_timeout: float | None = 300.0  # ours: upstream read deadline per chunk (504 at the head)

    def __post_init__(self) -> None:
        parse_mode(self.mode)

    @classmethod
    def from_settings(cls, settings: Iterable[str] | Mapping[str, str], **given: Any) -> Options:
        """Options from ``NAME=VALUE`` strings (``--set``) on top of ``given``."""
        pairs: list[tuple[str, str]] = []
        if isinstance(settings, Mapping):
            pairs = [(str(k), str(v)) for k, v in settings.items()]
        else:
            for item in settings:
                name, sep, value = item.partition("=")
                if not sep:
                    raise OptionError(f"--set {item!r}: expected NAME=VALUE")
                pairs.append((name.strip(), value))
        values = dict(given)
        for name, value in pairs:
            parser = _PARSERS.get(name)
            if parser is None:
                raise OptionError(f"unknown option {name!r}")
            try:
                values[name] = parser(value)
            except OptionError as exc:
                raise OptionError(f"--set {name}: {exc}") from exc
        return cls(**values)

    def replace(self, **changes: Any) -> Options:
        return dataclasses.replace(self, **changes)


def _float(value: str) -> float | None:
    if value.lower() in ("", "none"):
        return None
    try:
        return float(value)
    except ValueError:
        raise OptionError(f"invalid number {value!r}") from None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "stream_large_bodies": parse_size,
    "body_size_limit": parse_size,
    "store_streamed_bodies": _bool,
    "stored_body_limit": lambda v: parse_size(v) or 0,
    "keep_host_header": _bool,
    "ssl_insecure": _bool,
    "ssl_verify_upstream_trusted_ca": _text,
    "proxyauth": _proxyauth,
    "block_global": _bool,
    "http2": _bool,
    "confdir": lambda v: v or "~/.httpstream",
    "ignore_hosts": _regexes,
    "allow_hosts": _regexes,
    "via": _bool,
    "connect_timeout": _float,
    "read_timeout": _float,
}
