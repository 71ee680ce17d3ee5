"""TLS verification of outgoing HTTP connections against a real HTTPS server on 127.0.0.1.

The server's certificate (for "localhost") is signed by a CA made for the test: the
system's trust store does not know it, so the default (verify) refuses it; trusting the CA
with ``tls_ca_file`` accepts it; ``tls_verify: false`` skips the check.
"""

import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from broker.http.outgoing_errors import ConnectionFailed
from broker.http.outgoing import HTTP_OUTGOING, HTTPConnection
from tests.tls_support import make_pki


def temporary_directory(test):
    """A fresh directory outside the checkout, removed after ``test``."""
    path = Path(tempfile.mkdtemp(prefix="broker-test-tls-"))
    test.addCleanup(shutil.rmtree, path, True)
    return path


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b'{"hello": "tls"}'


class OutgoingHTTPSTests(TestCase):

    def setUp(self):
        tmp = temporary_directory(self)
        pki = make_pki(tmp)
        self.ca_file, certificate = pki.ca_file, pki.certificate
        site = server.Site(Hello())
        site.noisy = False
        self.port = reactor.listenSSL(0, site, certificate.options(), interface="127.0.0.1")
        self.connections = []

    @defer.inlineCallbacks
    def tearDown(self):
        for conn in self.connections:
            yield conn.stopService()
        yield self.port.stopListening()

    def make(self, **overrides):
        config = {"name": "tls-api", "type": "http", "retries": 0,
                  "address": f"https://localhost:{self.port.getHost().port}", **overrides}
        conn = HTTPConnection(HTTP_OUTGOING.check(config), reactor)
        self.connections.append(conn)
        return conn

    @defer.inlineCallbacks
    def test_an_unknown_ca_is_refused_by_default(self):
        with self.assertRaises(ConnectionFailed) as caught:
            yield self.make().get()
        self.assertIn("TLS", caught.exception.message)

    @defer.inlineCallbacks
    def test_trusting_the_ca_file(self):
        result = yield self.make(tls_ca_file=self.ca_file).get()
        self.assertEqual(result.data, {"hello": "tls"})

    @defer.inlineCallbacks
    def test_verification_off(self):
        result = yield self.make(tls_verify=False).get()
        self.assertEqual(result.data, {"hello": "tls"})


class CAFileConfigTests(TestCase):

    def build(self, path=None, **overrides):
        from broker.http.outgoing import build_http_outgoing
        from broker.testing.components import ComponentHarness
        ctx = ComponentHarness(reactor=reactor).context()
        config = {"name": "x", "type": "http", "address": "https://localhost", **overrides}
        if path is not None:
            config["tls_ca_file"] = str(path)
        return build_http_outgoing(HTTP_OUTGOING.check(config), ctx)

    def test_verification_off_is_warned_about(self):
        from twisted.logger import formatEvent, globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        try:
            self.build(tls_verify=False)
        finally:
            globalLogPublisher.removeObserver(events.append)
        self.assertIn("outgoing http x: TLS certificates are NOT verified (tls_verify: false)",
                      [formatEvent(e) for e in events])

    def test_missing_ca_file_is_a_config_error(self):
        from broker.config import ConfigError
        with self.assertRaises(ConfigError) as caught:
            self.build("/nonexistent/ca.pem")
        self.assertIn("tls_ca_file: cannot read it: No such file or directory", str(caught.exception))

    def test_garbage_ca_file_is_a_config_error(self):
        from broker.config import ConfigError
        path = temporary_directory(self) / "ca.pem"
        path.write_text("not a certificate")
        with self.assertRaises(ConfigError) as caught:
            self.build(path)
        self.assertIn("tls_ca_file: not a PEM certificate", str(caught.exception))
