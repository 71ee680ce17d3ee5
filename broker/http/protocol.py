"""A lean HTTP/1.1 server protocol: httptools (llhttp) inside the Twisted reactor.

This is the broker's HTTP front door and where its speed is won, so it is
not twisted.web: one parser per connection, requests as slotted records,
one ``transport.write`` per response, a Date header cached per second, one
timer per connection left alone on the keep-alive hot path, and no logging
per request unless access logging is on.

It is a correct HTTP/1.1 server: keep-alive, pipelining answered strictly in
order, ``Expect: 100-continue``, HEAD, chunked bodies (no other transfer
coding: 501), one ``Host`` per HTTP/1.1 request, limits on head and
body sizes, slowloris/idle/body/write deadlines, back-pressure both ways, and the
hand-over of ``Upgrade`` requests (WebSocket) to another protocol.
"""

from collections import deque
from email.utils import formatdate

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from broker.fastwrite import write_now
from broker.http.limits import COUNTERS, DRAINING, HEADER, IDLE, FlowControl, HTTPLimits
from broker.http.streaming import LARGE_BODY, HTTPStream, StreamWriter, in_pieces
from broker.http.upgrade import UpgradeHandOver
from broker.security.certs import TLSPeer
from broker.http.wire import (
    CLEAN_NAMES, CONTINUE, LENGTHS, LENGTHS_CACHED, MEMO_SIZE, METHODS, NAMES, NO_BODY, STATUS_LINES,
    HTTPRequest, HTTPResponse, Refusal, chunked_only, header_block, split_target, status_line)

__all__ = ["HTTPLimits", "HTTPProtocol", "HTTPRequest", "HTTPResponse", "HTTPServerFactory",
           "HTTPStream"]

log = Logger()


class _Stop(Exception):
    """Raised from a parser callback to stop parsing; the refusal is already queued."""


@implementer(IPushProducer)
class HTTPProtocol(UpgradeHandOver, FlowControl, Protocol):
    """One HTTP/1.1 server connection.

    It is also the transport's streaming producer: when the client stops
    reading our answers, the transport pauses us and we stop reading requests.

    :param factory: the :class:`HTTPServerFactory` that built it.
    """

    def __init__(self, factory):
        self.factory = factory
        self._limits = limits = factory.limits
        self._handler = factory.handler
        self._upgrade = getattr(factory.handler, "upgrade", None)
        self._access_log = factory.access_log
        self._counters = factory.counters
        self._seconds = factory.reactor.seconds
        self._call_later = factory.reactor.callLater
        self._max_body = limits.max_body_size
        self._max_body_digits = len(str(limits.max_body_size))  # shorter lengths are below it
        self._max_headers = limits.max_header_count
        self._max_head = limits.max_header_size
        self._tail = factory.tail
        self._tail_close = factory.tail_close
        self._tail_keep_alive = factory.tail_keep_alive
        self._parser = HttpRequestParser(self)
        self._peer = ""
        self._queue = deque()
        self._body_parts = []
        # the request being parsed
        self._request = self._headers = None
        self._url = b""
        self._header_count = self._head_raw = self._body_size = 0
        self._in_head = self._in_body = False
        # the read its head began in: for the head's raw bytes and raw size
        self._data = self._head_more = None
        self._reads = self._begin_read = self._complete_read = 0
        self._begin_clean = True
        # answering
        self._active = self._deferred = self._stream = self._stream_response = None
        self._started = self._answered_at = 0.0
        self._processing = self._continue_pending = False
        self._fresh = True
        self._upgrade_candidate = self._upgrade_wait = self._resumed = self._upgraded = None
        # connection state, flow control and the timer
        self._discard = self._closing = self._counted = self._registered = False
        self._last_request = False
        self._pipeline_paused = self._consumer_paused = self._reading_paused = False
        self._timer = self._timer_kind = None
        self._deadline = 0.0

    # -- connection ---------------------------------------------------------

    def connectionMade(self):
        """Count the connection, or refuse it over ``max_connections``."""
        factory = self.factory
        peer = self.transport.getPeer()
        self._peer = str(getattr(peer, "host", None) or getattr(peer, "name", None) or "")
        if ISSLTransport.providedBy(self.transport):  # a client certificate may name the caller
            self._peer = TLSPeer(self._peer, self.transport)
        if factory.open_connections >= self._limits.max_connections:
            self._counters["rejected_connections"] += 1
            self._discard = True
            self._active = Refusal(503, "Too many connections")
            self._respond(self._error_response(503, "Too many connections"))
            return
        factory.open_connections += 1
        factory.protocols.add(self)
        self._counted = True
        self._counters["connections"] += 1
        self.transport.registerProducer(self, True)
        self._registered = True
        self._arm(HEADER, self._limits.header_timeout)

    def connectionLost(self, reason=None):
        """Cancel the answer in progress and the timer; drop queued requests."""
        if self._counted:
            self._counted = False
            self.factory.open_connections -= 1
            self.factory.protocols.discard(self)
        if self._upgraded is not None:
            self._upgraded.connectionLost(reason)
            return
        self._closing = self._discard = True
        self._cancel_timer()
        self._queue.clear()
        self._upgrade_wait = self._upgrade_candidate = self._active = None
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred.cancel()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.connection_lost()
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()

    def resumeProducing(self):
        """The client reads again: so do we, a streamed answer may go on, and so may the
        answers to requests it pipelined."""
        FlowControl.resumeProducing(self)
        stream = self._stream
        if stream is not None:
            stream.resumed()
        elif self._queue and self._active is None:
            self._pump()

    def dataReceived(self, data):
        """Feed the parser, then answer what it completed."""
        if self._discard:
            if self._upgraded is not None:
                self._upgraded.dataReceived(data)
            elif self._upgrade_wait is not None:
                self._upgrade_wait[1].append(data)
            return
        self._reads += 1
        self.factory.bytes_received += len(data)
        if self._in_head:  # the head goes on from an earlier read
            if self._head_more is None:
                self._head_more = [self._data, data]  # the read it began in, this one
            else:
                self._head_more.append(data)
        self._data = data
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            self._upgrade_received(data, upgrade.args[0])
        except HttpParserError as error:
            if not self._discard:
                self._malformed(error)
        if self._in_head and not self._discard:
            self._count_head(data)
        else:  # hold no read longer than needed
            self._data = self._head_more = None
        if self._queue or self._discard:
            self._pump()
        else:
            self._update()

    # -- parser callbacks ----------------------------------------------------

    def on_message_begin(self):
        self._url = b""
        self._headers = {}
        self._header_count = self._body_size = 0
        self._in_head = True
        self._begin_read = reads = self._reads
        self._begin_clean = self._complete_read != reads
        self._head_more = None

    def on_url(self, url):
        self._url += url

    def on_header(self, name, value):
        self._header_count += 1
        if self._header_count > self._max_headers:
            self._refuse(431, "Too many request headers", "too_many_headers")
            raise _Stop
        key = NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(NAMES) < MEMO_SIZE:
                NAMES[name] = key
        if value and value[-1] in (32, 9):  # llhttp keeps trailing whitespace
            value = value.rstrip(b" \t")
        headers = self._headers
        if key in headers:
            if key == "host":  # RFC 9112 §3.2: exactly one
                self._refuse(400, "More than one Host header", "malformed")
                raise _Stop
            headers[key] += ", " + value.decode("latin-1")
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self):
        self._in_head = False
        self._in_body = True
        # A head within one read is no larger than the read: measure only if it may be over.
        if (self._begin_read != self._reads or len(self._data) > self._max_head) \
                and self._head_size() > self._max_head:
            self._refuse(431, "Request head too large", "headers_too_large")
            raise _Stop
        request = self._resumed
        if request is None:
            parser = self._parser
            headers = self._headers
            keep_alive = parser.should_keep_alive()
            if keep_alive and "connection" not in headers and "proxy-connection" not in headers:
                version = "1.1"  # llhttp keeps alive by default only HTTP/1.1 (x.y, y > 0)
            else:
                version = parser.get_http_version()
                if version != "1.1" and version != "1.0":
                    self._refuse(505, "HTTP version not supported", "malformed")
                    raise _Stop
            if "host" not in headers and version == "1.1":  # RFC 9112 §3.2
                self._refuse(400, "Missing Host header (required in HTTP/1.1)", "malformed")
                raise _Stop
            if "transfer-encoding" in headers and not chunked_only(headers["transfer-encoding"]):
                self._refuse(501, "Transfer-Encoding other than chunked is not supported",
                             "unsupported_transfer_coding")
                raise _Stop
            method = parser.get_method()
            try:
                path, query = split_target(self._url)
            except HttpParserError:
                if method != b"CONNECT":
                    raise
                path, query = self._url.decode("latin-1"), ""  # authority-form
            except UnicodeDecodeError:
                self._refuse(400, "Malformed request target: the path is not valid UTF-8 once "
                                  "percent-decoded", "malformed")
                raise _Stop from None
            request = HTTPRequest(METHODS.get(method) or method.decode("latin-1"), path, query,
                                  version, headers, b"", keep_alive, self._peer, b"")
        else:  # the synthetic head of a refused upgrade: the real request goes on
            self._resumed = None
        self._request = request
        headers = request.headers
        length = headers.get("content-length")
        if length is not None and len(length) >= self._max_body_digits \
                and int(length) > self._max_body:
            self._refuse(413, "Request body too large", "body_too_large")
            raise _Stop
        if "expect" in headers and headers["expect"].lower() == "100-continue" \
                and request.version == "1.1" and length != "0" \
                and (length is not None or "transfer-encoding" in headers):
            if self._active is None and not self._queue:
                self.transport.write(CONTINUE)
            else:  # not ahead of earlier answers: written when their turn is over
                self._continue_pending = True

    def on_body(self, body):
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._refuse(413, "Request body too large", "body_too_large")
            raise _Stop
        self._body_parts.append(body)

    def _head_size(self):
        """The size of the head just parsed, from its parts."""
        return 16 + len(self._url) + sum(len(k) + len(v) + 4 for k, v in self._headers.items())

    def on_message_complete(self):
        request, self._request = self._request, None
        self._in_body = self._continue_pending = False
        self._complete_read = self._reads
        parts = self._body_parts
        if parts:
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
        if self._parser.should_upgrade():
            self._upgrade_candidate = request
            return
        if self._last_request:  # the node is stopping: this request is answered, then we close
            request.keep_alive = False
        if not request.keep_alive:
            self._discard = True
        self._queue.append(request)

    # -- answering -----------------------------------------------------------

    def _pump(self):
        """Answer queued requests one at a time, strictly in order, while the client takes
        the answers: one it leaves unread holds the next (so its answers buffered here are one
        at most, whatever it pipelined), until ``resumeProducing`` or ``write_timeout``."""
        if self._processing:
            return
        self._processing = True
        queue = self._queue
        try:
            while queue and self._active is None and not self._closing and not self._consumer_paused:
                self._active = request = queue.popleft()
                if request.__class__ is Refusal:
                    self._respond(self._error_response(request.status, request.message))
                    break
                self._counters["requests"] += 1
                if self._access_log is not None:
                    self._started = self._seconds()
                try:
                    response = self._handler.handle(request)
                except Exception:
                    log.failure("HTTP handler failed on {method} {path} from {peer}",
                                method=request.method, path=request.path, peer=request.peer)
                    response = self._error_response(500, "Internal error")
                if response.__class__ is not HTTPResponse and isinstance(response, Deferred):
                    self._deferred = response
                    response.addCallbacks(self._deferred_response, self._deferred_failure)
                else:
                    self._respond(response)
        finally:
            self._processing = False
        if self._active is None and not queue and not self._closing:
            if self._upgrade_wait is not None:
                self._upgrade_now()
                return
            if self._continue_pending:
                self._continue_pending = False
                self.transport.write(CONTINUE)
            if self._timer_kind is IDLE and not (self._in_head or self._in_body or self._discard
                                                 or self._reading_paused or self._consumer_paused):
                return  # idle as before: the timer knows when we last answered
        self._update()

    def _deferred_response(self, response):
        if self._deferred is not None:
            self._deferred = None
            self._respond(response)
            self._pump()

    def _deferred_failure(self, failure):
        if self._deferred is None:  # cancelled by connectionLost
            return
        self._deferred = None
        request = self._active
        log.failure("HTTP handler failed on {method} {path} from {peer}", failure,
                    method=request.method, path=request.path, peer=request.peer)
        self._respond(self._error_response(500, "Internal error"))
        self._pump()

    def _respond(self, response):
        """Write the answer to the active request in one write (a large body in pieces as the
        client takes them); close if it was the last."""
        if response.__class__ is HTTPStream:
            self._respond_stream(response)
            return
        if response.__class__ is HTTPResponse and response.body.__class__ is bytes \
                and len(response.body) > LARGE_BODY:
            self._respond_stream(in_pieces(response.status, response.headers, response.body))
            return
        request, self._active = self._active, None
        self._fresh = False
        self._answered_at = now = self._seconds()
        if request.__class__ is HTTPRequest:
            close = not request.keep_alive
            head_only = request.method == "HEAD"
            ka10 = not close and request.version == "1.0"
        else:  # a refusal
            close, head_only, ka10 = True, False, False
        try:
            status = response.status
            line = STATUS_LINES[status]
            block = ""
            for name, value in response.headers:
                # known good names; values without CR, LF or other controls
                if name not in CLEAN_NAMES or not value.isprintable():
                    raise ValueError(name)
                block += f"{name}: {value}\r\n"
            head = block.encode("latin-1")
        except (KeyError, ValueError, TypeError, AttributeError, UnicodeEncodeError):
            response, status, line, head = self._checked(response)
        body = response.body
        if status in NO_BODY:
            length = body = b""
        else:
            size = len(body)
            length = LENGTHS[size] if size < LENGTHS_CACHED else b"Content-Length: %d\r\n" % size
            if head_only:
                body = b""
        tail = self._tail_close if close else self._tail_keep_alive if ka10 else self._tail
        factory = self.factory
        date = factory.date if now < factory.date_until else factory.date_line(now)
        try:
            data = b"".join((line, head, length, date, tail, body))
        except TypeError:  # a body that is not bytes
            log.failure("HTTP response body is not bytes: {body!r}", body=body)
            response = self._error_response(500, "Internal error")
            response, status, line, head = self._checked(response)
            body = response.body
            length = b"Content-Length: %d\r\n" % len(body)
            data = b"".join((line, head, length, date, tail, b"" if head_only else body))
        write_now(self.transport, data)  # sent at once when nothing waits (saves a reactor turn)
        factory.bytes_sent += len(data)
        statuses = factory.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if self._access_log is not None and request.__class__ is HTTPRequest:
            try:
                self._access_log(request, response, now - self._started)
            except Exception:
                log.failure("HTTP access log failed")
        if close:
            self._close()

    def _respond_stream(self, response):
        """Write a streamed answer's head; the request stays active until the writer finishes."""
        request = self._active
        self._fresh = False
        response, status, line, head = self._checked(response)
        if response.__class__ is not HTTPStream:  # unrenderable: an error answer instead
            self._respond(response)
            return
        close = not request.keep_alive
        length = response.length
        discard = request.method == "HEAD" or status in NO_BODY
        chunked = False
        if status in NO_BODY:
            framing = b""
        elif length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif discard:
            framing = b""
        elif request.version == "1.1":
            framing, chunked = b"Transfer-Encoding: chunked\r\n", True
        else:  # HTTP/1.0 without a length: the body ends when the connection does
            framing, close = b"", True
        ka10 = not close and request.version == "1.0"
        tail = self._tail_close if close else self._tail_keep_alive if ka10 else self._tail
        now = self._seconds()
        factory = self.factory
        date = factory.date if now < factory.date_until else factory.date_line(now)
        self.transport.write(b"".join((line, head, framing, date, tail)))
        factory.statuses[status] = factory.statuses.get(status, 0) + 1
        self._stream = writer = StreamWriter(self, chunked, None if discard else length, discard, close)
        self._stream_response = response
        try:
            response.start(writer)
        except Exception:
            log.failure("HTTP stream failed to start on {path}", path=request.path)
            writer.abort()

    def _stream_done(self, writer, close=False, abort=False):
        """A streamed answer ended (``abort``: broken off); take the next request."""
        if self._stream is not writer:
            return
        self._stream = None
        request, self._active = self._active, None
        self._answered_at = now = self._seconds()
        response, self._stream_response = self._stream_response, None
        if self._access_log is not None:
            try:
                self._access_log(request, HTTPResponse(response.status, response.headers),
                                  now - self._started)
            except Exception:
                log.failure("HTTP access log failed")
        if abort or close:
            self._close(abort=abort)
            return
        self._pump()

    def _checked(self, response):
        """The slow way: the response, its status, status line and headers, all checked."""
        try:
            status = int(response.status)
            if not 100 <= status <= 999:
                raise ValueError(f"bad status {status}")
            return response, status, STATUS_LINES.get(status) or status_line(status), \
                header_block(response.headers)
        except Exception:
            log.failure("Cannot render the HTTP response {response!r}", response=response)
            response = self._error_response(500, "Internal error")
            return response, 500, STATUS_LINES[500], header_block(response.headers)

    def _error_response(self, status, message):
        """The handler's rendering of a protocol-level error, or a plain one."""
        try:
            response = self._handler.error(status, message)
            if response.__class__ is HTTPResponse:
                return response
            raise TypeError(f"handler.error returned {response!r}")
        except Exception:
            log.failure("HTTP handler could not render error {status}", status=status)
            return HTTPResponse(status, [("Content-Type", "text/plain; charset=utf-8")],
                                message.encode())

    def _refuse(self, status, message, counter):
        """Queue an error answer behind the requests before it; read no further."""
        self._counters[counter] += 1
        self._discard = True
        self._in_head = self._in_body = False
        self._queue.append(Refusal(status, message))

    def _malformed(self, error):
        context = error.__context__
        if context is not None and not isinstance(context, (_Stop, HttpParserError)):
            log.failure("HTTP parser callback failed", error)
        if str(error) == "Invalid HTTP version":
            self._refuse(505, "HTTP version not supported", "malformed")
        else:
            self._refuse(400, "Malformed request", "malformed")

    def drain(self):
        """The node is stopping: answer every request taken, the last saying ``Connection:
        close``, then close; an idle connection closes now.  An upgraded one (WebSocket) is
        closed by its endpoint."""
        if self._upgraded is not None or self._closing:
            return
        self._last_request = True
        last = self._queue[-1] if self._queue else self._active
        if last.__class__ is HTTPRequest:
            last.keep_alive = False
        elif last is None and not (self._in_head or self._in_body or self._fresh):
            self._close()  # idle after an answer; a new connection may still send its request

    def _close(self, abort=False):
        """Close after what was written is taken (within ``write_timeout``), or at once."""
        if self._closing:
            return
        self._closing = self._discard = True
        self._queue.clear()
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()
        if abort:
            self._cancel_timer()
            self.transport.abortConnection()
        else:
            self._arm(DRAINING, self._limits.write_timeout)
            self.transport.loseConnection()

class HTTPServerFactory(Factory):
    """Builds :class:`HTTPProtocol` connections for one handler.

    :param handler: has ``handle(request)`` answering an :class:`HTTPResponse`
        or a Deferred of one, ``error(status, message)`` rendering
        protocol-level errors, and optionally ``upgrade(request)`` answering
        a protocol to hand the connection to, or None.
    :param limits: the :class:`HTTPLimits`.
    :param reactor: the reactor for timers and the clock; the global one if None.
    :param server_header: the ``Server`` header value; none if empty.
    :param access_log: None, or ``callable(request, response, duration_seconds)``
        called after each answer is written.
    :param extra_headers: ``(name, value)`` pairs every answer carries (security headers),
        rendered once here.
    """

    protocol = HTTPProtocol
    noisy = False

    def __init__(self, handler, limits=HTTPLimits(), reactor=None, server_header="broker",
                 access_log=None, extra_headers=(), worker=None):
        if reactor is None:
            from twisted.internet import reactor
        self.handler = handler
        self.limits = limits
        self.reactor = reactor
        self.access_log = access_log
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.open_connections = 0
        self.statuses = {}  # status -> answers (streamed ones counted at their head)
        self.bytes_received = self.bytes_sent = 0  # streamed bodies not counted in bytes_sent
        self.protocols = set()
        self._draining = None
        server = "".join(c for c in server_header or "" if " " <= c != "\x7f")
        server = f"Server: {server}\r\n".encode("latin-1", "replace") if server else b""
        server += b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in extra_headers)
        if worker is not None:  # which worker of the node answered
            server += b"X-Broker-Worker: %d\r\n" % worker
        self.tail = server + b"\r\n"
        self.tail_close = server + b"Connection: close\r\n\r\n"
        self.tail_keep_alive = server + b"Connection: keep-alive\r\n\r\n"
        self.date_until = float("-inf")
        self.date = b""

    def buildProtocol(self, addr):
        """A protocol for one connection."""
        return HTTPProtocol(self)

    def metrics(self):
        """The counters, connections open now, bytes in and out, and answers by status."""
        return {**self.counters, "open": self.open_connections, "bytes_received": self.bytes_received,
                "bytes_sent": self.bytes_sent, "statuses": dict(self.statuses)}

    def drain(self, interval=0.05):
        """Finish every connection's requests, then close it (see :meth:`HTTPProtocol.drain`);
        a Deferred firing once none is open.  Call it after the port stopped accepting."""
        if self._draining is not None:
            return self._draining
        done = self._draining = Deferred(lambda _: call is not None and call.active() and call.cancel())
        call = None

        def tick():
            nonlocal call
            for protocol in list(self.protocols):
                protocol.drain()
            if self.protocols:
                call = self.reactor.callLater(interval, tick)
            else:
                self._draining = None
                done.callback(None)
        tick()
        return done

    def date_line(self, now):
        """The ``Date`` header line at ``now``, rendered at most once a second."""
        if now >= self.date_until:
            second = int(now)
            self.date_until = second + 1
            self.date = f"Date: {formatdate(second, usegmt=True)}\r\n".encode("latin-1")
        return self.date
