"""Exit statuses of ``httpstream URL`` and the one-line error messages.

The numbers follow curl's where curl has one for the same failure (6, 7, 22,
28, 35, 60, ...), so scripts written around curl's exit codes keep working;
``EXIT_CODES`` is also the table printed by ``--help``.  Every failure class
has its own number: a script can tell "the host is down" (7) from "the
certificate is not trusted" (60) from "the server answered 500" (22, with
``--fail``) without parsing messages.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from .._exceptions import (
    ConnectError,
    DecodingError,
    HTTPStreamError,
    IncompleteBody,
    InsecureRedirect,
    InvalidURL,
    LocalProtocolError,
    ProxyError,
    ReadError,
    RemoteProtocolError,
    TimeoutException,
    TooManyRedirects,
    WriteError,
)

__all__ = ["EXIT_CODES", "Failure", "LocalFileError", "UsageError", "classify", "exit_code_table"]

OK = 0
OTHER = 1
USAGE = 2
BAD_URL = 3
RESOLVE = 6
CONNECT = 7
PROTOCOL = 8
PARTIAL = 18
HTTP_STATUS = 22
LOCAL_WRITE = 23
LOCAL_READ = 26
TIMEOUT = 28
RANGE = 33
TLS = 35
REDIRECTS = 47
SEND = 55
RECEIVE = 56
TLS_CERTIFICATE = 60
DECODING = 61
PROXY = 97
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "success (also: an HTTP error status without --fail)"),
    (OTHER, "any other failure"),
    (USAGE, "bad command line, or a request that cannot be sent as given"),
    (BAD_URL, "invalid URL"),
    (RESOLVE, "cannot resolve the host name"),
    (CONNECT, "cannot connect (refused, unreachable; HTTP/3-only handshake failed)"),
    (PROTOCOL, "the server broke the HTTP protocol"),
    (PARTIAL, "the body ended before it was complete (a partial -o file is kept)"),
    (HTTP_STATUS, "HTTP status 400 or above, with --fail; --resume got an answer it cannot resume from"),
    (LOCAL_WRITE, "cannot write the output file"),
    (LOCAL_READ, "cannot read a file named on the command line (-d @FILE, field@FILE, --cacert, ...)"),
    (TIMEOUT, "timeout (--timeout, --connect-timeout, --max-time)"),
    (RANGE, "--resume: the server answered a different range than asked"),
    (TLS, "TLS handshake failed"),
    (REDIRECTS, "too many redirects, or a redirect from https to http refused"),
    (SEND, "sending the request failed"),
    (RECEIVE, "receiving the response failed"),
    (TLS_CERTIFICATE, "the server's TLS certificate is not trusted (see --cacert, -k)"),
    (DECODING, "the body could not be decoded (--compressed, --lines, --sse, --json-lines)"),
    (PROXY, "the proxy refused or broke the connection"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
    (BROKEN_PIPE, "the reader of standard output went away (| head): the download stopped"),
)


def exit_code_table() -> str:
    """The exit codes as ``--help`` prints them."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed transfer reports: its exit status and a short label for the message."""

    code: int
    label: str
    hint: str = ""


def classify(exc: HTTPStreamError) -> Failure:
    """The exit status and label for one of httpstream's exceptions.

    TLS and name-resolution failures are both ``ConnectError``; the library
    chains the ssl / socket exception as ``__cause__``, which is what tells
    them apart here.
    """
    cause = exc.__cause__
    if isinstance(exc, TimeoutException):
        return Failure(TIMEOUT, "timeout")
    if isinstance(exc, ProxyError):
        return Failure(PROXY, "proxy error")
    if isinstance(exc, ConnectError):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Failure(
                TLS_CERTIFICATE, "TLS certificate not trusted", "--cacert FILE trusts a CA, -k skips the check"
            )
        if isinstance(cause, ssl.SSLError):
            return Failure(TLS, "TLS error")
        if isinstance(cause, socket.gaierror):
            return Failure(RESOLVE, "cannot resolve host")
        return Failure(CONNECT, "connection failed")
    if isinstance(exc, IncompleteBody):
        return Failure(PARTIAL, "incomplete body")
    if isinstance(exc, RemoteProtocolError):
        return Failure(PROTOCOL, "protocol error")
    if isinstance(exc, LocalProtocolError):
        return Failure(USAGE, "cannot send the request")
    if isinstance(exc, ReadError):
        return Failure(RECEIVE, "receive failed")
    if isinstance(exc, WriteError):
        return Failure(SEND, "send failed")
    if isinstance(exc, (TooManyRedirects, InsecureRedirect)):
        return Failure(REDIRECTS, "redirect")
    if isinstance(exc, InvalidURL):
        return Failure(BAD_URL, "invalid URL")
    if isinstance(exc, DecodingError):
        return Failure(DECODING, "decoding failed")
    return Failure(OTHER, "error")


class UsageError(Exception):
    """The command line cannot be turned into a request (exit status 2)."""


class LocalFileError(Exception):
    """A file named on the command line could not be read (exit status 26)."""
