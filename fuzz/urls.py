"""Fuzz target ``urls``: any string as a URL, a reference to join, query params.

Theory of operation
-------------------
One example is a string (fully arbitrary text, or a URL assembled from parts
that each may be odd: scheme, userinfo, IDNA or garbage host, port, path, query,
fragment), a base URL to join it against and query params to merge in.  The
rules:

- ``URL(s)``, ``base.join(s)`` and ``url.copy_merge_params(params)`` give a URL
  or ``InvalidURL`` / ``LocalProtocolError``; anything else is ``Escaped``;
- a parsed URL is safe to put on the wire: its request target is printable
  ASCII without spaces, its host ASCII and lower case with no delimiter in it,
  and its string form holds no control character;
- its string form is a normal form: parsing it again succeeds and gives the
  same string, host and origin;
- joining ``URL(s)`` gives what joining ``s`` gives (a URL object is a faithful
  stand-in for its text), unless ``s`` has an empty authority, query or
  fragment, which a URL does not keep apart from none;
- merging params appends exactly them: ``parse_qsl`` of the new query is that
  of the old one followed by the params, as strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union
from urllib.parse import parse_qsl

from hypothesis import strategies as st

import httpstream

from ._h1_wire import mix, weighted
from ._harness import CampaignResult, Escaped, Mismatch, Settings, format_exception, run_campaign

__all__ = ["Case", "cases", "check", "run"]

EXPECTED = (httpstream.InvalidURL, httpstream.LocalProtocolError)
BASES = (
    "http://example.com/a/b/c?x=1#top",
    "https://user:pw@xn--bcher-kva.example:8443/dir/",
    "http://[::1]:8080",
    "https://h/",
)

Primitive = Union[str, int, float, bool, None]
Params = Union[str, list[tuple[str, Primitive]], dict[str, Union[Primitive, list[Primitive]]]]


@dataclass(frozen=True, slots=True)
class Case:
    text: str
    base: str
    params: Params


# -- strategies -------------------------------------------------------------------------
# Characters that mean something in a URL, or that a careless parser lets through.
SPECIAL = ":/?#[]@!$&'()*+,;=%. -_~\\\"<>^`{|}\t\r\n\x00\x7f\u00a0\u3002\uff0e\u200d\ufeff\u2028"
texts = mix(
    (st.text(alphabet=st.sampled_from(SPECIAL + "aZ09"), max_size=12), 3),
    (st.text(max_size=12), 2),  # any code point but lone surrogates...
    (st.text(alphabet=st.sampled_from("\ud800\udfff\udc80a/:"), max_size=6), 1),  # ...and them
    (st.text(alphabet=st.characters(codec="utf-8"), max_size=12), 2),
)
ascii_label = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
unicode_label = st.text(alphabet=st.characters(categories=("Ll", "Lu", "Lo", "Mn", "Nd", "Pd")), min_size=1, max_size=8)
hosts = mix(
    (st.lists(ascii_label, min_size=1, max_size=4).map(".".join), 4),
    (
        st.tuples(
            st.lists(mix((ascii_label, 1), (unicode_label, 2)), min_size=1, max_size=3),
            weighted((".", 4), ("\u3002", 1), ("\uff0e", 1)),
        ).map(lambda parts: parts[1].join(parts[0])),
        3,
    ),
    (ascii_label.map(lambda label: "xn--" + label), 1),
    (st.ip_addresses(v=4).map(str), 1),
    (st.ip_addresses(v=6).map(lambda a: f"[{a}]"), 1),
    (texts, 2),
    (st.just(""), 1),
)
ports = mix(
    (st.just(""), 4),
    (st.integers(0, 70000).map(lambda p: f":{p}"), 3),
    (texts.map(lambda t: ":" + t), 1),
)
paths = mix(
    (
        st.lists(mix((ascii_label, 2), (texts, 1), (weighted((".", 1), ("..", 1), ("", 1)), 1)), max_size=4).map(
            lambda segments: "".join("/" + s for s in segments)
        ),
        4,
    ),
    (texts, 1),
)


@st.composite
def structured(draw: st.DrawFn) -> str:
    scheme = draw(weighted(("http", 4), ("https", 4), ("HTTP", 1), ("ws", 1), ("ftp", 1), ("", 1), ("h-t.t+p", 1)))
    start = draw(weighted(("://", 8), (":", 1), ("//", 1), (":///", 1), ("", 1)))
    userinfo = draw(mix((st.just(""), 6), (texts.map(lambda t: t + "@"), 1)))
    query = draw(mix((st.just(""), 3), (texts.map(lambda t: "?" + t), 2)))
    fragment = draw(mix((st.just(""), 4), (texts.map(lambda t: "#" + t), 1)))
    pad = draw(weighted(("", 8), (" ", 1), ("\t", 1)))
    text = pad + scheme + start + userinfo + draw(hosts) + draw(ports) + draw(paths) + query + fragment + pad
    return text


references = mix(
    (structured(), 4),
    (st.lists(mix((ascii_label, 2), (texts, 1), (weighted((".", 1), ("..", 1)), 1)), max_size=4).map("/".join), 2),
    (texts, 2),
)
primitives: st.SearchStrategy[Primitive] = mix(
    (texts, 4), (st.integers(), 1), (st.floats(), 1), (st.booleans(), 1), (st.none(), 1)
)
params_strategy: st.SearchStrategy[Params] = mix(
    (st.lists(st.tuples(texts, primitives), max_size=4), 3),
    (st.dictionaries(texts, mix((primitives, 2), (st.lists(primitives, max_size=3), 1)), max_size=3), 2),
    (texts, 1),
)
cases = st.builds(Case, references, st.sampled_from(BASES), params_strategy)


# -- the rules ----------------------------------------------------------------------------
def _parse(what: str, build: object) -> httpstream.URL | None:
    """Call ``build()``; None when it refused with one of our exceptions."""
    assert callable(build)
    try:
        url = build()
    except EXPECTED:
        return None
    except Exception as exc:
        raise Escaped(f"{what}: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}") from exc
    assert isinstance(url, httpstream.URL)
    return url


_EMPTY_PART = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//(?:[/?#]|$)|\?(?:#|$)|#$")
_HOST_FORBIDDEN = set(" /?#@[]\\<>^|\"'`{}") | {chr(c) for c in range(0x20)} | {"\x7f"}


def _check_wire_safe(what: str, url: httpstream.URL) -> None:
    text = str(url)
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise Mismatch(f"{what}: the string form {text!r} holds a control character")
    target = url.target
    if not (target.isascii() and target.isprintable()) or " " in target:
        raise Mismatch(f"{what}: the request target {target!r} is not printable ASCII without spaces")
    host = url.host
    if not host.isascii() or host != host.lower() or _HOST_FORBIDDEN.intersection(host):
        raise Mismatch(f"{what}: the host {host!r} is not lower-case ASCII free of delimiters")


def _check_normal_form(what: str, url: httpstream.URL) -> None:
    text = str(url)
    again = _parse(f"{what}: URL(str(url)) with {text!r}", lambda: httpstream.URL(text))
    if again is None:
        raise Mismatch(f"{what}: its string form {text!r} does not parse again")
    if str(again) != text or again.host != url.host:
        raise Mismatch(f"{what}: {text!r} parses again as {str(again)!r} (host {url.host!r} -> {again.host!r})")
    if url.is_absolute and url.scheme in ("http", "https") and again.origin != url.origin:
        raise Mismatch(f"{what}: the origin changed from {url.origin} to {again.origin} when parsed again")


def _expected_pairs(params: Params) -> list[tuple[str, str]]:
    if isinstance(params, str):
        return parse_qsl(params, keep_blank_values=True)
    items = params.items() if isinstance(params, dict) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        for one in value if isinstance(value, list) else [value]:
            text = "true" if one is True else "false" if one is False else "" if one is None else str(one)
            pairs.append((key, text))
    return pairs


def check(case: Case) -> list[str]:
    """Apply every rule to one case; returns outcome labels."""
    labels = []
    url = _parse(f"URL({case.text!r})", lambda: httpstream.URL(case.text))
    labels.append("parsed" if url is not None else "refused")
    if url is not None:
        _check_wire_safe(f"URL({case.text!r})", url)
        _check_normal_form(f"URL({case.text!r})", url)

    base = httpstream.URL(case.base)
    joined = _parse(f"URL({case.base!r}).join({case.text!r})", lambda: base.join(case.text))
    labels.append("joined" if joined is not None else "join-refused")
    if joined is not None:
        _check_wire_safe(f"join({case.text!r})", joined)
        _check_normal_form(f"join({case.text!r})", joined)
    if url is not None and not _EMPTY_PART.search(case.text.strip(" ")):
        # (An empty authority, query or fragment, as in "//", "?" or "#", is left
        # out: a URL cannot keep an empty one apart from none, and urljoin treats
        # the two differently.)
        via_url = _parse(f"URL({case.base!r}).join(URL({case.text!r}))", lambda: base.join(url))
        if (via_url is None) != (joined is None) or str(via_url) != str(joined):
            raise Mismatch(
                f"joining {case.text!r} to {case.base!r} gives {str(joined) if joined else 'InvalidURL'}, "
                f"joining URL({case.text!r}) (= {str(url)!r}) gives {str(via_url) if via_url else 'InvalidURL'}"
            )

    target = url if url is not None and url.is_absolute else base
    merged = _parse(f"{target!r}.copy_merge_params({case.params!r})", lambda: target.copy_merge_params(case.params))
    labels.append("merged" if merged is not None else "merge-refused")
    if merged is not None:
        _check_wire_safe(f"copy_merge_params({case.params!r})", merged)
        expected = parse_qsl(target.query, keep_blank_values=True) + _expected_pairs(case.params)
        got = parse_qsl(merged.query, keep_blank_values=True)
        if got != expected:
            raise Mismatch(
                f"{target!r}.copy_merge_params({case.params!r}) has query {merged.query!r}: "
                f"pairs {got!r}, expected {expected!r}"
            )
    return labels


def run(settings: Settings) -> CampaignResult:
    """The ``urls`` campaign (synchronous code; the loop is only the harness')."""

    async def start() -> None:
        return None

    async def example(env: None, case: Case) -> list[str]:
        return check(case)

    async def stop(env: None) -> None:
        return None

    return run_campaign(target="urls", settings=settings, strategy=cases, start=start, run_example=example, stop=stop)
