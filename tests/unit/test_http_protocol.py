"""The httptools HTTP/1.1 server protocol, driven in memory.

Every test builds one connection on a ``StringTransportWithDisconnection``
and a ``MemoryReactorClock``: no sockets, no sleeps.  Deadlines are driven
with ``clock.advance``.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from broker.http.limits import COUNTERS
from broker.http.protocol import HTTPLimits, HTTPRequest, HTTPResponse, HTTPServerFactory

PEER = IPv4Address("TCP", "10.1.2.3", 40404)


class FakeHandler:
    """Echoes the body back as JSON unless told otherwise per path.

    :ivar answers: path -> an HTTPResponse, a Deferred or an exception to raise.
    """

    def __init__(self):
        self.requests = []
        self.errors = []
        self.answers = {}

    def handle(self, request):
        self.requests.append(request)
        answer = self.answers.get(request.path)
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        body = request.body or json.dumps({"path": request.path}).encode()
        return HTTPResponse(200, [("Content-Type", "application/json")], body)

    def error(self, status, message):
        self.errors.append((status, message))
        body = json.dumps({"error": message, "cid": "cid-1"}).encode()
        return HTTPResponse(status, [("Content-Type", "application/json"), ("X-Broker-CID", "cid-1")],
                            body)


class UpgradingHandler(FakeHandler):
    """Hands ``/ws`` over to a :class:`Recorder`; refuses every other upgrade."""

    def __init__(self):
        super().__init__()
        self.upgraded = []

    def upgrade(self, request):
        if request.path != "/ws":
            return None
        protocol = Recorder()
        self.upgraded.append((request, protocol))
        return protocol


class Recorder(Protocol):
    """Records what the upgraded connection receives."""

    def __init__(self):
        self.received = b""
        self.made = False
        self.lost = None

    def connectionMade(self):
        self.made = True

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.lost = reason


class UnreadTransport(StringTransportWithDisconnection):
    """A client that takes nothing more: a graceful close waits for ever; an abort ends it."""

    def loseConnection(self):
        self.disconnecting = True

    def abortConnection(self):
        self.disconnected = True
        StringTransportWithDisconnection.loseConnection(self)


class FullTransport(StringTransportWithDisconnection):
    """A client that does not read: each answer written fills the buffer, which pauses us."""

    def write(self, data):
        super().write(data)
        if self.producer is not None:
            self.producer.pauseProducing()


class Response:
    """One parsed response from the transport's bytes."""

    def __init__(self, status_line, headers, body):
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = headers
        self.body = body


def parse(data, head_only=False):
    """Split the bytes written to the transport into responses."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        size = 0 if head_only else int(headers.get("content-length", 0))
        out.append(Response(lines[0], headers, data[:size]))
        data = data[size:]
    return out


def request(method="GET", path="/", body=b"", version="1.1", headers=()):
    """Render one request as bytes."""
    lines = [f"{method} {path} HTTP/{version}", "Host: example.com"]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ProtocolTestCase(SynchronousTestCase):
    """Builds one connection per test."""

    def connect(self, handler=None, limits=HTTPLimits(), now=0.0,
                transport=StringTransportWithDisconnection, **kwargs):
        self.clock = MemoryReactorClock()
        self.clock.advance(now)
        self.handler = handler or FakeHandler()
        self.factory = HTTPServerFactory(self.handler, limits, reactor=self.clock, **kwargs)
        self.transport = transport(peerAddress=PEER)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        return self.protocol

    def open_connection(self):
        """Another connection on the same factory: (protocol, transport)."""
        protocol = self.factory.buildProtocol(PEER)
        transport = StringTransportWithDisconnection(peerAddress=PEER)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def send(self, data):
        self.protocol.dataReceived(data)

    def responses(self, head_only=False):
        return parse(self.transport.value(), head_only)

    def assertOpen(self):
        self.assertTrue(self.transport.connected)

    def assertClosed(self):
        self.assertFalse(self.transport.connected)


class BasicTests(ProtocolTestCase):
    """Requests and answers."""

    def test_get(self):
        """A GET reaches the handler parsed and is answered with framing headers added."""
        self.connect()
        self.send(request("GET", "/demo/echo?x=1&y=%20", headers=[("X-Thing", "a")]))
        [seen] = self.handler.requests
        self.assertEqual((seen.method, seen.path, seen.query, seen.version, seen.peer, seen.body),
                         ("GET", "/demo/echo", "x=1&y=%20", "1.1", "10.1.2.3", b""))
        self.assertEqual(seen.headers, {"host": "example.com", "x-thing": "a"})
        self.assertTrue(seen.keep_alive)
        [answer] = self.responses()
        self.assertEqual(answer.status_line, "HTTP/1.1 200 OK")
        self.assertEqual(answer.body, b'{"path": "/demo/echo"}')
        self.assertEqual(answer.headers["content-length"], str(len(answer.body)))
        self.assertEqual(answer.headers["server"], "broker")
        self.assertEqual(answer.headers["content-type"], "application/json")
        self.assertNotIn("connection", answer.headers)
        self.assertOpen()

    def test_post_json(self):
        """A POST's JSON body reaches the handler whole."""
        self.connect()
        body = b'{"text":"hello","repeat":2}'
        self.send(request("POST", "/demo/echo", body, headers=[("Content-Type", "application/json")]))
        [seen] = self.handler.requests
        self.assertEqual((seen.method, seen.body), ("POST", body))
        self.assertEqual(seen.headers["content-type"], "application/json")
        [answer] = self.responses()
        self.assertEqual((answer.status, answer.body), (200, body))

    def test_path_is_percent_decoded(self):
        """The path is percent-decoded as UTF-8; the query stays raw; fragments go."""
        self.connect()
        self.send(request("GET", "/caf%C3%A9/a%20b?q=%C3%A9#frag"))
        [seen] = self.handler.requests
        self.assertEqual((seen.path, seen.query), ("/café/a b", "q=%C3%A9"))

    def test_path_not_utf8_once_decoded_is_a_400(self):
        """A path whose escapes are not UTF-8 is refused, not passed on with U+FFFD in it."""
        for path in ("/customer/%ff", "/a/%C3", "/%ed%a0%80"):
            self.connect()
            self.send(request("GET", path))
            self.assertEqual(self.handler.requests, [])
            self.assertEqual(self.responses()[0].status, 400)
            self.assertEqual(self.handler.errors, [
                (400, "Malformed request target: the path is not valid UTF-8 once percent-decoded")])
            self.assertEqual(self.factory.counters["malformed"], 1)

    def test_absolute_form_target(self):
        """An absolute-form target is reduced to its path and query."""
        self.connect()
        self.send(request("GET", "http://example.com/a/b?c=d"))
        [seen] = self.handler.requests
        self.assertEqual((seen.path, seen.query), ("/a/b", "c=d"))

    def test_request_split_across_reads(self):
        """A request arriving a few bytes at a time is parsed the same."""
        self.connect()
        data = request("POST", "/p", b'{"a":1}')
        for i in range(0, len(data), 5):
            self.send(data[i:i + 5])
        [seen] = self.handler.requests
        self.assertEqual((seen.path, seen.body, seen.headers["host"]), ("/p", b'{"a":1}', "example.com"))

    def test_repeated_headers_joined(self):
        """Repeated headers are joined with a comma; names are lower-cased."""
        self.connect()
        self.send(request(headers=[("Accept", "a/b"), ("ACCEPT", "c/d")]))
        self.assertEqual(self.handler.requests[0].headers["accept"], "a/b, c/d")

    def test_header_value_trailing_whitespace_stripped(self):
        """Trailing optional whitespace of a header value is not part of it."""
        self.connect()
        self.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: v \t\r\n\r\n")
        self.assertEqual(self.handler.requests[0].headers["x-a"], "v")

    def test_raw_head_empty_for_ordinary_requests(self):
        """Only upgrade requests carry their raw head."""
        self.connect()
        self.send(request())
        self.assertEqual(self.handler.requests[0].raw_head, b"")

    def test_head_keeps_content_length_without_body(self):
        """HEAD: the handler sees HEAD, the answer has the body's length but no body."""
        self.connect()
        self.send(request("HEAD", "/x") + request("GET", "/y"))
        self.assertEqual(self.handler.requests[0].method, "HEAD")
        data = self.transport.value()
        head_answer, rest = data.split(b"\r\n\r\n", 1)
        self.assertIn(b"Content-Length: 14", head_answer)
        self.assertTrue(rest.startswith(b"HTTP/1.1 200 OK"), "the HEAD answer has no body")
        self.assertEqual(parse(rest)[0].body, b'{"path": "/y"}')

    def test_no_content_has_no_length(self):
        """A 204 carries neither a body nor Content-Length."""
        self.connect()
        self.handler.answers["/"] = HTTPResponse(204, [], b"ignored")
        self.send(request() + request("GET", "/next"))
        first, second = self.transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(first.startswith(b"HTTP/1.1 204 No Content\r\n"))
        self.assertNotIn(b"content-length", first.lower())
        self.assertTrue(second.startswith(b"HTTP/1.1 200 OK"))

    def test_reason_phrases(self):
        """Status lines carry the standard reason phrase; unknown codes an empty one."""
        self.connect()
        self.handler.answers["/a"] = HTTPResponse(431, [])
        self.handler.answers["/b"] = HTTPResponse(299, [])
        self.send(request("GET", "/a") + request("GET", "/b"))
        self.assertEqual([r.status_line for r in self.responses()],
                         ["HTTP/1.1 431 Request Header Fields Too Large", "HTTP/1.1 299 "])

    def test_date_header_cached_per_second(self):
        """The Date header is RFC 7231 format and refreshed once the clock moves a second."""
        self.connect(now=784111777.25)
        self.send(request())
        self.clock.advance(0.5)
        self.send(request())
        self.clock.advance(0.5)
        self.send(request())
        dates = [r.headers["date"] for r in self.responses()]
        self.assertEqual(dates, ["Sun, 06 Nov 1994 08:49:37 GMT"] * 2 + ["Sun, 06 Nov 1994 08:49:38 GMT"])

    def test_no_server_header(self):
        """An empty server_header leaves the Server header out."""
        self.connect(server_header="")
        self.send(request())
        self.assertNotIn("server", self.responses()[0].headers)

    def test_leading_empty_lines_ignored(self):
        """Empty lines before a request line are tolerated (RFC 9112 2.2)."""
        self.connect()
        self.send(b"\r\n\r\n" + request("GET", "/after"))
        self.assertEqual(self.handler.requests[0].path, "/after")

    def test_synchronous_deferred(self):
        """A Deferred that has already fired is answered at once."""
        self.connect()
        self.handler.answers["/"] = succeed(HTTPResponse(201, [], b"made"))
        self.send(request())
        self.assertEqual((self.responses()[0].status, self.responses()[0].body), (201, b"made"))

    def test_non_latin1_header_value(self):
        """A response header value beyond Latin-1 goes out as UTF-8, not as an error."""
        self.connect()
        self.handler.answers["/"] = HTTPResponse(200, [("X-Name", "Zoë ✓")], b"")
        self.send(request())
        self.assertIn("X-Name: Zoë ✓\r\n".encode(), self.transport.value())

    def test_status_as_string(self):
        """A status given as a numeric string is still rendered."""
        self.connect()
        self.handler.answers["/"] = HTTPResponse("202", [("X-A", "b")], b"")
        self.send(request())
        self.assertEqual(self.responses()[0].status_line, "HTTP/1.1 202 Accepted")

    def test_crlf_in_header_value_cannot_split(self):
        """CR/LF in an app's header value never starts a new header or response."""
        self.connect()
        self.handler.answers["/"] = HTTPResponse(
            200, [("X-Evil", "a\r\nSet-Cookie: owned=1\r\n\r\nHTTP/1.1 200 OK"), ("X-Fine", "b")], b"ok")
        self.send(request())
        head, body = self.transport.value().split(b"\r\n\r\n", 1)
        self.assertEqual(body, b"ok")
        names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:]]
        self.assertEqual(sorted(names), [b"content-length", b"date", b"server", b"x-evil", b"x-fine"])

    def test_app_framing_headers_dropped(self):
        """An app's own Content-Length or Connection cannot contradict the framing."""
        self.connect()
        self.handler.answers["/"] = HTTPResponse(
            200, [("Content-Length", "999"), ("Connection", "close"), ("X-A", "1")], b"ok")
        self.send(request())
        data = self.transport.value()
        self.assertEqual(data.lower().count(b"content-length"), 1)
        self.assertEqual(self.responses()[0].headers["content-length"], "2")
        self.assertOpen()

    def test_access_log(self):
        """The access log gets the request, the response and the duration."""
        calls = []
        self.connect(access_log=lambda *args: calls.append(args))
        deferred = Deferred()
        self.handler.answers["/slow"] = deferred
        self.send(request("GET", "/slow"))
        self.clock.advance(0.25)
        answer = HTTPResponse(200, [], b"x")
        deferred.callback(answer)
        [(seen, response, duration)] = calls
        self.assertEqual((seen.path, response, duration), ("/slow", answer, 0.25))


class KeepAliveTests(ProtocolTestCase):
    """Persistent connections."""

    def test_two_sequential_requests(self):
        """HTTP/1.1 keeps the connection open for the next request."""
        self.connect()
        self.send(request("GET", "/one"))
        self.send(request("GET", "/two"))
        self.assertEqual([r.path for r in self.handler.requests], ["/one", "/two"])
        self.assertEqual([r.status for r in self.responses()], [200, 200])
        self.assertOpen()

    def test_connection_close_honoured(self):
        """``Connection: close`` closes once its answer is written."""
        self.connect()
        self.send(request(headers=[("Connection", "close")]))
        [answer] = self.responses()
        self.assertEqual(answer.headers["connection"], "close")
        self.assertClosed()

    def test_http10_closes(self):
        """HTTP/1.0 without keep-alive is answered with ``Connection: close`` and closed."""
        self.connect()
        self.send(request(version="1.0"))
        self.assertFalse(self.handler.requests[0].keep_alive)
        self.assertEqual(self.handler.requests[0].version, "1.0")
        self.assertEqual(self.responses()[0].headers["connection"], "close")
        self.assertClosed()

    def test_http10_keep_alive(self):
        """HTTP/1.0 with ``Connection: keep-alive`` is answered so and kept open."""
        self.connect()
        self.send(request(version="1.0", headers=[("Connection", "keep-alive")]))
        self.send(request(version="1.0", headers=[("Connection", "keep-alive")]))
        answers = self.responses()
        self.assertEqual([a.headers["connection"] for a in answers], ["keep-alive"] * 2)
        self.assertOpen()

    def test_data_after_close_ignored(self):
        """Requests pipelined after ``Connection: close`` are never handled."""
        self.connect()
        self.send(request("GET", "/a", headers=[("Connection", "close")]) + request("GET", "/b"))
        self.assertEqual([r.path for r in self.handler.requests], ["/a"])
        self.assertEqual(len(self.responses()), 1)
        self.assertEqual(self.factory.counters["malformed"], 0)
        self.assertClosed()


class PipeliningTests(ProtocolTestCase):
    """Pipelined requests and back-pressure."""

    def test_answered_in_order(self):
        """A deferred first answer firing late still goes out before the second."""
        self.connect()
        first = Deferred()
        self.handler.answers["/one"] = first
        self.send(request("GET", "/one") + request("GET", "/two"))
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual([r.path for r in self.handler.requests], ["/one"])
        first.callback(HTTPResponse(200, [], b"first"))
        self.assertEqual([r.body for r in self.responses()], [b"first", b'{"path": "/two"}'])

    def test_later_deferred_after_earlier(self):
        """Each deferred answer is written when it fires, in request order."""
        self.connect()
        one, two = Deferred(), Deferred()
        self.handler.answers.update({"/one": one, "/two": two})
        self.send(request("GET", "/one") + request("GET", "/two") + request("GET", "/three"))
        one.callback(HTTPResponse(200, [], b"1"))
        self.assertEqual([r.body for r in self.responses()], [b"1"])
        two.callback(HTTPResponse(200, [], b"2"))
        self.assertEqual([r.body for r in self.responses()], [b"1", b"2", b'{"path": "/three"}'])

    def test_reading_paused_at_max_pipelined(self):
        """Reading pauses once max_pipelined requests wait, and resumes when they drain."""
        self.connect(limits=HTTPLimits(max_pipelined=3))
        pending = Deferred()
        self.handler.answers["/slow"] = pending
        self.send(request("GET", "/slow") + request("GET", "/a"))
        self.assertEqual(self.transport.producerState, "producing")
        self.send(request("GET", "/b"))
        self.assertEqual(self.transport.producerState, "paused")
        pending.callback(HTTPResponse(200, [], b"s"))
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(self.responses()), 3)

    def test_registered_as_streaming_producer(self):
        """The protocol is the transport's streaming producer."""
        self.connect()
        self.assertIs(self.transport.producer, self.protocol)
        self.assertTrue(self.transport.streaming)

    def test_pipelined_requests_wait_while_the_client_leaves_an_answer_unread(self):
        """One unread answer at a time is buffered here, whatever was pipelined: the next is
        made when the client reads again (slow readers of big answers held one per request)."""
        self.connect(transport=FullTransport)
        self.send(request("GET", "/a") + request("GET", "/b") + request("GET", "/c"))
        self.assertEqual([r.path for r in self.handler.requests], ["/a"])
        self.assertEqual(len(self.responses()), 1)
        self.protocol.resumeProducing()
        self.assertEqual([r.path for r in self.handler.requests], ["/a", "/b"])
        self.protocol.resumeProducing()
        self.assertEqual([r.body for r in self.responses()],
                         [b'{"path": "/a"}', b'{"path": "/b"}', b'{"path": "/c"}'])

    def test_a_large_answer_is_written_as_the_client_takes_it(self):
        """A body over LARGE_BODY goes out a 64 KiB piece at a time, each when the client has
        read the one before: a slow reader holds one piece here, not the body."""
        body = bytes(range(256)) * 4096  # 1 MiB
        self.connect(transport=FullTransport)
        self.handler.answers["/big"] = HTTPResponse(200, [("Content-Type", "text/plain")], body)
        self.send(request("GET", "/big") + request("GET", "/next"))
        head, _, written = self.transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d\r\n" % len(body), head)
        self.assertEqual(len(written), 64 * 1024)
        resumes = 0
        while len(self.handler.requests) == 1:
            self.protocol.resumeProducing()
            resumes += 1
        self.assertEqual(resumes, 16)
        big, after = self.responses()
        self.assertEqual((big.body, after.body), (body, b'{"path": "/next"}'))

    def test_a_large_answer_to_head_or_to_a_client_gone_writes_no_body(self):
        body = b"x" * (1024 * 1024)
        self.connect(transport=FullTransport)
        self.handler.answers["/big"] = HTTPResponse(200, [], body)
        self.send(request("HEAD", "/big"))
        self.protocol.resumeProducing()
        [head] = self.responses(head_only=True)
        self.assertEqual((head.status, head.headers["content-length"], head.body), (200, str(len(body)), b""))
        self.transport.clear()
        self.send(request("GET", "/big"))
        self.transport.loseConnection()  # the client goes away mid-answer: nothing more, no error
        self.protocol.resumeProducing()
        self.assertLess(len(self.transport.value()), 70 * 1024)

    def test_pipelined_requests_left_unread_meet_the_write_timeout(self):
        self.connect(limits=HTTPLimits(write_timeout=5), transport=FullTransport)
        self.send(request("GET", "/a") + request("GET", "/b"))
        self.clock.advance(5.1)
        self.assertTrue(self.transport.disconnected, "aborted")
        self.assertEqual(len(self.handler.requests), 1)
        self.assertEqual(self.factory.counters["write_timeouts"], 1)

    def test_transport_pause_pauses_reading(self):
        """When the transport's buffer is full it pauses us, and we pause reading."""
        self.connect()
        self.protocol.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")



class WriteTimeoutTests(ProtocolTestCase):
    """A client must take our answers within write_timeout, or the connection is aborted."""

    def test_unread_answers_abort(self):
        """Paused by the transport (its buffer full) for write_timeout: aborted and counted."""
        self.connect(limits=HTTPLimits(write_timeout=5, idle_timeout=60))
        self.send(request())
        self.protocol.pauseProducing()
        self.clock.advance(4.9)
        self.assertOpen()
        self.clock.advance(0.2)
        self.assertClosed()
        self.assertTrue(self.transport.disconnected, "aborted, not waiting for the buffer")
        self.assertEqual((self.factory.counters["write_timeouts"],
                          self.factory.counters["idle_timeouts"]), (1, 0))

    def test_answers_taken_in_time_keep_the_connection(self):
        """Resumed (the buffer drained) before the deadline: no abort, keep-alive as before."""
        self.connect(limits=HTTPLimits(write_timeout=5, idle_timeout=60))
        self.send(request())
        self.protocol.pauseProducing()
        self.clock.advance(4.9)
        self.protocol.resumeProducing()
        self.clock.advance(30)
        self.assertOpen()
        self.assertEqual(self.factory.counters["write_timeouts"], 0)

    def test_a_last_answer_not_taken_is_aborted_after_write_timeout(self):
        """Connection: close waits for the answer to drain, at most write_timeout; the slot is freed."""
        self.connect(limits=HTTPLimits(write_timeout=5), transport=UnreadTransport)
        self.send(request(headers=[("Connection", "close")]))
        self.assertEqual(self.responses()[0].status, 200)
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnected)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1, "the connection's one timer")
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnected, "aborted")
        self.assertEqual(self.factory.counters["write_timeouts"], 1)
        self.assertEqual(self.factory.open_connections, 0)

    def test_an_idle_close_not_taken_is_aborted_after_write_timeout(self):
        """A kept-alive connection closed for idleness with answers unread is aborted in turn."""
        self.connect(limits=HTTPLimits(write_timeout=5, idle_timeout=60), transport=UnreadTransport)
        self.send(request())
        self.clock.advance(60)
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual((self.factory.counters["idle_timeouts"],
                          self.factory.counters["write_timeouts"]), (1, 1))

    def test_a_close_completed_in_time_is_not_counted(self):
        """The client took the last answer: the close completes and the deadline is gone."""
        self.connect(limits=HTTPLimits(write_timeout=5), transport=UnreadTransport)
        self.send(request(headers=[("Connection", "close")]))
        StringTransportWithDisconnection.loseConnection(self.transport)  # the buffer drained
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertFalse(self.transport.disconnected)
        self.assertEqual(self.factory.counters["write_timeouts"], 0)


class BodyTests(ProtocolTestCase):
    """Request bodies and their limits."""

    def test_chunked_body(self):
        """A chunked body arrives de-chunked and whole."""
        self.connect()
        self.send(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        self.send(b"6\r\n world\r\n0\r\n\r\n")
        self.assertEqual(self.handler.requests[0].body, b"hello world")
        self.assertEqual(self.responses()[0].status, 200)

    def test_chunked_body_over_limit(self):
        """A chunked body growing past max_body_size is refused 413 and closed."""
        self.connect(limits=HTTPLimits(max_body_size=10))
        self.send(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.send(b"8\r\n12345678\r\n")
        [answer] = self.responses()
        self.assertEqual(answer.status, 413)
        self.assertEqual(answer.headers["connection"], "close")
        self.assertEqual(self.handler.requests, [])
        self.assertEqual(self.factory.counters["body_too_large"], 1)
        self.assertClosed()

    def test_content_length_over_limit(self):
        """A declared length over the limit is refused before any body byte is sent."""
        self.connect(limits=HTTPLimits(max_body_size=10))
        self.send(b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n")
        [answer] = self.responses()
        self.assertEqual((answer.status, answer.headers["connection"]), (413, "close"))
        self.assertEqual(json.loads(answer.body)["cid"], "cid-1")
        self.assertEqual(self.handler.errors, [(413, "Request body too large")])
        self.assertEqual(self.factory.counters["body_too_large"], 1)
        self.assertClosed()

    def test_expect_continue_accepted(self):
        """``Expect: 100-continue`` with an acceptable length gets 100 Continue first."""
        self.connect()
        self.send(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.send(b"abcd")
        self.assertEqual(self.handler.requests[0].body, b"abcd")
        data = self.transport.value()[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        self.assertEqual(parse(data)[0].body, b"abcd")

    def test_expect_continue_too_large(self):
        """``Expect: 100-continue`` with too large a length gets 413 at once, no 100."""
        self.connect(limits=HTTPLimits(max_body_size=3))
        self.send(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        self.assertNotIn(b"100 Continue", self.transport.value())
        self.assertEqual(self.responses()[0].status, 413)
        self.assertClosed()

    def test_expect_continue_waits_for_earlier_answers(self):
        """100 Continue is not written ahead of an earlier request's pending answer."""
        self.connect()
        pending = Deferred()
        self.handler.answers["/slow"] = pending
        self.send(request("GET", "/slow")
                  + b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(self.transport.value(), b"")
        pending.callback(HTTPResponse(200, [], b"s"))
        self.assertTrue(self.transport.value().endswith(b"HTTP/1.1 100 Continue\r\n\r\n"))

    def test_body_timeout(self):
        """A body not complete within body_timeout is answered 408 and closed."""
        self.connect(limits=HTTPLimits(body_timeout=3))
        self.send(b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        self.clock.advance(2.9)
        self.assertOpen()
        self.clock.advance(0.2)
        [answer] = self.responses()
        self.assertEqual((answer.status, answer.headers["connection"]), (408, "close"))
        self.assertEqual(self.factory.counters["body_timeouts"], 1)
        self.assertClosed()


class HeadLimitTests(ProtocolTestCase):
    """Limits on the request head, and malformed requests."""

    def test_too_many_headers(self):
        """More than max_header_count headers is a 431."""
        self.connect(limits=HTTPLimits(max_header_count=5))
        self.send(request(headers=[(f"X-{i}", "v") for i in range(5)]))
        [answer] = self.responses()
        self.assertEqual(answer.status, 431)
        self.assertEqual(self.factory.counters["too_many_headers"], 1)
        self.assertEqual(self.handler.requests, [])
        self.assertClosed()

    def test_head_too_large_across_partial_writes(self):
        """A head growing past max_header_size over several reads is a 431."""
        self.connect(limits=HTTPLimits(max_header_size=1024))
        self.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: ")
        for _ in range(10):
            self.assertEqual(self.transport.value(), b"")
            self.send(b"v" * 100)
        self.send(b"v" * 100)
        [answer] = self.responses()
        self.assertEqual(answer.status, 431)
        self.assertEqual(self.factory.counters["headers_too_large"], 1)
        self.assertClosed()

    def test_head_too_large_in_one_write(self):
        """A head over max_header_size arriving whole is a 431 too."""
        self.connect(limits=HTTPLimits(max_header_size=1024))
        self.send(request(headers=[(f"X-{i}", "v" * 100) for i in range(10)]))
        self.assertEqual(self.responses()[0].status, 431)

    def test_head_at_limit_with_big_body_accepted(self):
        """A head split over reads and followed by a large body read is not mistaken as large."""
        self.connect(limits=HTTPLimits(max_header_size=1024))
        self.send(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n")
        self.send(b"X-A: b\r\n\r\n" + b"z" * 5000)
        self.assertEqual(self.handler.requests[0].body, b"z" * 5000)

    def test_malformed(self):
        """A malformed request is a 400 and the connection closes."""
        self.connect()
        self.send(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n")
        [answer] = self.responses()
        self.assertEqual((answer.status, answer.headers["connection"]), (400, "close"))
        self.assertEqual(self.handler.errors, [(400, "Malformed request")])
        self.assertEqual(self.factory.counters["malformed"], 1)
        self.assertClosed()

    def test_bad_method(self):
        """An unknown method is a 400."""
        self.connect()
        self.send(b"FROB / HTTP/1.1\r\n\r\n")
        self.assertEqual(self.responses()[0].status, 400)

    def test_malformed_after_good_request(self):
        """Garbage after a good pipelined request is answered 400 after the good answer."""
        self.connect()
        self.send(request("GET", "/good") + b"\x00garbage\r\n\r\n")
        self.assertEqual([r.status for r in self.responses()], [200, 400])
        self.assertClosed()

    def test_unsupported_version(self):
        """HTTP/2.0 or 1.2 in a request line is a 505."""
        for version in (b"2.0", b"1.2"):
            self.connect()
            self.send(b"GET / HTTP/" + version + b"\r\n\r\n")
            self.assertEqual(self.responses()[0].status, 505)
            self.assertClosed()

    def test_http11_without_host_is_400(self):
        """An HTTP/1.1 request without Host is a 400 (RFC 9112 §3.2), absolute-form too."""
        for target in (b"/", b"http://example.com/"):
            self.connect()
            self.send(b"GET " + target + b" HTTP/1.1\r\n\r\n")
            [answer] = self.responses()
            self.assertEqual((answer.status, json.loads(answer.body)["error"]),
                             (400, "Missing Host header (required in HTTP/1.1)"))
            self.assertEqual((self.handler.requests, self.factory.counters["malformed"]), ([], 1))
            self.assertClosed()

    def test_two_host_headers_are_400(self):
        """More than one Host header line is a 400, not a joined value."""
        self.connect()
        self.send(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
        [answer] = self.responses()
        self.assertEqual((answer.status, json.loads(answer.body)["error"]),
                         (400, "More than one Host header"))
        self.assertEqual((self.handler.requests, self.factory.counters["malformed"]), ([], 1))
        self.assertClosed()

    def test_http10_without_host_accepted(self):
        """HTTP/1.0 has no Host requirement."""
        self.connect()
        self.send(b"GET /old HTTP/1.0\r\n\r\n")
        self.assertEqual([r.path for r in self.handler.requests], ["/old"])
        self.assertEqual(self.responses()[0].status, 200)

    def test_transfer_codings_other_than_chunked_are_501(self):
        """A coding before chunked (one line or two) is not implemented: 501, body unused."""
        for codings in ([b"gzip, chunked"], [b"gzip", b"chunked"], [b"deflate , chunked"]):
            self.connect()
            lines = b"".join(b"Transfer-Encoding: %s\r\n" % coding for coding in codings)
            self.send(b"POST /c HTTP/1.1\r\nHost: h\r\n" + lines + b"\r\n3\r\nabc\r\n0\r\n\r\n")
            [answer] = self.responses()
            self.assertEqual((answer.status, answer.headers["connection"]), (501, "close"))
            self.assertEqual(self.handler.errors,
                             [(501, "Transfer-Encoding other than chunked is not supported")])
            self.assertEqual(self.handler.requests, [])
            self.assertEqual(self.factory.counters["unsupported_transfer_coding"], 1)
            self.assertClosed()

    def test_chunked_in_any_case_accepted(self):
        """Transfer codings are case-insensitive: "Chunked" is chunked."""
        self.connect()
        self.send(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        self.assertEqual([r.body for r in self.handler.requests], [b"abc"])
        self.assertEqual(self.responses()[0].status, 200)

    def test_header_deadline(self):
        """A head not complete within header_timeout is answered 408 and closed."""
        self.connect(limits=HTTPLimits(header_timeout=10))
        self.clock.advance(5)
        self.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        self.clock.advance(4.9)
        self.send(b"loris")
        self.assertOpen()
        self.clock.advance(0.2)
        [answer] = self.responses()
        self.assertEqual((answer.status, answer.headers["connection"]), (408, "close"))
        self.assertEqual(self.factory.counters["header_timeouts"], 1)
        self.assertClosed()

    def test_header_deadline_silent_connection(self):
        """A connection that sends nothing within header_timeout is closed without an answer."""
        self.connect(limits=HTTPLimits(header_timeout=10, idle_timeout=60))
        self.clock.advance(10)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.factory.counters["header_timeouts"], 1)
        self.assertClosed()

    def test_header_deadline_from_first_byte_of_next_request(self):
        """On a kept-alive connection the head deadline starts with the request's first byte."""
        self.connect(limits=HTTPLimits(header_timeout=10, idle_timeout=60))
        self.send(request())
        self.clock.advance(30)
        self.send(b"GET / HT")
        self.clock.advance(9.9)
        self.assertOpen()
        self.clock.advance(0.2)
        self.assertEqual([r.status for r in self.responses()], [200, 408])
        self.assertClosed()


class IdleTests(ProtocolTestCase):
    """Idle keep-alive connections."""

    def test_idle_timeout_closes(self):
        """A kept-alive connection with nothing in progress closes after idle_timeout."""
        self.connect(limits=HTTPLimits(idle_timeout=60))
        self.send(request())
        self.clock.advance(59.9)
        self.assertOpen()
        self.clock.advance(0.2)
        self.assertEqual(len(self.responses()), 1)
        self.assertEqual(self.factory.counters["idle_timeouts"], 1)
        self.assertClosed()

    def test_idle_timeout_restarts_after_each_answer(self):
        """Each answer starts the idle deadline again."""
        self.connect(limits=HTTPLimits(idle_timeout=60))
        self.send(request())
        self.clock.advance(50)
        self.send(request())
        self.clock.advance(50)
        self.assertOpen()
        self.clock.advance(10.1)
        self.assertClosed()

    def test_one_timer_per_connection(self):
        """Keep-alive requests make no new timers: the connection keeps one."""
        self.connect()
        for _ in range(50):
            self.send(request())
            self.clock.advance(1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.responses()), 50)

    def test_no_deadline_while_handler_works(self):
        """A slow handler is not cut short by the idle or header deadlines."""
        self.connect(limits=HTTPLimits(idle_timeout=5, header_timeout=5))
        pending = Deferred()
        self.handler.answers["/slow"] = pending
        self.send(request("GET", "/slow"))
        self.clock.advance(100)
        self.assertOpen()
        pending.callback(HTTPResponse(200, [], b"late"))
        self.assertEqual(self.responses()[0].body, b"late")


class FailureTests(ProtocolTestCase):
    """Handler failures and lost connections."""

    def test_handler_exception(self):
        """A handler raising is answered by handler.error(500), logged, nothing leaked."""
        self.connect()
        self.handler.answers["/boom"] = ZeroDivisionError("secret detail")
        self.send(request("GET", "/boom") + request("GET", "/after"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        data = self.transport.value()
        self.assertNotIn(b"Traceback", data)
        self.assertNotIn(b"secret", data)
        first, second = self.responses()
        self.assertEqual((first.status, json.loads(first.body)["error"]), (500, "Internal error"))
        self.assertEqual(second.status, 200)
        self.assertOpen()

    def test_deferred_failure(self):
        """A handler's failing Deferred is answered by handler.error(500) and logged."""
        self.connect()
        pending = Deferred()
        self.handler.answers["/boom"] = pending
        self.send(request("GET", "/boom"))
        pending.errback(KeyError("secret detail"))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertNotIn(b"secret", self.transport.value())
        self.assertEqual(self.responses()[0].status, 500)

    def test_bad_response_object(self):
        """A handler answering something unrenderable is a logged 500."""
        self.connect()
        self.handler.answers["/bad"] = HTTPResponse(200, [("X-A", "b")], "not bytes")
        self.send(request("GET", "/bad"))
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertEqual(self.responses()[0].status, 500)

    def test_connection_lost_cancels_pending(self):
        """Losing the connection cancels the handler's Deferred, the timer and the queue."""
        self.connect()
        cancelled = []
        pending = Deferred(lambda d: cancelled.append(d))
        self.handler.answers["/slow"] = pending
        self.send(request("GET", "/slow") + request("GET", "/queued"))
        self.transport.loseConnection()
        self.assertEqual(cancelled, [pending])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual([r.path for r in self.handler.requests], ["/slow"])
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.factory.open_connections, 0)
        self.assertEqual(self.flushLoggedErrors(), [])


class UpgradeTests(ProtocolTestCase):
    """Handing a connection over to another protocol."""

    WS_HEAD = (b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")

    def test_hand_over(self):
        """The new protocol gets the raw head plus every byte after it, then all later data."""
        self.connect(UpgradingHandler())
        self.send(self.WS_HEAD[:30])
        self.send(self.WS_HEAD[30:] + b"\x81\x05hello")
        [(seen, upgraded)] = self.handler.upgraded
        self.assertEqual(seen.raw_head, self.WS_HEAD)
        self.assertEqual(seen.headers["upgrade"], "websocket")
        self.assertTrue(upgraded.made)
        self.assertIs(upgraded.transport, self.transport)
        self.assertEqual(upgraded.received, self.WS_HEAD + b"\x81\x05hello")
        self.send(b"more")
        self.assertEqual(upgraded.received, self.WS_HEAD + b"\x81\x05hellomore")
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.handler.requests, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.factory.counters["upgrades"], 1)
        self.transport.loseConnection()
        self.assertIsNotNone(upgraded.lost)

    def test_hand_over_after_pipelined_request(self):
        """An upgrade behind a pipelined request waits its turn and still gets its exact head."""
        self.connect(UpgradingHandler())
        pending = Deferred()
        self.handler.answers["/first"] = pending
        self.send(request("GET", "/first") + self.WS_HEAD + b"frame")
        self.assertEqual(self.handler.upgraded, [])
        pending.callback(HTTPResponse(200, [], b"first"))
        [(seen, upgraded)] = self.handler.upgraded
        self.assertEqual(upgraded.received, self.WS_HEAD + b"frame")
        self.assertEqual(parse(self.transport.value())[0].body, b"first")

    def test_refused_upgrade_answered_normally(self):
        """handler.upgrade answering None: the request is handled, and the next one too."""
        self.connect(UpgradingHandler())
        head = self.WS_HEAD.replace(b"/ws", b"/plain")
        self.send(head + request("GET", "/next"))
        self.assertEqual([r.path for r in self.handler.requests], ["/plain", "/next"])
        self.assertEqual(self.handler.requests[0].raw_head, head)
        self.assertEqual([r.status for r in self.responses()], [200, 200])
        self.assertOpen()

    def test_refused_upgrade_with_body(self):
        """A refused upgrade's body (which llhttp skips) still reaches the handler."""
        self.connect(UpgradingHandler())
        self.send(b"POST /h2 HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Content-Length: 5\r\n\r\nhello" + request("GET", "/next"))
        self.assertEqual([(r.path, r.body) for r in self.handler.requests],
                         [("/h2", b"hello"), ("/next", b"")])
        self.assertEqual(self.handler.requests[0].headers["upgrade"], "h2c")
        self.assertEqual([r.body for r in self.responses()], [b"hello", b'{"path": "/next"}'])

    def test_upgrade_needs_connection_upgrade(self):
        """An Upgrade header without ``Connection: upgrade`` is an ordinary request."""
        self.connect(UpgradingHandler())
        self.send(request("GET", "/ws", headers=[("Upgrade", "websocket")]) + request("GET", "/next"))
        self.assertEqual(self.handler.upgraded, [])
        self.assertEqual([r.path for r in self.handler.requests], ["/ws", "/next"])

    def test_http10_upgrade_ignored(self):
        """An HTTP/1.0 request's Upgrade is ignored (RFC 9110 7.8): answered, then closed."""
        self.connect(UpgradingHandler())
        self.send(self.WS_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"))
        self.assertEqual(self.handler.upgraded, [])
        self.assertEqual(self.responses()[0].status, 200)
        self.assertClosed()

    def test_upgrade_handler_failure(self):
        """handler.upgrade raising is a logged 500 and the connection closes."""
        handler = UpgradingHandler()
        handler.upgrade = lambda request: 1 / 0
        self.connect(handler)
        self.send(self.WS_HEAD)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.responses()[0].status, 500)
        self.assertClosed()

    def test_connect_answered_then_closed(self):
        """CONNECT (a tunnel llhttp stops at) is answered by the handler, then closed."""
        self.connect(UpgradingHandler())
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\ntunnel")
        self.assertEqual(self.handler.requests[0].method, "CONNECT")
        self.assertEqual(self.responses()[0].headers["connection"], "close")
        self.assertClosed()

    def test_handler_without_upgrade(self):
        """A handler with no ``upgrade`` attribute answers upgrade requests normally."""
        self.connect()
        self.send(self.WS_HEAD)
        self.assertEqual(self.handler.requests[0].path, "/ws")
        self.assertEqual(self.responses()[0].status, 200)
        self.assertEqual(self.factory.counters["upgrades"], 0)


class ConnectionLimitTests(ProtocolTestCase):
    """The per-factory connection limit and the counters."""

    def test_max_connections(self):
        """A connection over max_connections is answered 503 and closed at once."""
        self.connect(limits=HTTPLimits(max_connections=1))
        extra, transport = self.open_connection()
        self.assertEqual(parse(transport.value())[0].status, 503)
        self.assertEqual(self.handler.errors, [(503, "Too many connections")])
        self.assertFalse(transport.connected)
        self.assertEqual(self.factory.counters["rejected_connections"], 1)
        self.assertEqual((self.factory.counters["connections"], self.factory.open_connections), (1, 1))
        self.transport.loseConnection()
        self.assertEqual(self.factory.open_connections, 0)
        _, transport = self.open_connection()
        self.assertTrue(transport.connected, "a slot is free again")

    def test_counters_start_at_zero(self):
        """Every documented counter exists from the start."""
        self.connect()
        self.assertEqual(set(self.factory.counters), set(COUNTERS))
        self.assertEqual(self.factory.counters["connections"], 1)
        self.assertEqual(sum(self.factory.counters.values()), 1)

    def test_counters_move_on_each_trip(self):
        """Each request, limit trip, deadline, upgrade and refusal adds one to its counter."""
        limits = HTTPLimits(max_header_count=5, max_header_size=1024, max_body_size=10,
                            max_connections=3, header_timeout=10, body_timeout=10, idle_timeout=10,
                            write_timeout=10)
        self.connect(UpgradingHandler(), limits)
        self.send(request() + request())
        for data in (b"BAD REQUEST\r\n\r\n",
                     request(headers=[(f"X-{i}", "v") for i in range(6)]),
                     request(headers=[("X-Big", "v" * 1100)]),
                     request("POST", "/", b"x" * 11),
                     request("POST", "/", headers=[("Transfer-Encoding", "gzip, chunked")]),
                     UpgradeTests.WS_HEAD):
            self.open_connection()[0].dataReceived(data)
        self.open_connection()[0].dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n")
        self.clock.advance(10)
        self.open_connection()[0].dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
        stalled = self.open_connection()[0]
        stalled.dataReceived(request())
        stalled.pauseProducing()
        self.clock.advance(10)
        for _ in range(3):
            self.open_connection()
        self.assertEqual(self.factory.open_connections, 3)
        self.assertEqual(self.factory.counters, {
            "connections": 12, "requests": 3, "rejected_connections": 1, "header_timeouts": 1,
            "body_timeouts": 1, "idle_timeouts": 1, "write_timeouts": 1, "body_too_large": 1,
            "headers_too_large": 1, "too_many_headers": 1, "malformed": 1,
            "unsupported_transfer_coding": 1, "upgrades": 1})


class RequestTypeTests(SynchronousTestCase):
    """The request and response records."""

    def test_slotted(self):
        """Requests and responses are slotted records."""
        req = HTTPRequest("GET", "/", "", "1.1", {}, b"", True, "1.2.3.4", b"")
        self.assertFalse(hasattr(req, "__dict__"))
        self.assertEqual(HTTPResponse(200, []).body, b"")


class DrainTests(ProtocolTestCase):
    """Stopping: every request taken is answered (saying ``Connection: close``), then the
    connection closes; an idle keep-alive connection closes at once."""

    def test_an_idle_keep_alive_connection_closes_at_once(self):
        self.connect()
        self.send(request("GET", "/a"))
        self.assertEqual([r.status for r in self.responses()], [200])
        self.assertOpen()
        drained = self.factory.drain()
        self.assertClosed()
        self.protocol.connectionLost(None)
        self.assertEqual(self.successResultOf(drained), None)

    def test_requests_taken_are_answered_the_last_with_connection_close_then_closed(self):
        self.connect()
        pending = Deferred()
        self.handler.answers["/slow"] = pending
        self.send(request("GET", "/slow") + request("GET", "/next"))
        drained = self.factory.drain()
        self.assertOpen()
        self.assertNoResult(drained)
        pending.callback(HTTPResponse(200, [("Content-Type", "text/plain")], b"done"))
        answers = self.responses()
        self.assertEqual([(r.status, r.body) for r in answers],
                         [(200, b"done"), (200, b'{"path": "/next"}')])
        self.assertEqual([r.headers.get("connection") for r in answers], [None, "close"])
        self.assertClosed()
        self.protocol.connectionLost(None)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(drained), None)

    def test_a_new_connection_gets_its_first_request_answered_with_connection_close(self):
        self.connect()  # accepted just before the stop: its request is still on its way
        drained = self.factory.drain()
        self.assertOpen()
        self.send(request("GET", "/first"))
        answers = self.responses()
        self.assertEqual([(r.status, r.headers.get("connection")) for r in answers], [(200, "close")])
        self.assertClosed()
        self.protocol.connectionLost(None)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(drained), None)

    def test_drain_waits_for_every_connection(self):
        self.connect()
        self.send(request("GET", "/a"))
        other, other_transport = self.open_connection()
        pending = Deferred()
        self.handler.answers["/slow"] = pending
        other.dataReceived(request("GET", "/slow"))
        drained = self.factory.drain()
        self.assertClosed()
        self.protocol.connectionLost(None)
        self.clock.advance(1)
        self.assertNoResult(drained)
        pending.callback(HTTPResponse(200, [], b"ok"))
        self.assertFalse(other_transport.connected)
        other.connectionLost(None)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(drained), None)
