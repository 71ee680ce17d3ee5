"""Bodies of outgoing HTTP calls: reading them with a size cap, parsing, encoding.

:func:`read_body` collects a response body and stops the transfer as soon as
it passes the cap.  :func:`parse_body` turns the bytes into data in the
connection's format (``json``, ``xml`` through the one hardened parser,
``csv`` as a list of row dicts, ``raw`` bytes), raising :class:`ValueError`
with a short reason.  :func:`encode_body` does the opposite for requests.
"""

import csv
import io
import json
import re

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from broker.errors import BadRequest
from broker.jsonfast import JSONInputError, decode_json
from broker.xmlsafe import parse_xml, serialize_xml

__all__ = ["FORMATS", "BodyTooLarge", "encode_body", "parse_body", "read_body"]

#: The data formats an outgoing HTTP connection may name.
FORMATS = ("json", "xml", "csv", "raw")

CONTENT_TYPES = {"json": "application/json", "xml": "application/xml",
                 "csv": "text/csv; charset=utf-8", "raw": "application/octet-stream"}

_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)


class BodyTooLarge(Exception):
    """The body passed the cap; ``args[0]`` is how many bytes had arrived."""


class _Collector(Protocol):
    def __init__(self, limit, finished):
        self.limit = limit
        self.finished = finished
        self.size = 0
        self.parts = []

    def dataReceived(self, data):
        if self.finished.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.parts = []
            self.transport.stopProducing()
            self.finished.errback(BodyTooLarge(self.size))
            return
        self.parts.append(data)

    def connectionLost(self, reason):
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(reason)


def read_body(response, limit):
    """A Deferred firing with the body of ``response`` (an ``IResponse``).

    It fails with :class:`BodyTooLarge` once more than ``limit`` bytes arrive
    (or at once when ``Content-Length`` says so) and the connection is
    dropped; cancelling it drops the connection too.
    """
    collector = None

    def cancel(d):
        if collector is not None and collector.transport is not None:
            collector.transport.stopProducing()

    finished = defer.Deferred(cancel)
    length = response.length
    if isinstance(length, int) and length > limit:
        response.deliverBody(_Discard())
        return defer.fail(BodyTooLarge(length))
    collector = _Collector(limit, finished)
    response.deliverBody(collector)
    return finished


class _Discard(Protocol):
    """Takes a body we refused and drops the connection at once."""

    def makeConnection(self, transport):
        super().makeConnection(transport)
        transport.stopProducing()


def _charset(content_type, default="utf-8"):
    found = _CHARSET.search(content_type or "")
    return found.group(1) if found else default


def parse_body(data_format, body, content_type=""):
    """``body`` as data in ``data_format``; an empty body is None.

    :raise ValueError: the body does not parse; the message is short and
        safe to show (no body content beyond a position).
    """
    if data_format == "raw":
        return body
    if not body.strip():
        return None
    if data_format == "json":
        charset = _charset(content_type)
        try:
            if charset.lower().replace("-", "") != "utf8":
                body = body.decode(charset).encode("utf-8")
            return decode_json(body)
        except (UnicodeError, LookupError):
            raise ValueError(f"the JSON body is not valid {charset} text") from None
        except JSONInputError as exc:
            if exc.reason.startswith("not valid UTF-8"):
                raise ValueError(f"the JSON body is not valid {charset} text") from None
            raise ValueError(f"malformed JSON: {exc.reason}") from None
    if data_format == "xml":
        try:
            return parse_xml(body)
        except BadRequest as exc:
            raise ValueError(exc.message) from None
    if data_format == "csv":
        return _parse_csv(body, content_type)
    raise ValueError(f"unknown data format {data_format!r}")


def _parse_csv(body, content_type):
    charset = _charset(content_type, "utf-8-sig")
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise ValueError(f"the CSV body is not valid {charset} text") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        if not header or any(not name.strip() for name in header):
            raise ValueError("malformed CSV: the header row has an empty column name")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"malformed CSV: line {reader.line_num} has {len(row)} fields, "
                                 f"the header has {len(header)}")
            rows.append(dict(zip(header, row)))
    except csv.Error as exc:
        raise ValueError(f"malformed CSV: {exc} (line {reader.line_num})") from None
    return rows


def encode_body(data_format, data):
    """``(bytes, content_type)`` for a request body in ``data_format``."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), CONTENT_TYPES[data_format]
    if isinstance(data, str):
        return data.encode(), CONTENT_TYPES[data_format]
    if data_format == "json":
        return json.dumps(data, separators=(",", ":")).encode(), CONTENT_TYPES["json"]
    if data_format == "xml" and hasattr(data, "tag"):
        return serialize_xml(data), CONTENT_TYPES["xml"]
    if data_format == "csv" and isinstance(data, (list, tuple)):
        out = io.StringIO()
        rows = [dict(row) for row in data]
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode(), CONTENT_TYPES["csv"]
    raise TypeError(f"cannot send a {type(data).__name__} as {data_format}")
