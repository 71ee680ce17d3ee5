"""write_now: straight to the socket when nothing waits, else Twisted's buffered write."""

import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, endpoints, protocol, reactor, ssl
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from broker.fastwrite import write_now
from tests.tls_support import make_pki


class _Collect(protocol.Protocol):
    def connectionMade(self):
        self.factory.connected.callback(self)
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.factory.expect and not self.factory.done.called:
            self.factory.done.callback(self.received)

    def connectionLost(self, reason):
        if not self.factory.done.called:
            self.factory.done.errback(reason)


def test_non_socket_transports_get_a_plain_write():
    transport = StringTransport()
    write_now(transport, b"abc")
    assert transport.value() == b"abc"


class WriteNowTCPTests(unittest.TestCase):
    @defer.inlineCallbacks
    def _pair(self, expect):
        server_factory = protocol.Factory.forProtocol(_Collect)
        server_factory.connected, server_factory.done = defer.Deferred(), defer.Deferred()
        server_factory.expect = 0
        port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server_factory)
        self.addCleanup(port.stopListening)
        client_factory = protocol.Factory.forProtocol(_Collect)
        client_factory.connected, client_factory.done = defer.Deferred(), defer.Deferred()
        client_factory.expect = expect
        client = yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            client_factory)
        self.addCleanup(client.transport.loseConnection)
        server = yield server_factory.connected
        self.addCleanup(server.transport.loseConnection)
        return server, client_factory.done

    @defer.inlineCallbacks
    def test_small_write_leaves_nothing_buffered(self):
        server, done = yield self._pair(expect=5)
        write_now(server.transport, b"hello")
        # sent at once, not left in Twisted's buffers for the next reactor turn
        self.assertEqual((server.transport.dataBuffer, server.transport._tempDataLen), (b"", 0))
        received = yield done
        self.assertEqual(received, b"hello")

    @defer.inlineCallbacks
    def test_writes_after_buffered_data_keep_their_order(self):
        big = b"x" * (8 * 1024 * 1024)  # more than the kernel takes at once
        server, done = yield self._pair(expect=len(big) + 4)
        write_now(server.transport, big)
        write_now(server.transport, b"tail")
        received = yield done
        self.assertEqual(len(received), len(big) + 4)
        self.assertTrue(received.endswith(b"tail") and received[:-4] == big)


class _RecordingSocket:
    """A TCP socket that notes every byte sent through it."""

    def __init__(self, sock):
        self._sock = sock
        self.sent = b""

    def send(self, data):
        count = self._sock.send(data)
        self.sent += bytes(data[:count])
        return count

    def __getattr__(self, name):
        return getattr(self._sock, name)


class WriteNowTLSTests(unittest.TestCase):
    """An ``ssl:`` endpoint hands the protocol a TLS wrapper whose unknown attributes
    (``socket``, ``dataBuffer``...) are the TCP transport's beneath it."""

    @defer.inlineCallbacks
    def test_a_tls_wrapped_connection_is_never_written_in_clear(self):
        tmp = Path(tempfile.mkdtemp(prefix="broker-test-tls-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        pki = make_pki(tmp)
        secret = b"plaintext that must be encrypted"
        server_factory = protocol.Factory.forProtocol(_Collect)
        server_factory.connected, server_factory.done = defer.Deferred(), defer.Deferred()
        server_factory.expect = 1
        port = yield endpoints.SSL4ServerEndpoint(reactor, 0, pki.certificate.options(),
                                                  interface="127.0.0.1").listen(server_factory)
        self.addCleanup(port.stopListening)
        client_factory = protocol.Factory.forProtocol(_Collect)
        client_factory.connected, client_factory.done = defer.Deferred(), defer.Deferred()
        client_factory.expect = len(secret)
        trust = ssl.optionsForClientTLS("localhost", ssl.Certificate.loadPEM(
            Path(pki.ca_file).read_bytes()))
        client = yield endpoints.SSL4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port,
                                                    trust).connect(client_factory)
        self.addCleanup(client.transport.loseConnection)
        server = yield server_factory.connected
        self.addCleanup(server.transport.loseConnection)
        tcp = server.transport.transport  # the TCP connection under the TLS wrapper
        tcp.socket = wire = _RecordingSocket(tcp.socket)
        write_now(server.transport, secret)
        received = yield client_factory.done
        self.assertEqual(received, secret)
        self.assertTrue(wire.sent)
        self.assertNotIn(secret, wire.sent)
