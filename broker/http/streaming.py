"""Answers whose body is written in parts (a hosted WSGI app's iterable).

A handler answers :class:`HTTPStream` instead of an ``HTTPResponse``: the
protocol writes the head, then calls ``stream.start(writer)``.  The
:class:`StreamWriter` frames the parts (``Content-Length`` when the length
is known, chunked on HTTP/1.1, else close-delimited) and passes the
transport's back-pressure on: :meth:`StreamWriter.write` answers a Deferred
when the client is not reading, firing once it reads again.  Later requests
on the connection wait until :meth:`StreamWriter.finish`.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone

__all__ = ["LARGE_BODY", "HTTPStream", "StreamWriter", "in_pieces"]

#: An answer's body longer than this is written a piece at a time as the client takes it.
LARGE_BODY = 128 * 1024
_PIECE = 64 * 1024


class HTTPStream:
    """An answer whose body follows the head in parts.

    :param status: the HTTP status.
    :param headers: ``[(name, value)]``; framing headers are the protocol's.
    :param start: ``callable(writer)``, called once the head is written.
    :param length: the body's length if known (``Content-Length``), else None.
    """

    __slots__ = ("status", "headers", "start", "length", "body")

    def __init__(self, status, headers, start, length=None):
        self.status = status
        self.headers = headers
        self.start = start
        self.length = length
        self.body = b""  # for access logs: the size is in ``StreamWriter.sent``


class StreamWriter:
    """Writes one streamed body to the connection; made by the protocol.

    :ivar sent: body bytes written so far.
    :ivar lost: the connection went away; further writes are dropped.
    """

    def __init__(self, protocol, chunked, length, discard, close):
        self._protocol = protocol
        self._transport = protocol.transport
        self._chunked = chunked
        self._remaining = length
        self._discard = discard
        self._close = close
        self._waiting = None
        self.sent = 0
        self.done = self.lost = False

    def write(self, data):
        """Write a part; None when more may be written now, else a Deferred.

        The Deferred fires when the client reads again, or fails with
        ``ConnectionDone`` when it went away.
        """
        if self.done or self.lost:
            return None
        if data and not self._discard:
            remaining = self._remaining
            if remaining is not None:
                if len(data) > remaining:  # never more than the declared length
                    data = data[:remaining]
                self._remaining = remaining - len(data)
            if data:
                if self._chunked:
                    self._transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])
                else:
                    self._transport.write(data)
                self.sent += len(data)
        if self._protocol._consumer_paused:
            self._waiting = waiting = Deferred()
            return waiting
        return None

    def finish(self):
        """The body is complete: end it; the connection takes the next request."""
        if self.done or self.lost:
            return
        self.done = True
        if self._chunked and not self._discard:
            self._transport.write(b"0\r\n\r\n")
        short = bool(self._remaining) and not self._discard  # fewer bytes than declared
        self._protocol._stream_done(self, close=self._close or short)

    def abort(self):
        """The body cannot be completed: cut the connection so the client sees it broken."""
        if self.done or self.lost:
            return
        self.done = True
        self._protocol._stream_done(self, abort=True)

    # -- called by the protocol ------------------------------------------------

    def resumed(self):
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)

    def connection_lost(self):
        self.lost = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(ConnectionDone("the client went away"))


def in_pieces(status, headers, body):
    """An answer with a large ``body`` (bytes) as a stream of pieces written as the client
    takes them: a client reading slowly holds a piece here, not a copy of the whole body (a
    shared one, such as the docs' script, is not copied at all)."""
    view = memoryview(body)
    return HTTPStream(status, headers, lambda writer: _feed(writer, view, 0), len(view))


def _feed(writer, body, offset):
    while offset < len(body) and not writer.lost:
        waiting = writer.write(body[offset:offset + _PIECE].tobytes())
        offset += _PIECE
        if waiting is not None:  # the client is not reading: go on when it does
            waiting.addCallbacks(lambda _: _feed(writer, body, offset), lambda _: None)
            return
    writer.finish()
