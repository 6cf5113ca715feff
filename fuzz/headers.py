"""Fuzz target ``headers``: ``Headers`` built and changed with arbitrary names and values.

Theory of operation
-------------------
One example is a sequence of operations on one ``Headers``: construction (from
a list of pairs, a ``str`` or ``bytes`` dict, or a copy), ``add``, item
assignment, ``del``, ``update`` (pairs and keyword fields) and the reads
(``get``, ``in``, ``get_list``, ``[]``).  Names and values are ``str`` or
``bytes`` (values also ``int``) drawn to hit the edges: valid tokens in any
case, CR, LF and NUL anywhere (also a final "\\n", which ``$`` in a regular
expression lets through), spaces and tabs around values, non-Latin-1 text,
lone surrogates, obs-text bytes.

A small model written here (a list of (name, lower-case name, value) byte
triples, RFC 9110 sections 5.1 and 5.5 as the module docstring of
``httpstream/_headers.py`` states them) says what each operation must do.  The
rules:

- an operation is refused (``LocalProtocolError``) exactly when the model
  refuses it, and then changes nothing; ``KeyError`` only where the mapping
  protocol says (``[]`` and ``del`` of an absent name); anything else is
  ``Escaped``;
- after every operation the fields, in order and with their case, are the
  model's, and every read answers as the model does (``Mismatch``);
- no stored name is anything but a token and no value holds CR, LF or NUL, and
  the HTTP/2 and HTTP/3 request fields built from them hold no
  connection-specific field (``Mismatch``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from hypothesis import strategies as st

import httpstream
from httpstream._headers import multiplexed_request_fields

from ._h1_wire import mix, weighted
from ._harness import CampaignResult, Escaped, Mismatch, Settings, format_exception, run_campaign

__all__ = ["Op", "check", "operations", "run"]

Name = Union[str, bytes]
Value = Union[str, bytes, int]
Triple = tuple[bytes, bytes, bytes]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # init-list, init-dict, add, set, del, update, get, contains, get_list, getitem, copy
    name: Name = ""
    value: Value = ""
    pairs: tuple[tuple[Name, Value], ...] = ()
    keywords: tuple[tuple[str, str], ...] = ()


# -- strategies -------------------------------------------------------------------------
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcXYZ"
BAD_CHARS = '\r\n\x00 :\t\x7f"(),/;<=>?@[\\]{}\u00e9\u20ac\ud800'
common_names = weighted(
    ("Content-Type", 2),
    ("x-a", 2),
    ("X-A", 2),
    ("Host", 1),
    ("Connection", 1),
    ("TE", 1),
    ("transfer-encoding", 1),
    ("set-cookie", 1),
)
str_names: st.SearchStrategy[str] = mix(
    (common_names, 8),
    (st.text(alphabet=st.sampled_from(TOKEN_CHARS), min_size=1, max_size=8), 3),
    (
        st.tuples(common_names, st.sampled_from(BAD_CHARS), st.booleans()).map(
            lambda t: t[0] + t[1] if t[2] else t[1] + t[0]
        ),
        2,
    ),
    (st.text(max_size=6), 1),
    (st.just(""), 1),
)
names: st.SearchStrategy[Name] = mix(
    (str_names, 4),
    (str_names.map(lambda n: n.encode("utf-8", "surrogatepass")), 1),
    (st.binary(max_size=6), 1),
)
str_values: st.SearchStrategy[str] = mix(
    (st.text(alphabet=st.sampled_from("abc ;=,\t\"'"), max_size=10), 8),
    (st.text(alphabet=st.sampled_from("ab \t\r\n\x00\x01\x7f\u00e9\u20ac\ud800\U0001f600"), max_size=8), 3),
    (st.text(max_size=10), 1),
)
values: st.SearchStrategy[Value] = mix(
    (str_values, 5),
    (st.binary(max_size=8), 2),
    (str_values.map(lambda v: v.encode("utf-8", "surrogatepass")), 1),
    (st.integers(-(10**6), 10**20), 1),
)
pair_lists = st.lists(st.tuples(names, values), max_size=4).map(tuple)
keywords = st.lists(st.tuples(str_names, str_values), max_size=2).map(tuple)
op_strategy = mix(
    (st.builds(Op, st.just("add"), names, values), 6),
    (st.builds(Op, st.just("set"), names, values), 4),
    (st.builds(Op, st.just("del"), names), 2),
    (st.builds(Op, st.just("update"), pairs=pair_lists, keywords=keywords), 2),
    (st.builds(Op, weighted(("get", 1), ("contains", 1), ("get_list", 1), ("getitem", 1)), names), 4),
    (st.builds(Op, st.just("copy")), 1),
)
first_op = mix(
    (st.builds(Op, st.just("init-list"), pairs=pair_lists), 3),
    (st.builds(Op, st.just("init-dict"), pairs=pair_lists), 2),
)
operations = st.tuples(first_op, st.lists(op_strategy, max_size=12)).map(lambda t: (t[0], *t[1]))


# -- the model ------------------------------------------------------------------------------
class Refused(Exception):
    """The model refuses the operation (the code under test must raise LocalProtocolError)."""


def model_name(name: Name) -> bytes:
    if isinstance(name, str):
        try:
            raw = name.encode("latin-1")
        except UnicodeEncodeError:
            raise Refused(f"name {name!r} is not Latin-1") from None
    else:
        raw = name
    if not _TOKEN.fullmatch(raw):
        raise Refused(f"name {raw!r} is not a token")
    return raw


def model_value(value: Value) -> bytes:
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, str):
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            try:
                raw = value.encode("utf-8")
            except UnicodeEncodeError:
                raise Refused(f"value {value!r} has no UTF-8 form") from None
    else:
        raw = value
    if re.search(rb"[\r\n\x00]", raw):
        raise Refused(f"value {raw!r} holds CR, LF or NUL")
    return raw.strip(b" \t")


def model_key(name: Name) -> bytes | None:
    """The lower-case name a lookup matches; None when it can match no field."""
    if isinstance(name, bytes):
        return name.lower()
    try:
        return name.encode("latin-1").lower()
    except UnicodeEncodeError:
        return None  # not Latin-1: no stored name (a token) can equal it


def model_triples(pairs: tuple[tuple[Name, Value], ...]) -> list[Triple]:
    out = []
    for name, value in pairs:
        raw = model_name(name)
        out.append((raw, raw.lower(), model_value(value)))
    return out


def model_set(items: list[Triple], name: Name, value: Value) -> list[Triple]:
    raw = model_name(name)
    triple = (raw, raw.lower(), model_value(value))
    position = next((i for i, item in enumerate(items) if item[1] == triple[1]), None)
    if position is None:
        return [*items, triple]
    kept = [item for i, item in enumerate(items) if i < position or item[1] != triple[1]]
    kept.insert(position, triple)
    return kept


# -- the rules ----------------------------------------------------------------------------------
def _call(what: str, action: Callable[[], object], refused: str | None, absent_ok: bool = False) -> object:
    """Run ``action``; it must raise LocalProtocolError exactly when ``refused`` is set."""
    try:
        result = action()
    except httpstream.LocalProtocolError as exc:
        if refused is None:
            raise Mismatch(f"{what}: refused ({exc}), but the model accepts it") from exc
        return exc
    except KeyError as exc:
        if not absent_ok:
            raise Escaped(f"{what}: KeyError where the mapping protocol has none:\n{format_exception(exc)}") from exc
        return exc
    except Exception as exc:
        raise Escaped(f"{what}: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}") from exc
    if refused is not None:
        raise Mismatch(f"{what}: accepted, but the model refuses it ({refused})")
    return result


def _refusal(model: Callable[[], object]) -> str | None:
    try:
        model()
    except Refused as exc:
        return str(exc)
    return None


def check(ops: tuple[Op, ...]) -> list[str]:
    """Apply the operations to ``Headers`` and to the model, comparing after each one."""
    labels: list[str] = []
    headers = httpstream.Headers()
    items: list[Triple] = []
    for number, op in enumerate(ops, 1):
        what = f"operation {number} {op!r}"
        headers, items, label = _apply(what, op, headers, items)
        labels.append(label)
        _compare(what, headers, items)
    return labels


def _apply(
    what: str, op: Op, headers: httpstream.Headers, items: list[Triple]
) -> tuple[httpstream.Headers, list[Triple], str]:
    """One operation on both sides: the (possibly new) headers, the model's fields, a label."""
    if op.kind in ("init-list", "init-dict"):
        source: object = list(op.pairs)
        pairs = op.pairs
        if op.kind == "init-dict":
            # A dict of one key type (a Mapping[str, ...] or Mapping[bytes, ...]).
            kind = type(op.pairs[0][0]) if op.pairs else str
            source = {name: value for name, value in op.pairs if isinstance(name, kind)}
            pairs = tuple(source.items())
        refused = _refusal(lambda: model_triples(pairs))
        result = _call(what, lambda: httpstream.Headers(source), refused)  # type: ignore[arg-type]
        if refused is not None:
            return headers, items, op.kind + "-refused"
        assert isinstance(result, httpstream.Headers)
        return result, model_triples(pairs), op.kind
    if op.kind == "add":
        refused = _refusal(lambda: (model_name(op.name), model_value(op.value)))
        _call(what, lambda: headers.add(op.name, op.value), refused)  # type: ignore[arg-type]
        if refused is not None:
            return headers, items, "add-refused"
        raw = model_name(op.name)
        return headers, [*items, (raw, raw.lower(), model_value(op.value))], "add"
    if op.kind == "set":
        refused = _refusal(lambda: model_set(items, op.name, op.value))

        def assign() -> None:
            headers[op.name] = op.value  # type: ignore[index,assignment]

        _call(what, assign, refused)
        if refused is not None:
            return headers, items, "set-refused"
        return headers, model_set(items, op.name, op.value), "set"
    if op.kind == "del":
        key = model_key(op.name)
        present = key is not None and any(item[1] == key for item in items)

        def delete() -> None:
            del headers[op.name]  # type: ignore[arg-type]

        result = _call(what, delete, None, absent_ok=True)
        if isinstance(result, KeyError) == present:
            raise Mismatch(f"{what}: KeyError={isinstance(result, KeyError)}, but the name is present={present}")
        return headers, [item for item in items if item[1] != key], "del" if present else "del-absent"
    if op.kind == "update":

        def model_update() -> list[Triple]:
            incoming = model_triples(op.pairs)
            for name, value in dict(op.keywords).items():  # keyword arguments: the last of a name wins
                incoming = model_set(incoming, name, value)
            keys = {item[1] for item in incoming}
            return [item for item in items if item[1] not in keys] + incoming

        refused = _refusal(model_update)
        _call(what, lambda: headers.update(list(op.pairs), **dict(op.keywords)), refused)  # type: ignore[arg-type]
        if refused is not None:
            return headers, items, "update-refused"
        return headers, model_update(), "update"
    if op.kind == "copy":
        copied = _call(what, headers.copy, None)
        assert isinstance(copied, httpstream.Headers)
        if copied.raw != headers.raw or copied != headers:
            raise Mismatch(f"{what}: the copy {copied!r} differs from {headers!r}")
        return copied, items, "copy"
    return headers, items, _check_read(what, op, headers, items)


def _check_read(what: str, op: Op, headers: httpstream.Headers, items: list[Triple]) -> str:
    key = model_key(op.name)
    expected = [value.decode("latin-1") for _, k, value in items if key is not None and k == key]
    if op.kind == "get_list":
        got: object = _call(what, lambda: headers.get_list(op.name), None)
        want: object = expected
    elif op.kind == "contains":
        got = _call(what, lambda: op.name in headers, None)
        want = bool(expected)
    elif op.kind == "get":
        got = _call(what, lambda: headers.get(op.name), None)  # type: ignore[arg-type]
        want = ", ".join(expected) if expected else None
    else:
        got = _call(what, lambda: headers[op.name], None, absent_ok=True)  # type: ignore[index]
        want = ", ".join(expected) if expected else got if isinstance(got, KeyError) else "KeyError"
    if got != want:
        raise Mismatch(f"{what}: answered {got!r}, the model says {want!r}")
    return op.kind if expected else op.kind + "-absent"


def _compare(what: str, headers: httpstream.Headers, items: list[Triple]) -> None:
    got = headers.triples()
    if got != items:
        raise Mismatch(f"{what}: the fields are {got!r}, the model has {items!r}")
    for raw, _, value in got:
        if not _TOKEN.fullmatch(raw) or re.search(rb"[\r\n\x00]", value):
            raise Mismatch(f"{what}: a stored field could split a header block: {raw!r}: {value!r}")
    fields = multiplexed_request_fields("GET", "https", b"example.com", "/", headers)
    for name, value in fields[4:]:
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value.lower() != b"trailers") or name != name.lower():
            raise Mismatch(f"{what}: HTTP/2 and HTTP/3 request fields carry {name!r}: {value!r}")


def run(settings: Settings) -> CampaignResult:
    """The ``headers`` campaign (synchronous code; the loop is only the harness')."""

    async def start() -> None:
        return None

    async def example(env: None, case: tuple[Op, ...]) -> list[str]:
        return check(case)

    async def stop(env: None) -> None:
        return None

    return run_campaign(
        target="headers", settings=settings, strategy=operations, start=start, run_example=example, stop=stop
    )
