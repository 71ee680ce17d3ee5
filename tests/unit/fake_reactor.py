"""A fake reactor for unit tests that run real threads (ours, or ZeroMQ's)."""

import queue
import time

import zmq
from twisted.internet.testing import MemoryReactorClock

from broker.zmq.adapter import ZmqSocket


class ThreadedClock(MemoryReactorClock):
    """A fake reactor whose callFromThread queues calls for the test thread to run."""

    def __init__(self):
        super().__init__()
        self.from_threads = queue.Queue()

    def callFromThread(self, f, *args):
        self.from_threads.put((f, args))

    def run_next(self):
        f, args = self.from_threads.get(timeout=30)
        f(*args)


def run_zmq_until(reactor, done, seconds=10.0):
    """Let the ZeroMQ sockets a fake ``reactor`` watches read, as a real reactor would on
    their FDs, until ``done()`` is true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        poller = zmq.Poller()
        readers = [r for r in reactor.getReaders() if isinstance(r, ZmqSocket)]
        for reader in readers:
            poller.register(reader.sock, zmq.POLLIN)
        poller.poll(50)
        for reader in readers:
            reader.doRead()
        reactor.advance(0)
