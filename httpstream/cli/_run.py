"""One transfer: build the client from ``Options``, send, and stream the answer out.

Theory of operation
-------------------
``run`` opens an ``AsyncClient`` whose event hooks feed the ``Trace`` (so -v
and error messages know each hop), sends the request with ``client.stream``
and, once the head is in, decides where the body goes: nowhere (-I, or
``--fail`` on an error status), standard output, or the ``-o`` file, which is
opened only then, so a failed connection never leaves an empty file behind.
The body is pulled chunk by chunk and written at once (see ``_output``);
leaving the ``async with client.stream(...)`` block releases the stream
whatever happened, which is what makes ``| head`` stop the download: the
write raises ``BrokenPipeError``, the block closes the response (an HTTP/1.1
connection with a large remainder is closed, an HTTP/2 or HTTP/3 stream is
reset), and the error travels up to ``main``.

Library errors (``HTTPStreamError``) also travel up to ``main``, which turns
them into one line and an exit status.  What this module decides itself
(``--fail``, the ``--resume`` answers, an unwritable output file) it reports
here and returns as the exit status.

Resuming (``--resume``): the request carries ``Range: bytes=N-`` where N is
the size of the partial file.  RFC 9110 section 14.4: a 206 carries
``Content-Range: bytes FIRST-LAST/COMPLETE`` and FIRST must be N before
anything is appended; a 200 means the range was ignored (the whole
representation follows, so the file is rewritten); a 416 carries
``Content-Range: bytes */COMPLETE``, and COMPLETE == N means the file is
already whole.  No validator (If-Range) is sent: like curl, the partial file
is trusted to be a prefix of the same representation.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import BinaryIO, TypeVar

from .._altsvc import AltService
from .._client import AsyncClient
from .._models import Request, Response
from .._pool import ConnectionPool
from . import _altsvc_file, _errors
from ._args import Options
from ._output import Sink, Trace, format_event, format_head, format_json, is_live
from ._progress import Progress, open_progress

__all__ = ["run"]

T = TypeVar("T")

_PROTOCOL_FLAGS: dict[str, tuple[bool, bool, bool | str]] = {
    # Options.protocol -> AsyncClient(http1=, http2=, http3=)
    "http1.1": (True, False, False),
    "http2": (True, True, False),
    "http2-prior-knowledge": (False, True, False),
    "http3": (True, True, True),
    "http3-only": (True, True, "only"),
}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)


def make_client(opts: Options, trace: Trace) -> AsyncClient:
    http1, http2, http3 = _PROTOCOL_FLAGS[opts.protocol]
    client = AsyncClient(
        headers=opts.request.headers,
        auth=opts.auth,
        timeout=opts.timeout,
        verify=opts.verify,
        cert=opts.cert,
        http1=http1,
        http2=http2,
        http3=http3,
        proxy=opts.proxy,
        follow_redirects=opts.follow,
        max_redirects=opts.max_redirects,
        event_hooks={"request": [trace.on_request], "response": [trace.on_response]},
    )
    # curl's habit: no Accept-Encoding unless --compressed, so what is saved is
    # what the server stores (see --help, "output").
    removed = list(opts.request.remove_headers)
    if not opts.compressed:
        removed.append("Accept-Encoding")
    for name in removed:
        if name in client.headers:
            del client.headers[name]
    return client


async def run(opts: Options, trace: Trace) -> int:
    """Do the transfer; return the exit status (library errors propagate to the caller)."""
    spec = opts.request
    resume_from = _partial_size(opts.output) if opts.resume and opts.output else 0
    async with make_client(opts, trace) as client:
        pool = client.transport if isinstance(client.transport, ConnectionPool) else None
        trace.attach(pool, spec.method, spec.url)
        if pool is None or opts.protocol != "http3":
            return await _transfer(client, opts, trace, resume_from)
        # --http3: the Alt-Svc file in, a guess of h3 on the same port for each
        # hop the file says nothing about, and what servers advertised back out
        # (see _altsvc_file).
        guesses: list[AltService] = []

        def guess_h3(request: Request) -> None:
            guess = _altsvc_file.seed_h3_guess(pool.alt_svc, request.url.origin)
            if guess is not None:
                guesses.append(guess)

        client.event_hooks["request"].insert(0, guess_h3)
        if opts.alt_svc is not None:
            _altsvc_file.load(pool.alt_svc, opts.alt_svc)
        try:
            return await _transfer(client, opts, trace, resume_from)
        finally:
            if opts.alt_svc is not None:
                try:
                    _altsvc_file.save(pool.alt_svc, opts.alt_svc, guesses)
                except OSError as exc:  # a cache: never the transfer's failure
                    trace.note(f"cannot write the Alt-Svc cache {opts.alt_svc}: {exc.strerror or exc}")


async def _transfer(client: AsyncClient, opts: Options, trace: Trace, resume_from: int) -> int:
    spec = opts.request
    async with client.stream(
        spec.method,
        spec.url,
        params=spec.params or None,
        headers={"Range": f"bytes={resume_from}-"} if resume_from else None,
        content=spec.content,
        data=spec.form,
        files=spec.files,
    ) as response:
        status = await _deliver(response, opts, trace, resume_from)
    trace.finished(response)
    return status


async def _deliver(response: Response, opts: Options, trace: Trace, resume_from: int) -> int:
    """Write the response where the options say; return the exit status."""
    resuming = resume_from > 0
    if opts.fail and response.status_code >= 400 and not (resuming and response.status_code == 416):
        trace.report("HTTP error", f"{response.status_code} {response.reason_phrase}".rstrip())
        return _errors.HTTP_STATUS
    if opts.mode == "sse" and not _is_event_stream(response):
        # Parsed as an event stream, another body yields no event at all: an
        # empty output and exit 0 would look like a stream with nothing in it.
        kind = response.headers.get("content-type") or "no Content-Type"
        answer = f"{response.status_code} {response.reason_phrase}".rstrip()
        trace.report(
            "not an event stream",
            f"the server answered {answer} with {kind}, not text/event-stream",
            "drop --sse to see the body",
        )
        return _errors.DECODING
    path = None if opts.output == "-" else opts.output
    if opts.head_only or (opts.include and path is None):
        _stdout().write(format_head(response))
    if opts.head_only:
        return _errors.OK
    if path is None:
        await _write_body(response, opts, _stdout(), None, 0)
        return _errors.OK
    return await _download(response, opts, path, trace, resume_from)


async def _download(response: Response, opts: Options, path: str, trace: Trace, resume_from: int) -> int:
    offset = 0
    if resume_from:
        status = response.status_code
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            first = int(match.group(1)) if match else None
            if first != resume_from:
                trace.report(
                    "resume failed",
                    f"asked for bytes from {resume_from}, the server sent "
                    f"Content-Range {response.headers.get('content-range')!r}; {path} left as it was",
                )
                return _errors.RANGE
            offset = resume_from
        elif status == 200:
            trace.note(f"the server ignored the Range request: downloading {path} again from the start")
        elif status == 416:
            match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            complete = int(match.group(1)) if match else None
            if complete is not None and complete != resume_from:
                trace.report(
                    "resume failed",
                    f"{path} has {resume_from} bytes but the server's has {complete}; {path} left as it was",
                )
                return _errors.RANGE
            trace.note(f"{path} is already complete ({resume_from} bytes)")
            return _errors.OK
        else:
            answer = f"{status} {response.reason_phrase}".rstrip()
            trace.report("resume failed", f"the server answered {answer}; {path} left as it was")
            return _errors.HTTP_STATUS
    try:
        # Blocking file I/O on the loop is deliberate: one transfer, no threads (DESIGN.md).
        with open(path, "ab" if offset else "wb") as file:  # noqa: ASYNC230
            progress = None
            if not opts.silent and sys.stderr.isatty():
                length = response.content_length
                total = None if length is None else offset + length
                progress = open_progress(os.path.basename(path) or path, total, offset, sys.stderr)
            try:
                await _write_body(response, opts, Sink(file, flush=False), progress, offset)
            finally:
                if progress is not None:
                    progress.close()
    except OSError as exc:
        trace.report("cannot write output", f"{path}: {exc.strerror or exc}")
        return _errors.LOCAL_WRITE
    return _errors.OK


def _stdout() -> Sink:
    out: BinaryIO = sys.stdout.buffer
    sys.stdout.flush()  # anything printed as text goes first
    return Sink(out, flush=is_live(out))


async def _write_body(response: Response, opts: Options, sink: Sink, progress: Progress | None, offset: int) -> None:
    """Pull the body in the chosen form and write each piece as it arrives."""
    mode = opts.mode
    if mode == "raw":
        chunks = response.aiter_bytes() if opts.compressed else response.aiter_raw()
        await _pump(chunks, sink, response, progress, offset, lambda chunk: chunk)
    elif mode == "lines":
        await _pump(response.aiter_lines(), sink, response, progress, offset, lambda line: (line + "\n").encode())
    elif mode == "sse":
        await _pump(response.aiter_sse(), sink, response, progress, offset, format_event)
    else:
        await _pump(response.aiter_json(), sink, response, progress, offset, format_json)


async def _pump(
    items: AsyncGenerator[T, None],
    sink: Sink,
    response: Response,
    progress: Progress | None,
    offset: int,
    render: Callable[[T], bytes],
) -> None:
    async with aclosing(items):
        async for item in items:
            sink.write(render(item))
            if progress is not None:
                progress.update(offset + response.num_bytes_downloaded)


def _is_event_stream(response: Response) -> bool:
    media_type = response.headers.get("content-type", "").partition(";")[0]
    return media_type.strip().lower() == "text/event-stream"


def _partial_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
