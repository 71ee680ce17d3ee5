"""write_now: straight to the socket when nothing waits, else Twisted's buffered write."""

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from broker.channels.fastwrite import write_now


class _Collect(protocol.Protocol):
    def connectionMade(self):
        self.factory.connected.callback(self)
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.factory.expect:
            self.factory.done.callback(self.received)


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
