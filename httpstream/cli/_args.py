"""The command line of ``httpstream [METHOD] URL [ITEMS]``: parser, help text, request items.

Parsing is done once, before any I/O: argparse reads the options, then the
positional words are split into METHOD, URL and ITEMS (HTTPie's syntax), and
bodies named with ``@FILE`` are read.  The result is an ``Options`` value that
the transfer (``_run``) uses as it is; every mistake the user can make on the
command line is reported here as ``UsageError`` (exit status 2) or
``LocalFileError`` (26), before a connection is opened.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .._config import Timeout
from .._version import __version__
from ._altsvc_file import default_path
from ._errors import BadURLError, LocalFileError, UnsupportedProtocolError, UsageError, exit_code_table

__all__ = ["Options", "RequestSpec", "build_parser", "parse_args", "parse_form_option", "parse_item"]

FileSpec = tuple[str | None, Path, str | None]  # (filename, path, content type), as files= takes it

PROTOCOLS = ("http1.1", "http2", "http2-prior-knowledge", "http3", "http3-only")
MODES = ("raw", "lines", "sse", "json-lines")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# At one position the longer separator wins: "a==b" is a query item, not a
# field "a" with value "=b"; "a:=1" is raw JSON, not a header.
_SEPARATORS = ("==", ":=", "=", ":", "@")

ALT_SVC_DEFAULT = "$XDG_CACHE_HOME/httpstream/alt-svc, else ~/.cache/httpstream/alt-svc"

DESCRIPTION = """\
Send one HTTP request and stream the answer: the body is written to standard
output (or to -o FILE) as it arrives, so `httpstream URL | head` stops the
download as soon as head has read enough.  HTTP/1.1, HTTP/2 and HTTP/3.

  httpstream example.org/api                      GET (http:// is assumed)
  httpstream POST example.org/api name=x n:=3     a JSON body {"name": "x", "n": 3}
  httpstream example.org/search q==streaming      a query parameter
  httpstream -o big.iso --resume https://example.org/big.iso
  httpstream --sse https://example.org/events

Other commands: `httpstream demo` (a local demonstration, see `httpstream demo --help`);
`httpstream proxy` and `httpstream tunnel` are not built yet.
"""

EPILOG = f"""\
request items (after the URL; a backslash escapes a separator in the name):
  name==value     query parameter, added to the URL's own
  Name:value      request header (as -H); `Name:` removes a default header
                  (User-Agent, Accept), `Name;` sends it with an empty value
  name=value      data field: a JSON object by default, a form with --form-items
  name:=json      raw JSON data field: n:=3, ok:=true, tags:='["a", "b"]'
  field@path      file upload: the body becomes multipart/form-data (the
                  name=value fields go with it as form fields); the file is
                  streamed from disk with a Content-Length
  The method is POST when there is a body (items, -d, -F or --json), else GET;
  with -I it is HEAD.  METHOD before the URL overrides all of that.

curl and HTTPie: every option that curl has means what it means in curl
(-f is --fail, -F is a multipart field, --json takes the body); request items
are HTTPie's.  Where HTTPie spells an option the same way for something else,
the command line that reads like HTTPie's is refused with what to type
instead (HTTPie's -f/--form is --form-items here).  See docs/cli.md.

URL: `example.org/x` means http://example.org/x; `:8000/x` means
http://localhost:8000/x.

output:
  The body goes to standard output unless -o FILE is given, unchanged and as
  it arrives.  As with curl, no Accept-Encoding is sent and a compressed body
  is written as the server sent it (a .tar.gz served with Content-Encoding:
  gzip is saved as the .tar.gz); --compressed asks for gzip, deflate (br, zstd
  when installed) and writes the decoded body.  --lines, --sse and
  --json-lines always decode.
  When standard output is a pipe or a terminal it is flushed per chunk; when
  the reader goes away (`| head`) the download stops at once, the connection
  is released and the exit status is 141, without a message.
  With -o on a terminal a progress bar shows bytes, rate and ETA on standard
  error, counting the bytes as received (compressed, if they are) against
  Content-Length; without a Content-Length the bar is indeterminate (no
  percentage).  Nothing extra is printed when standard error is not a
  terminal, or with -s.
  -v prints to standard error: each request's headers (`> `), each
  response's status line and headers (`< `, redirects included), the
  negotiated protocol, whether the connection was new or reused, and the
  pool's state after the body (`* `).

--resume (with -o FILE): if FILE has N bytes, asks for `Range: bytes=N-`.
  206 with Content-Range starting at N: the rest is appended.  200: the
  server ignored the range; FILE is rewritten from the start (a note says
  so).  416 with Content-Range `bytes */N`: FILE is already complete (exit 0).
  A 206 for another range exits 33; any other status leaves FILE untouched
  and exits 22.  A body cut short keeps what arrived, so --resume can go on.

--http3: try HTTP/3 first (QUIC, on the port Alt-Svc names, else on the
  URL's port), fall back to HTTP/2 or HTTP/1.1 over TCP when the handshake
  fails.  What servers advertise in Alt-Svc is kept across runs in a file in
  curl's format: --alt-svc FILE, by default
  {ALT_SVC_DEFAULT};
  --no-alt-svc neither reads nor writes one.  --http3-only: HTTP/3 or fail
  (exit 7).

errors: one line on standard error: what failed, the request and protocol
once one was sent, and what to do; --debug adds the Python traceback.

exit status:
{exit_code_table()}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSpec:
    """The request as the command line describes it."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    remove_headers: list[str]
    params: list[tuple[str, str]]
    content: bytes | None = None
    form: list[tuple[str, str | bytes]] | None = None
    files: list[tuple[str, FileSpec]] | None = None  # [] still means multipart (-F with text fields only)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Everything the transfer needs, checked."""

    request: RequestSpec
    output: str | None
    resume: bool
    follow: bool
    max_redirects: int
    head_only: bool
    include: bool
    verbose: bool
    silent: bool
    verify: bool | str
    cert: str | tuple[str, str] | None
    timeout: Timeout
    protocol: str
    compressed: bool
    fail: bool
    proxy: str | None
    auth: tuple[str, str] | None
    mode: str
    debug: bool
    alt_svc: Path | None  # the Alt-Svc cache file (used with --http3), None: --no-alt-svc


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds must be 0 (no limit) or more")
    return value


class _Spelled(argparse.Action):
    """A flag that also records how it was spelled: ``-f`` (HTTPie's --form to some) or ``--fail``."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=None, help=kwargs.get("help"))  # type: ignore[arg-type]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, option_string)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="httpstream",
        allow_abbrev=False,  # curl takes no abbreviations; "--form" must never turn into "--form-items"
        usage="httpstream [OPTIONS] [METHOD] URL [ITEMS ...]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words", nargs="*", metavar="[METHOD] URL [ITEMS]", help=argparse.SUPPRESS)
    req = parser.add_argument_group("request")
    req.add_argument("-X", "--request", metavar="METHOD", help="the method (as the METHOD word before the URL)")
    req.add_argument(
        "-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
        help="add a header (repeatable); 'NAME:' removes a default one, 'NAME;' sends it empty",
    )
    req.add_argument(
        "-d", "--data", action="append", default=[], metavar="DATA",
        help="request body, sent as given (repeats are joined with '&'); @FILE reads a file, @- standard "
        "input; Content-Type application/x-www-form-urlencoded unless -H sets one",
    )
    req.add_argument(
        "--json", metavar="DATA",
        help="JSON request body (curl's --json; @FILE, @- as for -d), with Content-Type and Accept "
        "application/json; name=value items make a JSON body without it",
    )
    req.add_argument(
        "-F", "--form", action="append", default=[], metavar="NAME=VALUE",
        help="multipart/form-data field (curl's -F, repeatable): name=value, name=@FILE uploads FILE "
        "(;type=TYPE, ;filename=NAME after it), name=<FILE sends FILE's contents as the value",
    )
    req.add_argument(
        "--form-items", action="store_true",
        help="send name=value items as a urlencoded form, not JSON (HTTPie's -f/--form)",
    )
    req.add_argument("-u", "--user", metavar="USER:PASSWORD", help="HTTP Basic authentication")
    req.add_argument("-A", "--user-agent", metavar="TEXT", help="the User-Agent header")
    req.add_argument("-L", "--location", "--follow", dest="follow", action="store_true", help="follow redirects")
    req.add_argument("--max-redirects", type=int, default=20, metavar="N", help="with -L: at most N (default 20)")
    req.add_argument("--compressed", action="store_true", help="ask for a compressed body and write it decoded")

    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE ('-': standard output)")
    out.add_argument("--resume", action="store_true", help="with -o: continue a partial FILE with a Range request")
    out.add_argument("-I", "--head", action="store_true", help="print the response head only (method HEAD)")
    out.add_argument(
        "-i", "--include", action="store_true", help="print the response head before the body (standard output only)"
    )
    modes = out.add_mutually_exclusive_group()
    modes.add_argument(
        "--lines", dest="mode", action="store_const", const="lines", help="print the body line by line as it arrives"
    )
    modes.add_argument(
        "--sse", dest="mode", action="store_const", const="sse",
        help="print each Server-Sent Event (event, id, retry, data) as it arrives",
    )
    modes.add_argument(
        "--json-lines", dest="mode", action="store_const", const="json-lines",
        help="pretty-print each object of an NDJSON body as it arrives",
    )
    out.add_argument("-v", "--verbose", action="store_true", help="headers, protocol and connection reuse on stderr")
    out.add_argument("-s", "--silent", action="store_true", help="no progress bar (errors are still printed)")
    out.add_argument(
        "-f", "--fail", action=_Spelled, help="on status 400 or above: write no body, exit 22 (curl's -f)"
    )
    out.add_argument("--debug", action="store_true", help="print the Python traceback of an error")

    conn = parser.add_argument_group("connection")
    protocols = conn.add_mutually_exclusive_group()
    protocols.add_argument(
        "--http1.1", dest="protocol", action="store_const", const="http1.1", help="HTTP/1.1 only"
    )
    protocols.add_argument(
        "--http2", dest="protocol", action="store_const", const="http2",
        help="offer HTTP/2 and HTTP/1.1 by ALPN over TLS (the default; http:// URLs use HTTP/1.1)",
    )
    protocols.add_argument(
        "--http2-prior-knowledge", dest="protocol", action="store_const", const="http2-prior-knowledge",
        help="HTTP/2 only, also over cleartext http:// (h2c)",
    )
    protocols.add_argument(
        "--http3", dest="protocol", action="store_const", const="http3",
        help="try HTTP/3 first, fall back to HTTP/2 or HTTP/1.1 over TCP (curl's --http3)",
    )
    protocols.add_argument(
        "--http3-only", dest="protocol", action="store_const", const="http3-only",
        help="HTTP/3 over QUIC or fail, no fallback",
    )
    altsvc = conn.add_mutually_exclusive_group()
    altsvc.add_argument(
        "--alt-svc", metavar="FILE",
        help=f"with --http3: the Alt-Svc cache kept across runs, curl's format (default {ALT_SVC_DEFAULT})",
    )
    altsvc.add_argument("--no-alt-svc", action="store_true", help="with --http3: no Alt-Svc cache file")
    conn.add_argument("-k", "--insecure", action="store_true", help="do not verify the server's TLS certificate")
    conn.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    conn.add_argument("-E", "--cert", metavar="FILE", help="client certificate (PEM, may include the key)")
    conn.add_argument("--key", metavar="FILE", help="private key of --cert, if not in the same file")
    conn.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS",
        help="limit for connecting and for each wait on the peer (0: none; default: connect 10 s, read 30 s)",
    )
    conn.add_argument("--connect-timeout", type=_seconds, metavar="SECONDS", help="limit for connecting (and TLS)")
    conn.add_argument(
        "-m", "--max-time", type=_seconds, metavar="SECONDS", help="limit for the whole transfer, body included"
    )
    conn.add_argument(
        "-x", "--proxy", metavar="URL",
        help="proxy (http://, https://, socks5://, socks5h://); default: HTTP(S)_PROXY, ALL_PROXY, NO_PROXY",
    )
    parser.add_argument("--version", action="version", version=f"httpstream {__version__}")
    return parser


def parse_args(argv: list[str]) -> Options:
    """``Options`` for ``argv``; argparse exits (SystemExit) on unknown options and --help."""
    args = build_parser().parse_intermixed_args(argv)
    method, url, items = _split_words(list(args.words))
    if args.request:
        if method is not None and method != args.request.upper():
            raise UsageError(f"two methods given: {method} and -X {args.request}")
        method = args.request.upper()
    if method is not None and not _TOKEN.fullmatch(method):
        raise UsageError(f"{method!r} is not a valid HTTP method")
    headers: list[tuple[str, str]] = []
    remove: list[str] = []
    if args.user_agent is not None:
        headers.append(("User-Agent", args.user_agent))
    for text in args.header:
        _header_option(text, headers, remove)
    spec = _build_request(method, _checked_url(url), items, headers, remove, args)
    mode = args.mode or "raw"
    if args.resume and args.output in (None, "-"):
        raise UsageError("--resume needs -o FILE (the partial file to continue)")
    if args.resume and (args.compressed or mode != "raw"):
        raise UsageError("--resume continues raw bytes: it cannot be combined with --compressed or a line mode")
    if args.head and mode != "raw":
        raise UsageError("-I prints the head only: it cannot be combined with --lines, --sse or --json-lines")
    if args.key and not args.cert:
        raise UsageError("--key needs --cert")
    for option, path in (("--cacert", args.cacert), ("--cert", args.cert), ("--key", args.key)):
        if path is not None and not Path(path).exists():
            raise LocalFileError(f"cannot read {path!r} for {option}: no such file")
    if args.max_redirects < 0:
        raise UsageError("--max-redirects must be 0 or more")
    auth = None
    if args.user is not None:
        user, colon, password = args.user.partition(":")
        if not colon:
            raise UsageError("-u takes USER:PASSWORD (there is no password prompt)")
        auth = (user, password)
    return Options(
        request=spec,
        output=args.output,
        resume=args.resume,
        follow=args.follow,
        max_redirects=args.max_redirects,
        head_only=args.head,
        include=args.include,
        verbose=args.verbose,
        silent=args.silent,
        verify=False if args.insecure else (args.cacert or True),
        cert=(args.cert, args.key) if args.key else args.cert,
        timeout=_timeout(args.timeout, args.connect_timeout, args.max_time),
        protocol=args.protocol or "http2",
        compressed=args.compressed,
        fail=args.fail is not None,
        proxy=args.proxy,
        auth=auth,
        mode=mode,
        debug=args.debug,
        alt_svc=None if args.no_alt_svc else Path(args.alt_svc) if args.alt_svc else default_path(),
    )


def _timeout(each: float | None, connect: float | None, total: float | None) -> Timeout:
    """The client Timeout: library defaults unless given; 0 means no limit (as curl)."""
    base = Timeout() if each is None else Timeout.all(each or None)
    return Timeout(
        connect=base.connect if connect is None else (connect or None),
        read=base.read,
        write=base.write,
        pool=base.pool,
        total=None if total is None else (total or None),
    )


def _split_words(words: list[str]) -> tuple[str | None, str, list[str]]:
    """METHOD (or None), URL and ITEMS from the positional words.

    The first word is a method only when a URL follows it and it looks like
    one: a known method in any case, or any all-capitals token, so
    ``httpstream localhost`` still means the host.
    """
    if not words:
        raise UsageError("no URL given")
    first = words[0]
    if len(words) >= 2 and first.isalpha() and (first.upper() in KNOWN_METHODS or first.isupper()):
        return first.upper(), words[1], words[2:]
    return None, first, words[1:]


def _checked_url(url: str) -> str:
    """``url`` with http:// added when it has no scheme; empty, host-less and non-HTTP URLs refused.

    The library would refuse them too, but in its own words ("must be
    absolute, got 'http:'"); curl's are "no URL" and "protocol not supported".
    """
    if not url.strip():
        raise BadURLError("empty URL: give the address to fetch, such as https://example.org/")
    full = _normalize_url(url.strip())
    scheme, _, rest = full.partition("://")
    if scheme.lower() not in ("http", "https"):
        raise UnsupportedProtocolError(
            f"protocol {scheme!r} not supported in {url!r}: httpstream speaks http:// and https://"
        )
    if not rest or rest[0] in "/?#":
        raise BadURLError(f"URL {url!r} has no host: give one, such as {scheme}://example.org/")
    return full


def _normalize_url(url: str) -> str:
    if "://" in url:
        return url
    if url.startswith(":"):
        rest = url[1:]
        return "http://localhost" + (url if rest[:1].isdigit() else "/" + rest.lstrip("/"))
    return "http://" + url


@dataclass(frozen=True, slots=True)
class Item:
    """One request item: ``separator`` is one of ``== := = : @`` (or ``;``)."""

    separator: str
    name: str
    value: str


def parse_item(text: str) -> Item:
    """Split ``text`` at its first separator; a backslash escapes the next character of the name."""
    name: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            name.append(text[i + 1])
            i += 2
            continue
        for sep in _SEPARATORS:
            if text.startswith(sep, i):
                if not name:
                    raise UsageError(f"request item {text!r} has no name before {sep!r}")
                return Item(sep, "".join(name), text[i + len(sep) :])
        name.append(char)
        i += 1
    if text.endswith(";") and len(text) > 1:
        return Item(";", text[:-1], "")
    raise UsageError(
        f"{text!r} is not a request item: expected name==value, Name:value, name=value, name:=json or field@file"
    )


def _header_option(text: str, headers: list[tuple[str, str]], remove: list[str]) -> None:
    name, colon, value = text.partition(":")
    if colon:
        _add_header(name.strip(), value.strip(), headers, remove)
    elif text.endswith(";"):
        headers.append((_checked_name(text[:-1].strip()), ""))
    else:
        raise UsageError(f"-H {text!r}: expected 'Name: value'")


def _checked_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise UsageError(f"{name!r} is not a valid header name")
    return name


def _add_header(name: str, value: str, headers: list[tuple[str, str]], remove: list[str]) -> None:
    _checked_name(name)
    if value:
        headers.append((name, value))
    else:
        remove.append(name)


def _read_source(value: str, what: str) -> bytes:
    """``value`` as bytes, or the contents of the file it names (``@FILE``, ``@-`` for stdin)."""
    if not value.startswith("@"):
        return value.encode("utf-8")
    path = value[1:]
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LocalFileError(f"cannot read {path!r} for {what}: {exc.strerror or exc}") from None


def _build_request(
    method: str | None,
    url: str,
    items: list[str],
    headers: list[tuple[str, str]],
    remove: list[str],
    args: argparse.Namespace,
) -> RequestSpec:
    params: list[tuple[str, str]] = []
    fields: list[tuple[str, object]] = []  # (name, str or parsed JSON) in order
    raw_json_names: list[str] = []
    files: list[tuple[str, Path]] = []
    for text in items:
        item = parse_item(text)
        if item.separator == "==":
            params.append((item.name, item.value))
        elif item.separator == ":":
            _add_header(item.name, item.value, headers, remove)
        elif item.separator == ";":
            headers.append((_checked_name(item.name), ""))
        elif item.separator == "=":
            fields.append((item.name, item.value))
        elif item.separator == ":=":
            try:
                fields.append((item.name, json.loads(item.value)))
            except ValueError as exc:
                raise UsageError(f"{text!r}: the value after ':=' is not JSON ({exc})") from None
            raw_json_names.append(item.name)
        else:
            path = Path(item.value)
            if not path.is_file():
                raise LocalFileError(f"cannot read {item.value!r} for field {item.name!r}: no such file")
            files.append((item.name, path))

    if args.fail == "-f" and (fields or files):
        raise UsageError(
            "-f is --fail here (curl's meaning); to send the name=value items as a form, "
            "use --form-items (HTTPie's -f/--form), or write --fail to keep both"
        )
    if args.json is not None and not args.json.startswith("@"):
        try:
            json.loads(args.json)
        except ValueError:
            raise UsageError(
                f"--json takes the JSON body itself (curl's --json DATA), and {args.json!r} is not JSON; "
                "name=value items already make a JSON body (HTTPie's --json flag is the default here)"
            ) from None
    multipart = [parse_form_option(text) for text in args.form]
    given_bodies = (("-d", args.data), ("--json", args.json), ("-F", multipart), ("data items", fields or files))
    bodies = [name for name, given in given_bodies if given]
    if len(bodies) > 1:
        raise UsageError(f"give one request body: {' and '.join(bodies)} were both given")
    defaults: list[tuple[str, str]] = []
    content: bytes | None = None
    form: list[tuple[str, str | bytes]] | None = None
    upload: list[tuple[str, FileSpec]] | None = None
    if args.data:
        content = b"&".join(_read_source(value, "-d") for value in args.data)
        defaults.append(("Content-Type", "application/x-www-form-urlencoded"))
    elif args.json is not None:
        content = _read_source(args.json, "--json")
        defaults += [("Content-Type", "application/json"), ("Accept", "application/json")]
    elif multipart:
        form = [(name, value) for name, value in multipart if not isinstance(value, tuple)]
        upload = [(name, value) for name, value in multipart if isinstance(value, tuple)]
    elif files or args.form_items:
        if raw_json_names:
            raise UsageError(f"name:=json fields ({', '.join(raw_json_names)}) need a JSON body, not a form")
        form = [(name, str(value)) for name, value in fields]
        upload = [(name, (path.name, path, None)) for name, path in files] or None
    elif fields:
        content = json.dumps(dict(fields), ensure_ascii=False).encode("utf-8")
        defaults += [("Content-Type", "application/json"), ("Accept", "application/json, */*;q=0.5")]
    has_body = content is not None or bool(form) or upload is not None
    given = {name.lower() for name, _ in headers} | {name.lower() for name in remove}
    headers += [(name, value) for name, value in defaults if name.lower() not in given]
    if method is None:
        method = "HEAD" if args.head else ("POST" if has_body else "GET")
    return RequestSpec(
        method=method,
        url=url,
        headers=headers,
        remove_headers=remove,
        params=params,
        content=content,
        form=form if form or upload is not None else None,
        files=upload,
    )


def parse_form_option(text: str) -> tuple[str, str | bytes | FileSpec]:
    """One ``-F`` value, as curl reads it: ``name=value``, ``name=@FILE[;type=T][;filename=N]``, ``name=<FILE``."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise UsageError(
            f"-F takes name=value, name=@FILE or name=<FILE (curl's -F), not {text!r}; "
            "HTTPie's --form flag is --form-items here"
        )
    if value.startswith("<"):
        return name, _read_source("@" + value[1:], f"-F {name}")
    if not value.startswith("@"):
        return name, value
    path_text, filename, content_type = value[1:], None, None
    if not Path(path_text).is_file():  # "@file;type=text/plain;filename=x.txt", unless that is the file's name
        path_text, *params = path_text.split(";")
        for param in params:
            key, _, param_value = param.partition("=")
            if key.strip() == "type":
                content_type = param_value.strip()
            elif key.strip() == "filename":
                filename = param_value.strip()
            else:
                raise UsageError(f"-F {text!r}: unknown ;{key.strip()}= (curl's type= and filename= are known)")
    path = Path(path_text)
    if not path.is_file():
        raise LocalFileError(f"cannot read {path_text!r} for -F {name}: no such file")
    return name, (filename or path.name, path, content_type)
