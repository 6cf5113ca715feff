"""Request bodies: ``content=``, form ``data=``, multipart ``files=`` and ``json=``.

Theory of operation
-------------------
``encode_request`` turns the caller's arguments into two things: the headers
the body implies (``Content-Type``, and ``Content-Length`` when a stream knows
its length) and the body itself, which is either ``bytes`` (forms, JSON, raw
content) or an async iterable of bytes (streams, multipart).  ``Request._frame``
then decides the framing: ``Content-Length`` for bytes or when the header is
already set, ``Transfer-Encoding: chunked`` otherwise.

Multipart bodies are streamed from disk.  ``MultipartStream`` holds a list of
parts, each a pre-built head (boundary line and part headers) plus a source:
bytes, a binary file object, or a ``pathlib.Path`` opened only while the body
is being sent.  Files are read in 64 KiB pieces, so memory stays flat whatever
the size of the upload.  When every part's size is known up front (bytes, regular
files by ``os.fstat``, other seekable files by seek/tell) the total length is
computed before the first byte goes out and the request carries
``Content-Length``; a file that then grows or shrinks while it is being sent
raises ``LocalProtocolError`` instead of sending a body that contradicts its
own header.  When every file can be rewound (paths, seekable files) the body
is ``replayable``: each iteration starts again from the first byte, which is
what redirects (307/308) and retries need.

File reads are synchronous, 64 KiB at a time.  The design forbids threads (no
``run_in_executor``), and a 64 KiB read from a local file is a page-cache copy
of a few microseconds; the transport awaits ``drain()`` between pieces, so the
event loop runs other tasks between every two reads.  httpx makes the same
trade-off.  The same holds for the sync iterables accepted as ``content=``:
each ``next()`` runs on the event loop, so it must not block for long.

``ProgressBody`` wraps any of these bodies and reports progress as the
transport takes each piece.
"""

from __future__ import annotations

import io
import json as jsonlib
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import IO, Union
from urllib.parse import urlencode

from ._exceptions import LocalProtocolError
from ._headers import Headers
from ._urls import primitive_value

__all__ = [
    "CHUNK_SIZE",
    "ContentTypes",
    "DataTypes",
    "FileTypes",
    "MultipartStream",
    "ProgressBody",
    "encode_request",
    "with_progress",
]

CHUNK_SIZE = 64 * 1024  # one disk read, one transport write

PrimitiveData = Union[str, bytes, int, float, bool, None]
DataTypes = Union[
    Mapping[str, Union[PrimitiveData, Sequence[PrimitiveData]]],
    Sequence[tuple[str, PrimitiveData]],
]
FileContent = Union[IO[bytes], bytes, "os.PathLike[str]"]
FileValue = Union[
    FileContent,
    tuple[Union[str, None], FileContent],
    tuple[Union[str, None], FileContent, Union[str, None]],
    tuple[Union[str, None], FileContent, Union[str, None], Mapping[str, str]],
]
FileTypes = Union[Mapping[str, FileValue], Sequence[tuple[str, FileValue]]]
ContentTypes = Union[bytes, str, AsyncIterable[bytes], Iterable[bytes]]
RawHeaders = list[tuple[bytes, bytes]]
Body = Union[bytes, AsyncIterable[bytes], None]

# RFC 2046 section 5.1.1 allows up to 70 boundary characters from a wider set;
# this subset is also an RFC 9110 token, so the Content-Type parameter never
# needs quoting.
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'+_.\-]{1,70}$")
# HTML Living Standard, "multipart/form-data encoding algorithm": field names
# and filenames escape LF, CR and '"' so a name can never end its header line
# or its quoted-string early.
_NAME_ESCAPES = {ord('"'): "%22", ord("\r"): "%0D", ord("\n"): "%0A"}


# -- encode_request ------------------------------------------------------------------


def encode_request(
    *,
    content: ContentTypes | None = None,
    data: DataTypes | None = None,
    files: FileTypes | None = None,
    json: object = None,
    boundary: bytes | None = None,
) -> tuple[RawHeaders, Body]:
    """The default headers and the body for the given request arguments.

    Like httpx: ``content`` is the raw body (``str`` is sent as UTF-8; a sync
    iterable of bytes is wrapped into an async one, each ``next()`` running on the
    event loop); ``data`` alone is an urlencoded form; ``files`` (with or without
    ``data``) is multipart/form-data streamed from disk; ``json`` is compact UTF-8
    JSON.  ``content`` excludes the others, and ``json`` excludes ``data`` and
    ``files``.  The returned headers are defaults: headers the caller set win.
    """
    if content is not None and (data is not None or files is not None or json is not None):
        raise LocalProtocolError("content= cannot be combined with data=, files= or json=: pass only one body")
    if json is not None and (data is not None or files is not None):
        raise LocalProtocolError("json= cannot be combined with data= or files=: pass only one body")
    if boundary is not None and files is None:
        raise LocalProtocolError("boundary= is only used with files= (multipart/form-data)")
    if content is not None:
        return _encode_content(content)
    if files is not None:
        stream = MultipartStream(data=data, files=files, boundary=boundary)
        headers = [(b"Content-Type", stream.content_type)]
        if stream.content_length is not None:
            headers.append((b"Content-Length", str(stream.content_length).encode("ascii")))
        return headers, stream
    if data is not None:
        body = urlencode([(name, _form_value(value)) for name, value in _data_pairs(data)]).encode("ascii")
        return [(b"Content-Type", b"application/x-www-form-urlencoded")], body
    if json is not None:
        return [(b"Content-Type", b"application/json")], _encode_json(json)
    return [], None


def _encode_content(content: ContentTypes) -> tuple[RawHeaders, Body]:
    if isinstance(content, str):
        return [], content.encode("utf-8")
    if isinstance(content, (bytes, bytearray, memoryview)):
        return [], bytes(content)
    if isinstance(content, Mapping):
        raise TypeError("content= got a mapping: pass data= for a form or json= for JSON")
    if isinstance(content, AsyncIterable):
        # A body that knows its length (MultipartStream, ProgressBody) keeps it.
        length = getattr(content, "content_length", None)
        if isinstance(length, int):
            return [(b"Content-Length", str(length).encode("ascii"))], content
        return [], content
    if isinstance(content, Iterable):
        return [], _aiter_sync(content)
    raise TypeError(f"content= must be bytes, str or an (async) iterable of bytes, not {type(content).__name__}")


async def _aiter_sync(iterable: Iterable[bytes]) -> AsyncIterator[bytes]:
    """A sync iterable of bytes as an async one (streamed once, chunked)."""
    for chunk in iterable:
        yield chunk


def _encode_json(value: object) -> bytes:
    try:
        # allow_nan=False: NaN and Infinity are not JSON (RFC 8259 section 6) and
        # most servers would refuse them.
        text = jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"json= value cannot be encoded as JSON: {exc}") from exc
    return text.encode("utf-8")


def _data_pairs(data: DataTypes) -> list[tuple[str, object]]:
    """Form fields as (name, value) pairs; a list value gives one pair per item."""
    if isinstance(data, (str, bytes, bytearray)):
        raise TypeError("data= takes a mapping or a list of (name, value) pairs; pass raw bytes as content=")
    items = data.items() if isinstance(data, Mapping) else data
    pairs: list[tuple[str, object]] = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"data= items must be (name, value) pairs, got {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"form field names must be str, not {type(name).__name__}")
        if isinstance(value, (list, tuple)):
            pairs.extend((name, v) for v in value)
        else:
            pairs.append((name, value))
    return pairs


def _form_value(value: object) -> str | bytes:
    """One form value as text (bytes are kept as they are), like httpx."""
    if isinstance(value, bytes):
        return value
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return primitive_value(value)
    raise TypeError(f"form values must be str, bytes, int, float, bool or None, not {type(value).__name__}")


# -- multipart ------------------------------------------------------------------------


def _quote_name(name: str) -> bytes:
    return name.translate(_NAME_ESCAPES).encode("utf-8")


class _Part:
    """One multipart part: its head (boundary line and part headers) and its content.

    ``source`` is bytes, a binary file object, or a path opened only while
    sending.  ``size`` is the content length when known; ``start`` is the
    position a seekable file object is rewound to before each send.
    """

    __slots__ = ("head", "source", "size", "start", "label")

    def __init__(
        self, head: bytes, source: bytes | IO[bytes] | os.PathLike[str], size: int | None, start: int, label: str
    ) -> None:
        self.head = head
        self.source = source
        self.size = size
        self.start = start
        self.label = label

    @property
    def replayable(self) -> bool:
        if isinstance(self.source, bytes):
            return True
        if isinstance(self.source, os.PathLike):
            return self.size is not None  # a regular file; a FIFO cannot be reopened at byte 0
        return _seekable(self.source)


def _seekable(file: IO[bytes]) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _file_size(file: IO[bytes]) -> tuple[int | None, int]:
    """(bytes from the current position to the end or None, current position)."""
    if not _seekable(file):
        return None, 0
    try:
        start = file.tell()
        try:
            info = os.fstat(file.fileno())
        except (AttributeError, OSError, io.UnsupportedOperation):
            info = None
        if info is not None and stat.S_ISREG(info.st_mode):
            end = info.st_size
        else:
            end = file.seek(0, io.SEEK_END)
            file.seek(start)
    except (OSError, ValueError) as exc:
        raise LocalProtocolError(f"cannot size the upload file {_label(file)!r}: {exc}") from exc
    return max(end - start, 0), start


def _label(source: object) -> str:
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else type(source).__name__


class MultipartStream:
    """A multipart/form-data body, streamed part by part and file by file.

    ``content_length`` is the total size when every part's size is known (the
    request then goes with ``Content-Length``), else None (chunked).
    ``replayable`` is True when every file can be read again from its start:
    then each ``async for`` produces the same bytes from the beginning.

    File values are a binary file object (read from its current position; not
    closed: the caller owns it), a ``pathlib.Path`` (opened while sending and
    closed after), or bytes; a tuple ``(filename, value[, content_type[,
    headers]])`` sets the part's filename, type and extra headers.  A ``str``
    value is refused because it is ambiguous (a path or the content?).
    """

    def __init__(self, *, data: DataTypes | None = None, files: FileTypes, boundary: bytes | None = None) -> None:
        if boundary is None:
            boundary = secrets.token_hex(16).encode("ascii")
        elif not _BOUNDARY.fullmatch(boundary):
            raise LocalProtocolError(f"invalid multipart boundary {boundary!r}: 1 to 70 of A-Z a-z 0-9 ' + _ . -")
        self.boundary = boundary
        self.content_type = b"multipart/form-data; boundary=" + boundary
        self._parts: list[_Part] = []
        for name, value in _data_pairs(data) if data is not None else []:
            self._add_field(name, value)
        for name, file_value in _file_pairs(files):
            self._add_file(name, file_value)
        self._tail = b"--" + boundary + b"--\r\n"
        sizes = [part.size for part in self._parts]
        self.content_length: int | None = None
        if all(size is not None for size in sizes):
            # each part: head, content, CRLF; then the closing delimiter.
            self.content_length = (
                sum(len(part.head) + 2 for part in self._parts)
                + sum(size for size in sizes if size is not None)
                + len(self._tail)
            )
        self.replayable = all(part.replayable for part in self._parts)
        self._iterated = False

    def _add_field(self, name: str, value: object) -> None:
        text = _form_value(value)
        content = text.encode("utf-8") if isinstance(text, str) else text
        head = b"--" + self.boundary + b'\r\nContent-Disposition: form-data; name="' + _quote_name(name) + b'"\r\n\r\n'
        self._parts.append(_Part(head, content, len(content), 0, name))

    def _add_file(self, name: str, value: FileValue) -> None:
        filename: str | None
        content_type: str | None = None
        extra: Mapping[str, str] = {}
        if isinstance(value, tuple):
            if not 2 <= len(value) <= 4:
                raise TypeError(
                    f"file tuple for {name!r} must be (filename, file[, content_type[, headers]]), "
                    f"got {len(value)} items"
                )
            filename, source = value[0], value[1]
            if len(value) >= 3:
                content_type = value[2]
            if len(value) == 4:
                extra = value[3]
            if content_type is not None and not isinstance(content_type, str):
                raise TypeError(f"content type for {name!r} must be str or None, not {type(content_type).__name__}")
            if not isinstance(extra, Mapping):
                raise TypeError(f"extra headers for {name!r} must be a mapping, not {type(extra).__name__}")
            if filename is not None and not isinstance(filename, str):
                raise TypeError(f"filename for {name!r} must be str or None, not {type(filename).__name__}")
        else:
            source = value
            filename = None
            if isinstance(source, os.PathLike):
                filename = os.path.basename(os.fspath(source))
            elif isinstance(getattr(source, "name", None), str):
                filename = os.path.basename(source.name)  # type: ignore[union-attr]
            filename = filename or "upload"
        part_source, size, start = _file_source(name, source)
        extra_headers = Headers(extra)  # validates names and values (no CR/LF injection)
        headers = Headers()
        if not extra_headers.has(b"content-type"):
            # An explicit Content-Type among the extra headers wins, as in httpx.
            guessed = mimetypes.guess_type(filename)[0] if filename else None
            headers.add("Content-Type", content_type or guessed or "application/octet-stream")
        headers.extend_raw(extra_headers.raw)
        disposition = b'form-data; name="' + _quote_name(name) + b'"'
        if filename is not None:
            disposition += b'; filename="' + _quote_name(filename) + b'"'
        head = bytearray(b"--" + self.boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n")
        for key, val in headers.raw:
            if key.lower() == b"content-disposition":
                raise LocalProtocolError(f"file {name!r}: Content-Disposition is set from the field name")
            head += key + b": " + val + b"\r\n"
        head += b"\r\n"
        self._parts.append(_Part(bytes(head), part_source, size, start, filename or name))

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterated and not self.replayable:
            raise LocalProtocolError(
                "this multipart body reads a file that cannot be rewound, so it can be sent only once"
            )
        self._iterated = True
        return self._produce()

    async def _produce(self) -> AsyncIterator[bytes]:
        # Small pieces (part heads, short fields) are gathered into one write of
        # at most CHUNK_SIZE so a form with many fields is not sent as many frames.
        pending = bytearray()
        for part in self._parts:
            for piece in self._part_pieces(part):
                if len(pending) + len(piece) <= CHUNK_SIZE:
                    pending += piece
                    continue
                if pending:
                    yield bytes(pending)
                    pending.clear()
                if len(piece) < CHUNK_SIZE:
                    pending += piece
                else:
                    yield piece
        pending += self._tail
        yield bytes(pending)

    def _part_pieces(self, part: _Part) -> Iterable[bytes]:
        yield part.head
        source = part.source
        if isinstance(source, bytes):
            for offset in range(0, len(source), CHUNK_SIZE):
                yield source[offset : offset + CHUNK_SIZE]
        elif isinstance(source, os.PathLike):
            try:
                file = open(source, "rb")  # noqa: SIM115 - `with` below; a generator cannot open in a `with` it yields from
            except OSError as exc:
                raise LocalProtocolError(f"cannot open upload file {part.label!r}: {exc}") from exc
            with file:
                yield from _read_file(file, part.size, part.label)
        else:
            if part.replayable:
                try:
                    source.seek(part.start)
                except (OSError, ValueError) as exc:
                    raise LocalProtocolError(f"cannot rewind upload file {part.label!r}: {exc}") from exc
            yield from _read_file(source, part.size, part.label)
        yield b"\r\n"

    def __repr__(self) -> str:
        return f"<MultipartStream parts={len(self._parts)} content_length={self.content_length}>"


def _file_pairs(files: FileTypes) -> list[tuple[str, FileValue]]:
    items = files.items() if isinstance(files, Mapping) else files
    pairs: list[tuple[str, FileValue]] = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"files= items must be (field name, file) pairs, got {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"file field names must be str, not {type(name).__name__}")
        pairs.append((name, value))
    return pairs


def _file_source(name: str, source: object) -> tuple[bytes | IO[bytes] | os.PathLike[str], int | None, int]:
    """The part's source, its size when known, and the start of a seekable file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        content = bytes(source)
        return content, len(content), 0
    if isinstance(source, str):
        raise TypeError(
            f"file {name!r} is a str, which is ambiguous: pass pathlib.Path(...) for a file "
            "on disk, or bytes for the content"
        )
    if isinstance(source, os.PathLike):
        path: os.PathLike[str] = source
        try:
            info = os.stat(path)
        except OSError as exc:
            raise LocalProtocolError(f"cannot read upload file {os.fspath(path)!r}: {exc}") from exc
        return path, (info.st_size if stat.S_ISREG(info.st_mode) else None), 0
    if isinstance(source, io.TextIOBase):
        raise TypeError(f"file {name!r} is open in text mode; open it in binary mode ('rb')")
    if callable(getattr(source, "read", None)):
        file: IO[bytes] = source  # type: ignore[assignment]
        size, start = _file_size(file)
        return file, size, start
    raise TypeError(
        f"file {name!r} must be a binary file object, pathlib.Path, bytes or a "
        f"(filename, file[, content_type[, headers]]) tuple, not {type(source).__name__}"
    )


def _read_file(file: IO[bytes], size: int | None, label: str) -> Iterable[bytes]:
    """Read ``size`` bytes (or to EOF when None) in CHUNK_SIZE pieces.

    With a known size the file must hold exactly that many bytes: the total
    went out as Content-Length, and a body that disagrees with its header would
    be cut or misread by the server.
    """
    remaining = size
    while remaining is None or remaining > 0:
        try:
            chunk = file.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
        except (OSError, ValueError) as exc:
            raise LocalProtocolError(f"cannot read upload file {label!r}: {exc}") from exc
        if not isinstance(chunk, bytes):
            raise TypeError(f"upload file {label!r} returned {type(chunk).__name__}; open it in binary mode")
        if not chunk:
            if remaining is None:
                return
            assert size is not None
            raise LocalProtocolError(
                f"upload file {label!r} shrank while being sent: {size - remaining} of {size} bytes"
            )
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk
    try:
        grew = file.read(1)
    except (OSError, ValueError) as exc:
        raise LocalProtocolError(f"cannot read upload file {label!r}: {exc}") from exc
    if grew:
        raise LocalProtocolError(f"upload file {label!r} grew while being sent: it is longer than {size} bytes")


# -- progress -------------------------------------------------------------------------------


class ProgressBody:
    """A request body that calls ``callback(bytes_sent, total)`` as it is sent.

    The callback runs each time the transport has taken a piece and asks for the
    next one, so the count follows what the
    connection accepted, backpressure included.  ``total`` is the body's length
    when known, else None.  Bytes are split into CHUNK_SIZE pieces so progress
    moves in steps; their length stays known, so the request still goes with
    Content-Length.  ``replayable`` and ``content_length`` are those of the
    wrapped body; each iteration counts again from zero.
    """

    def __init__(self, body: bytes | AsyncIterable[bytes], callback: Callable[[int, int | None], object]) -> None:
        self._body = body
        self._callback = callback
        if isinstance(body, bytes):
            self.content_length: int | None = len(body)
            self.replayable: bool = True
        elif isinstance(body, AsyncIterable):
            length = getattr(body, "content_length", None)
            self.content_length = length if isinstance(length, int) else None
            self.replayable = getattr(body, "replayable", False) is True
        else:
            raise TypeError(f"ProgressBody wraps bytes or an async iterable of bytes, not {type(body).__name__}")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._produce()

    async def _produce(self) -> AsyncIterator[bytes]:
        sent = 0
        total = self.content_length
        if isinstance(self._body, bytes):
            body = self._body
            for offset in range(0, len(body), CHUNK_SIZE):
                piece = body[offset : offset + CHUNK_SIZE]
                yield piece
                sent += len(piece)
                self._callback(sent, total)
        else:
            async for piece in self._body:
                yield piece
                sent += len(piece)
                self._callback(sent, total)

    def __repr__(self) -> str:
        return f"<ProgressBody content_length={self.content_length} replayable={self.replayable}>"


def with_progress(body: bytes | AsyncIterable[bytes], callback: Callable[[int, int | None], object]) -> ProgressBody:
    """``body`` wrapped in a ``ProgressBody`` that reports to ``callback``.

    The result is an async iterable even for bytes: a caller that frames the
    request must take the length from ``content_length`` (and send
    Content-Length) rather than from ``isinstance(body, bytes)``.
    """
    return ProgressBody(body, callback)
