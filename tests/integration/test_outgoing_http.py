"""Outgoing HTTP connections against a real HTTP server on 127.0.0.1 (twisted.web, port 0)."""

import base64
import json

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from broker.config.schema import Schema
from broker.http.outgoing_errors import (BadStatus, ConnectionFailed, OutgoingTimeout, ResponseTooLarge,
                                    UnparseableResponse)
from broker.http.outgoing import HTTP_OUTGOING, HTTPConnection


class Upstream(resource.Resource):
    """A test API: behaviours by path; records every request it sees."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []
        self.flaky_left = 0
        self.pending = []

    def render(self, request):
        path = request.path.decode()
        self.seen.append({"method": request.method.decode(), "path": path,
                          "args": {k.decode(): [x.decode() for x in v] for k, v in request.args.items()},
                          "headers": {k.decode().lower(): v[0].decode()
                                      for k, v in request.requestHeaders.getAllRawHeaders()},
                          "body": request.content.read()})
        if path == "/json":
            request.setHeader("content-type", "application/json")
            return json.dumps({"ok": True, "args": self.seen[-1]["args"]}).encode()
        if path.startswith("/items/"):
            return json.dumps({"item": path.rsplit("/", 1)[1]}).encode()
        if path == "/xml":
            return b"<?xml version='1.0'?><root><a x='1'>hi</a></root>"
        if path == "/csv":
            return b"a,b\r\n1,2\r\n3,4\r\n"
        if path == "/bad-json":
            return b'{"unterminated": '
        if path == "/doctype":
            return b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
        if path == "/flaky":
            if self.flaky_left > 0:
                self.flaky_left -= 1
                request.setResponseCode(503)
                return b"{}"
            return b'{"finally": true}'
        if path == "/status":
            request.setResponseCode(int(request.args[b"code"][0]))
            return b'{"error": "nope"}'
        if path == "/big":
            request.setHeader("content-type", "application/octet-stream")
            return b"x" * int(request.args[b"size"][0])
        if path == "/stream":  # no Content-Length: the cap trips while reading
            for _ in range(int(request.args[b"chunks"][0])):
                request.write(b"y" * 1024)
            request.finish()
            return server.NOT_DONE_YET
        if path == "/hang":
            self.pending.append(request)
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        request.setResponseCode(404)
        return b"{}"


def connection(port, **overrides):
    config = {"name": "test-api", "type": "http", "address": f"http://127.0.0.1:{port}",
              "retry_delay": "1ms", "retry_max_delay": "5ms", **overrides}
    return HTTPConnection(HTTP_OUTGOING.check(config), reactor)


class OutgoingHTTPTests(TestCase):

    def setUp(self):
        self.upstream = Upstream()
        site = server.Site(self.upstream)
        site.noisy = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.address = self.port.getHost().port
        self.connections = []

    @defer.inlineCallbacks
    def tearDown(self):
        for request in self.upstream.pending:
            if not request.finished and not request._disconnected:
                request.finish()
        for conn in self.connections:
            yield conn.stopService()
        yield self.port.stopListening()

    def make(self, **overrides):
        conn = connection(self.address, **overrides)
        self.connections.append(conn)
        return conn

    @defer.inlineCallbacks
    def test_get_json_with_path_template_and_query(self):
        conn = self.make(path="/items/{item_id}", params={"lang": "en"})
        result = yield conn.get(params={"item_id": "a b/c", "from": "EUR"})
        self.assertEqual(result.status, 200)
        self.assertEqual(self.upstream.seen[-1]["path"], "/items/a%20b%2Fc")
        self.assertEqual(self.upstream.seen[-1]["args"], {"lang": ["en"], "from": ["EUR"]})
        self.assertEqual(result.data, {"item": "a%20b%2Fc"})

    @defer.inlineCallbacks
    def test_headers_and_parsed_data(self):
        conn = self.make(path="/json", headers={"X-App": "broker"})
        result = yield conn.get(params={"q": "1"})
        self.assertEqual(result.data, {"ok": True, "args": {"q": ["1"]}})
        self.assertEqual(result.headers["content-type"], "application/json")
        self.assertEqual(self.upstream.seen[-1]["headers"]["x-app"], "broker")

    @defer.inlineCallbacks
    def test_post_encodes_json_body(self):
        conn = self.make(path="/json", method="POST")
        yield conn.request(data={"a": 1})
        seen = self.upstream.seen[-1]
        self.assertEqual((seen["method"], json.loads(seen["body"])), ("POST", {"a": 1}))
        self.assertEqual(seen["headers"]["content-type"], "application/json")

    @defer.inlineCallbacks
    def test_xml_goes_through_the_hardened_parser(self):
        result = yield self.make(path="/xml", data_format="xml").get()
        self.assertEqual(result.data.find("a").get("x"), "1")
        with self.assertRaises(UnparseableResponse) as caught:
            yield self.make(path="/doctype", data_format="xml").get()
        self.assertIn("DOCTYPE is not allowed", caught.exception.message)

    @defer.inlineCallbacks
    def test_csv_rows(self):
        result = yield self.make(path="/csv", data_format="csv").get()
        self.assertEqual(result.data, [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}])

    @defer.inlineCallbacks
    def test_raw_bytes(self):
        result = yield self.make(path="/big", data_format="raw").get(params={"size": "10"})
        self.assertEqual(result.data, b"x" * 10)

    @defer.inlineCallbacks
    def test_unparseable_json_is_typed_and_counted(self):
        conn = self.make(path="/bad-json")
        with self.assertRaises(UnparseableResponse) as caught:
            yield conn.get()
        self.assertIn("malformed JSON", caught.exception.message)
        self.assertEqual(caught.exception.response.status, 200)
        self.assertEqual(conn.counters["unparseable"], 1)

    @defer.inlineCallbacks
    def test_idempotent_get_is_retried_until_it_succeeds(self):
        self.upstream.flaky_left = 2
        conn = self.make(path="/flaky", retries=3)
        result = yield conn.get()
        self.assertEqual(result.data, {"finally": True})
        self.assertEqual(result.attempts, 3)
        self.assertEqual(conn.counters["retries"], 2)
        self.assertEqual((conn.counters["bad_status"], conn.counters["ok"], conn.counters["failures"]),
                         (2, 1, 0))
        self.assertEqual(len(self.upstream.seen), 3)

    @defer.inlineCallbacks
    def test_retries_are_bounded(self):
        self.upstream.flaky_left = 10
        conn = self.make(path="/flaky", retries=2)
        with self.assertRaises(BadStatus) as caught:
            yield conn.get()
        self.assertEqual((caught.exception.status_code, caught.exception.attempts), (503, 3))
        self.assertEqual(len(self.upstream.seen), 3)
        self.assertEqual((conn.counters["retries"], conn.counters["bad_status"]), (2, 3))
        self.assertEqual((conn.counters["requests"], conn.counters["failures"]), (3, 1))

    @defer.inlineCallbacks
    def test_post_is_never_retried(self):
        self.upstream.flaky_left = 1
        conn = self.make(path="/flaky", retries=3)
        with self.assertRaises(BadStatus):
            yield conn.post({"x": 1})
        self.assertEqual(len(self.upstream.seen), 1)
        self.assertEqual(conn.counters["retries"], 0)

    @defer.inlineCallbacks
    def test_client_error_status_is_not_retried(self):
        conn = self.make(path="/status", retries=3)
        with self.assertRaises(BadStatus) as caught:
            yield conn.get(params={"code": "404"})
        self.assertEqual(caught.exception.response.status, 404)
        self.assertEqual(caught.exception.status, 502)       # what the broker's caller sees
        self.assertNotIn("127.0.0.1", caught.exception.message)
        self.assertEqual(len(self.upstream.seen), 1)

    @defer.inlineCallbacks
    def test_bad_status_can_be_inspected_instead(self):
        result = yield self.make(path="/status").get(params={"code": "404"}, raise_for_status=False)
        self.assertEqual((result.status, result.data), (404, {"error": "nope"}))

    @defer.inlineCallbacks
    def test_timeout_is_typed_counted_and_retried_for_get(self):
        conn = self.make(path="/hang", timeout="200ms", retries=1)
        with self.assertRaises(OutgoingTimeout) as caught:
            yield conn.get()
        self.assertEqual(caught.exception.status, 504)
        self.assertEqual(caught.exception.attempts, 2)
        self.assertEqual((conn.counters["timeouts"], conn.counters["retries"]), (2, 1))
        self.assertEqual(conn.counters["failures"], 1)
        self.assertEqual(len(self.upstream.seen), 2)

    @defer.inlineCallbacks
    def test_size_cap_by_content_length(self):
        conn = self.make(path="/big", max_response_size=1000, data_format="raw", retries=2)
        with self.assertRaises(ResponseTooLarge):
            yield conn.get(params={"size": "5000"})
        self.assertEqual(conn.counters["too_large"], 1)
        self.assertEqual(len(self.upstream.seen), 1)     # never retried
        ok = yield conn.get(params={"size": "1000"})
        self.assertEqual(len(ok.body), 1000)

    @defer.inlineCallbacks
    def test_size_cap_while_streaming(self):
        conn = self.make(path="/stream", max_response_size="4KiB", data_format="raw")
        with self.assertRaises(ResponseTooLarge):
            yield conn.get(params={"chunks": "64"})
        self.assertEqual(conn.counters["too_large"], 1)

    @defer.inlineCallbacks
    def test_connection_refused_is_typed(self):
        spare = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
        port = spare.getHost().port
        yield spare.stopListening()
        conn = connection(port, retries=1)
        self.connections.append(conn)
        with self.assertRaises(ConnectionFailed) as caught:
            yield conn.get()
        self.assertIn("connection refused", caught.exception.message)
        self.assertEqual(caught.exception.attempts, 2)
        self.assertEqual(conn.counters["connection_errors"], 2)

    @defer.inlineCallbacks
    def test_basic_auth_header_sent(self):
        conn = self.make(path="/json", auth={"type": "basic", "username": "u", "password": "s3cret"})
        yield conn.get()
        expected = "Basic " + base64.b64encode(b"u:s3cret").decode()
        self.assertEqual(self.upstream.seen[-1]["headers"]["authorization"], expected)
        self.assertNotIn("s3cret", repr(conn))

    @defer.inlineCallbacks
    def test_api_key_header_sent(self):
        conn = self.make(path="/json", auth={"type": "apikey", "header": "X-Key", "key": "k-123"})
        yield conn.get()
        self.assertEqual(self.upstream.seen[-1]["headers"]["x-key"], "k-123")

    @defer.inlineCallbacks
    def test_bearer_token_sent(self):
        conn = self.make(path="/json", auth={"type": "bearer", "token": "tok-9"})
        yield conn.get()
        self.assertEqual(self.upstream.seen[-1]["headers"]["authorization"], "Bearer tok-9")

    def test_missing_path_param_is_a_clear_error(self):
        conn = self.make(path="/items/{item_id}")
        failure = self.failureResultOf(conn.get(), ValueError)
        self.assertIn("item_id", str(failure.value))


class ConfigTests(TestCase):

    def check(self, **overrides):
        return HTTP_OUTGOING.check({"name": "x", "type": "http", "address": "https://api.example.com",
                                    **overrides})

    def test_defaults_verify_tls_and_bound_everything(self):
        section = self.check()
        self.assertTrue(section.tls_verify)
        self.assertEqual((section.timeout, section.retries, section.max_response_size),
                         (10.0, 2, 2 * 1024 * 1024))

    def test_credentials_in_the_address_are_refused(self):
        from broker.config import ConfigError
        with self.assertRaises(ConfigError) as caught:
            self.check(address="https://user:pw@api.example.com")
        self.assertIn("no credentials", str(caught.exception))

    def test_retries_are_capped(self):
        from broker.config import ConfigError
        with self.assertRaises(ConfigError):
            self.check(retries=1000)

    def test_unknown_auth_type(self):
        from broker.config import ConfigError
        with self.assertRaises(ConfigError) as caught:
            self.check(auth={"type": "digest"})
        self.assertIn("known types: apikey, basic, bearer", str(caught.exception))

    def test_is_a_schema(self):
        self.assertIsInstance(HTTP_OUTGOING, Schema)
