"""The HTTP wire format: parsed requests, answers, status lines, header rendering.

Shared by :mod:`broker.http.protocol` and its helpers; everything
here is precomputed or memoised (bounded) because it runs on every request.
"""

import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

from httptools import parse_url
from twisted.logger import Logger

__all__ = ["HTTPRequest", "HTTPResponse", "Refusal", "chunked_only", "header_block", "split_target",
           "status_line"]

log = Logger()


@dataclass(slots=True)
class HTTPRequest:
    """One parsed request, as the handler sees it.

    ``raw_head`` holds the raw request line and headers of a request asking
    to upgrade the connection (``Connection: upgrade``); it is ``b""`` for
    every other request.
    """

    method: str
    path: str
    query: str
    version: str
    headers: dict
    body: bytes
    keep_alive: bool
    peer: str
    raw_head: bytes


@dataclass(slots=True)
class HTTPResponse:
    """One answer: the protocol adds Content-Length, Date, Server and Connection."""

    status: int
    headers: list
    body: bytes = b""


def status_line(status):
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


STATUS_LINES = {status: status_line(status) for status in range(100, 600)}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LENGTHS_CACHED = 2048
LENGTHS = [b"Content-Length: %d\r\n" % size for size in range(LENGTHS_CACHED)]
NO_BODY = frozenset((*range(100, 200), 204, 304))  # statuses without content
METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
# Headers the protocol writes itself: an app's own are dropped.
RESERVED = frozenset(("content-length", "transfer-encoding", "connection", "date", "server"))
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but HTAB
# Memos, bounded: request header names lower-cased, response header names checked.
MEMO_SIZE = 1024
NAMES = {}
TARGETS = {}
CLEAN_NAMES = set()


def split_target(url):
    """Split a request target into a percent-decoded path and a raw query string.

    :raises httptools.HttpParserInvalidURLError: for a target httptools rejects.
    :raises UnicodeDecodeError: the path is not UTF-8 once percent-decoded.
    """
    split = TARGETS.get(url)
    if split is None:
        split = split_new_target(url)
        if len(TARGETS) < MEMO_SIZE:
            TARGETS[url] = split
    return split


def split_new_target(url):
    target = url.decode("latin-1")
    if target[:1] == "/" and "%" not in target and "#" not in target:
        path, _, query = target.partition("?")
        return path, query
    if target[:1] == "/":
        target = target.partition("#")[0]
        path, _, query = target.partition("?")
    else:  # absolute-form ("http://host/p?q") or asterisk-form ("*")
        parsed = parse_url(url)
        path = (parsed.path or b"/").decode("latin-1")
        query = (parsed.query or b"").decode("latin-1")
    return unquote(path, errors="strict") if "%" in path else path, query


def chunked_only(transfer_encoding):
    """Whether a ``Transfer-Encoding`` value names ``chunked`` alone (RFC 9112 §6.1).

    llhttp refuses a value whose last coding is not ``chunked``; what it lets
    through may still put another coding (``gzip, chunked``) before it.
    """
    if transfer_encoding == "chunked":
        return True
    codings = [c.strip().lower() for c in transfer_encoding.split(",")]
    return [c for c in codings if c] == ["chunked"]


def header_block(headers):
    """Render an app's headers the slow way: drop bad or reserved names, strip CR/LF."""
    lines = []
    for name, value in headers:
        name, value = str(name), str(value)
        if name.lower() in RESERVED or not TOKEN.fullmatch(name):
            continue
        if len(CLEAN_NAMES) < MEMO_SIZE:
            CLEAN_NAMES.add(name)
        if not value.isprintable():
            if "\r" in value or "\n" in value or "\0" in value:
                log.warn("CR/LF removed from response header {name}", name=name)
            value = CONTROLS.sub(" ", value)
        lines.append(f"{name}: {value}\r\n")
    block = "".join(lines)
    try:
        return block.encode("latin-1")
    except UnicodeEncodeError:
        return block.encode("utf-8")


class Refusal:
    """A protocol-level error answer, queued in order behind earlier requests."""

    __slots__ = ("status", "message")

    def __init__(self, status, message):
        self.status = status
        self.message = message
