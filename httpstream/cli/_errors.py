"""Exit statuses of ``httpstream URL`` and the one-line error messages.

The numbers follow curl's where curl has one for the same failure (6, 7, 22,
28, 35, 60, ...), so scripts written around curl's exit codes keep working;
``EXIT_CODES`` is also the table printed by ``--help``.  Every failure class
has its own number: a script can tell "the host is down" (7) from "the
certificate is not trusted" (60) from "the server answered 500" (22, with
``--fail``) without parsing messages.
"""

from __future__ import annotations

import re
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

__all__ = [
    "EXIT_CODES",
    "BadURLError",
    "CommandLineError",
    "Failure",
    "LocalFileError",
    "UnsupportedProtocolError",
    "UsageError",
    "classify",
    "exit_code_table",
    "message_for",
]

OK = 0
OTHER = 1
UNSUPPORTED_PROTOCOL = 1  # curl's CURLE_UNSUPPORTED_PROTOCOL is 1 too
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
    (OTHER, "the URL's protocol is not http:// or https:// (ftp://, ...), or any other failure"),
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
    (DECODING, "the body could not be decoded (--compressed, --lines, --sse, --json-lines), or --sse "
     "got a response that is not text/event-stream"),
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
    """The exit status, label and hint for one of httpstream's exceptions.

    TLS and name-resolution failures are both ``ConnectError``; the library
    chains the ssl / socket exception as ``__cause__``, which is what tells
    them apart here.
    """
    cause = exc.__cause__
    if isinstance(exc, TimeoutException):
        return Failure(TIMEOUT, "timeout", "--timeout, --connect-timeout and -m set the limits")
    if isinstance(exc, ProxyError):
        return Failure(PROXY, "proxy error", "check --proxy or the *_PROXY environment variables")
    if isinstance(exc, ConnectError):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Failure(
                TLS_CERTIFICATE, "TLS certificate not trusted", "--cacert FILE trusts a CA, -k skips the check"
            )
        if isinstance(cause, ssl.SSLError):
            return Failure(TLS, "TLS error", "--http1.1 or --cacert may help; --debug shows the details")
        if isinstance(cause, socket.gaierror):
            return Failure(RESOLVE, "cannot resolve host", "check the host name in the URL")
        if isinstance(cause, ConnectionRefusedError):
            return Failure(CONNECT, "connection refused", "is a server listening on that host and port?")
        return Failure(CONNECT, "cannot connect", "check the host and port, and the network")
    if isinstance(exc, IncompleteBody):
        return Failure(PARTIAL, "incomplete body", "run again; with -o FILE, --resume continues what arrived")
    if isinstance(exc, RemoteProtocolError) and str(exc).startswith("redirect to unsupported scheme"):
        # The client's words for a Location such as ftp://; curl's "protocol not supported".
        return Failure(UNSUPPORTED_PROTOCOL, "protocol not supported", "httpstream follows http:// and https:// only")
    if isinstance(exc, RemoteProtocolError):
        return Failure(PROTOCOL, "protocol error", "the server's answer is not valid HTTP; --debug shows the details")
    if isinstance(exc, LocalProtocolError):
        return Failure(USAGE, "cannot send the request")
    if isinstance(exc, ReadError):
        return Failure(RECEIVE, "receive failed", "the connection broke; run again")
    if isinstance(exc, WriteError):
        return Failure(SEND, "send failed", "the connection broke; run again")
    if isinstance(exc, TooManyRedirects):
        return Failure(REDIRECTS, "too many redirects", "--max-redirects N allows more")
    if isinstance(exc, InsecureRedirect):
        return Failure(REDIRECTS, "redirect refused")
    if isinstance(exc, InvalidURL):
        return Failure(BAD_URL, "invalid URL", "check the URL; quote it in the shell")
    if isinstance(exc, DecodingError):
        return Failure(DECODING, "decoding failed")
    return Failure(OTHER, "error")


# Library messages end "...; the body is incomplete" (after N bytes): under the
# label "incomplete body" that says it twice.
_INCOMPLETE = re.compile(r";\s*the body is incomplete(?: or too long)?(?: after (\d+) bytes)?")
_CONNECT_TO = re.compile(r"^cannot connect to (.+?): ")


def message_for(exc: HTTPStreamError, failure: Failure) -> str:
    """The text after the label: the library's message, without what the label already says."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, IncompleteBody):
        text = _INCOMPLETE.sub(lambda m: f" after {m.group(1)} bytes" if m.group(1) else "", text)
    if failure.label == "connection refused":
        match = _CONNECT_TO.match(text)
        return match.group(1) if match else text
    return text


def format_failure(label: str, message: str) -> str:
    """``label: message``, or the message alone when it starts by saying the same."""
    if message.lower().startswith(label.lower()):
        return message
    return f"{label}: {message}"


class CommandLineError(Exception):
    """What is wrong with the command line, found before any I/O; ``code`` is the exit status."""

    code = USAGE
    see_help = False


class UsageError(CommandLineError):
    """The command line cannot be turned into a request (exit status 2)."""

    see_help = True


class BadURLError(CommandLineError):
    """The URL is empty or has no host (exit status 3, as curl's)."""

    code = BAD_URL


class UnsupportedProtocolError(CommandLineError):
    """A URL scheme other than http and https (exit status 1, as curl's "protocol not supported")."""

    code = UNSUPPORTED_PROTOCOL


class LocalFileError(CommandLineError):
    """A file named on the command line could not be read (exit status 26)."""

    code = LOCAL_READ
