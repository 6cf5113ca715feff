"""Headers (layer 1, ``_headers``): the ordered multi-map and what it refuses to carry."""

from __future__ import annotations

import pytest

import httpstream


def test_headers_are_ordered_case_insensitive_and_keep_repeats() -> None:
    h = httpstream.Headers([("Set-Cookie", "a=1"), ("X-A", "1"), ("set-cookie", "b=2")])
    assert h.get_list("SET-COOKIE") == ["a=1", "b=2"]
    assert h["set-cookie"] == "a=1, b=2"
    assert h.raw == [(b"Set-Cookie", b"a=1"), (b"X-A", b"1"), (b"set-cookie", b"b=2")]
    assert list(h) == ["Set-Cookie", "X-A"]
    h["x-a"] = "2"
    assert h.multi_items()[1] == ("x-a", "2")
    del h["set-cookie"]
    assert "Set-Cookie" not in h
    assert h == {"X-A": "2"}


@pytest.mark.parametrize("name", ["X\r\nY", "X Y", "", "X:"])
def test_header_names_that_could_inject_are_refused(name: str) -> None:
    with pytest.raises(httpstream.LocalProtocolError, match="header name"):
        httpstream.Headers({name: "v"})


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_header_values_that_could_inject_are_refused(value: str) -> None:
    with pytest.raises(httpstream.LocalProtocolError, match="CR, LF or NUL"):
        httpstream.Headers({"X": value})
