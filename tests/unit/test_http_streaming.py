"""Streamed answers (HTTPStream): framing, ordering, back-pressure, abort; in memory."""

from twisted.internet.error import ConnectionDone

from broker.http.protocol import HTTPLimits, HTTPStream
from tests.unit.test_http_protocol import FakeHandler, ProtocolTestCase, UnreadTransport, request


class StreamingHandler(FakeHandler):
    """Answers ``/stream`` with an HTTPStream and keeps the writer for the test to drive."""

    def __init__(self, length=None):
        super().__init__()
        self.writers = []
        self.length = length

    def handle(self, req):
        if req.path != "/stream":
            return super().handle(req)
        self.requests.append(req)
        return HTTPStream(200, [("Content-Type", "text/plain")], self.writers.append, self.length)


def dechunk(data):
    """The body of a chunked message and what follows it."""
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body, data[2:]
        body, data = body + data[:size], data[size + 2:]


class StreamingTests(ProtocolTestCase):

    def test_chunked_parts_then_the_next_pipelined_request(self):
        self.connect(StreamingHandler())
        self.send(request("GET", "/stream") + request("GET", "/after"))
        writer, = self.handler.writers
        self.assertIsNone(writer.write(b"hello "))
        writer.write(b"")  # an empty part writes nothing (a 0 chunk would end the body)
        writer.write(b"world")
        self.assertEqual(len(self.handler.requests), 1)  # /after waits for the stream
        writer.finish()
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        body, rest = dechunk(rest)
        self.assertEqual(body, b"hello world")
        self.assertIn(b'{"path": "/after"}', rest)
        self.assertEqual(writer.sent, 11)
        self.assertOpen()

    def test_known_length_is_sent_raw_and_never_exceeded(self):
        self.connect(StreamingHandler(length=5))
        self.send(request("GET", "/stream"))
        writer, = self.handler.writers
        writer.write(b"abc")
        writer.write(b"defgh")  # over the declared length: cut
        writer.finish()
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 5", head)
        self.assertNotIn(b"chunked", head)
        self.assertEqual(body, b"abcde")
        self.assertOpen()

    def test_a_short_body_closes_the_connection(self):
        self.connect(StreamingHandler(length=10))
        self.send(request("GET", "/stream"))
        writer, = self.handler.writers
        writer.write(b"abc")
        writer.finish()
        self.assertClosed()

    def test_back_pressure_the_writer_waits_for_the_client(self):
        self.connect(StreamingHandler())
        self.send(request("GET", "/stream"))
        writer, = self.handler.writers
        self.protocol.pauseProducing()  # what the transport does when its buffer is full
        waiting = writer.write(b"part")
        self.assertIsNotNone(waiting)
        fired = []
        waiting.addCallback(fired.append)
        self.assertEqual(fired, [])
        self.protocol.resumeProducing()
        self.assertEqual(fired, [None])
        self.assertIsNone(writer.write(b"more"))
        writer.finish()

    def test_the_client_going_away_fails_the_wait(self):
        self.connect(StreamingHandler())
        self.send(request("GET", "/stream"))
        writer, = self.handler.writers
        self.protocol.pauseProducing()
        waiting = writer.write(b"part")
        failures = []
        waiting.addErrback(failures.append)
        self.transport.loseConnection()
        self.assertTrue(failures and failures[0].check(ConnectionDone))
        self.assertTrue(writer.lost)
        self.assertIsNone(writer.write(b"dropped"))

    def test_a_client_not_reading_is_aborted_after_the_write_timeout(self):
        self.connect(StreamingHandler(), HTTPLimits(write_timeout=5, idle_timeout=60))
        self.send(request("GET", "/stream"))
        writer, = self.handler.writers
        self.protocol.pauseProducing()
        waiting = writer.write(b"part")
        waiting.addErrback(lambda f: None)
        self.clock.advance(4.9)
        self.assertOpen()
        self.clock.advance(0.2)
        self.assertClosed()
        self.assertTrue(writer.lost)
        self.assertEqual(self.factory.counters["write_timeouts"], 1)

    def test_a_finished_close_delimited_stream_not_taken_is_aborted(self):
        """HTTP/1.0 without a length: the body ends with the close, which waits at most write_timeout."""
        self.connect(StreamingHandler(), HTTPLimits(write_timeout=5), transport=UnreadTransport)
        self.send(request("GET", "/stream", version="1.0"))
        writer, = self.handler.writers
        writer.write(b"part")
        writer.finish()
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.factory.counters["write_timeouts"], 1)

    def test_head_writes_no_body(self):
        self.connect(StreamingHandler())
        self.send(request("HEAD", "/stream"))
        writer, = self.handler.writers
        writer.write(b"not sent")
        writer.finish()
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))
        self.assertEqual(body, b"")
        self.assertOpen()

    def test_abort_cuts_the_connection(self):
        self.connect(StreamingHandler())
        self.send(request("GET", "/stream") + request("GET", "/after"))
        writer, = self.handler.writers
        writer.write(b"partial")
        writer.abort()
        self.assertClosed()
        self.assertEqual(len(self.handler.requests), 1)

    def test_http10_without_length_is_close_delimited(self):
        self.connect(StreamingHandler())
        self.send(request("GET", "/stream", version="1.0", headers=[("Connection", "keep-alive")]))
        writer, = self.handler.writers
        writer.write(b"body")
        writer.finish()
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        self.assertNotIn(b"chunked", head)
        self.assertEqual(body, b"body")
        self.assertClosed()

    def test_a_stream_answered_from_a_deferred(self):
        from twisted.internet.defer import Deferred
        handler = StreamingHandler()
        self.connect(handler)
        later = Deferred()
        handler.answers["/later"] = later
        self.send(request("GET", "/later"))
        later.callback(HTTPStream(201, [("X-A", "1")], lambda w: (w.write(b"x"), w.finish())))
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 201"))
        self.assertEqual(dechunk(rest)[0], b"x")
