"""The reactor adapter on ``zmq.FD``, driven by a fake reactor over real inproc sockets."""

import itertools

import zmq
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from broker.zmq.adapter import RELEASE_GRACE, ZmqSocket, zmq_context
from tests.unit.fake_reactor import run_zmq_until

_names = itertools.count()


def _pair(batch=1000, on_message=None):
    """A PULL ZmqSocket in a fake reactor and a plain PUSH peer connected to it."""
    reactor = MemoryReactorClock()
    got = []
    pull = ZmqSocket(reactor, zmq.PULL, options=[(zmq.LINGER, 0)],
                     on_message=on_message or got.append, batch=batch)
    address = f"inproc://adapter-{next(_names)}"
    pull.bind(address)
    push = zmq_context().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(address)
    return reactor, pull, push, got


def test_start_watches_the_fd_and_looks_at_once():
    reactor, pull, push, got = _pair()
    push.send(b"early")  # waiting before we watch: no edge will come for it
    pull.start()
    assert pull in reactor.getReaders()
    reactor.advance(0)
    assert got == [[b"early"]]
    pull.close(), push.close()


def test_one_event_drains_every_waiting_message_in_batches():
    reactor, pull, push, got = _pair(batch=30)
    pull.start()
    reactor.advance(0)
    for n in range(100):
        push.send_multipart([b"t", str(n).encode()])
    pull.doRead()  # one FD event
    assert len(got) == 30
    assert reactor.getDelayedCalls()  # the rest is read on the next turn, not the next edge
    for _ in range(3):
        reactor.advance(0)
    assert [int(frames[1]) for frames in got] == list(range(100))
    pull.close(), push.close()


def test_pause_holds_messages_and_resume_reads_them_without_a_new_edge():
    reactor, pull, push, got = _pair()
    pull.start()
    pull.pause()
    push.send(b"a")
    push.send(b"b")
    pull.doRead()
    reactor.advance(0)
    assert got == []
    pull.resume()
    reactor.advance(0)
    assert got == [[b"a"], [b"b"]]
    pull.close(), push.close()


def test_a_failing_handler_is_logged_and_draining_goes_on():
    seen = []

    def handler(frames):
        seen.append(frames)
        if frames == [b"bad"]:
            raise RuntimeError("boom")

    reactor, pull, push, _ = _pair(on_message=handler)
    pull.start()
    for body in (b"bad", b"good"):
        push.send(body)
    with capturedLogs() as events:
        pull.doRead()
    assert seen == [[b"bad"], [b"good"]] and not pull.closed
    assert [e["log_failure"].value.args for e in events if "log_failure" in e] == [("boom",)]
    pull.close(), push.close()


def test_send_schedules_one_recheck_and_close_cancels_it():
    reactor = MemoryReactorClock()
    router = ZmqSocket(reactor, zmq.PUSH, options=[(zmq.LINGER, 0)])
    router.bind(f"inproc://adapter-{next(_names)}")
    router.start()
    reactor.advance(0)
    peer = zmq_context().socket(zmq.PULL)
    peer.connect(router.endpoints[0])
    router.send([b"x"])
    router.send([b"y"])
    calls = list(reactor.getDelayedCalls())
    assert len(calls) == 1  # a send may consume the edge: look again, once
    router.close()
    assert not calls[0].active() and router not in reactor.getReaders() and router.closed
    assert peer.recv() == b"x"
    peer.close(linger=0)


def test_want_write_calls_back_once_the_socket_can_send():
    reactor = MemoryReactorClock()
    calls = []
    push = ZmqSocket(reactor, zmq.PUSH, options=[(zmq.LINGER, 0), (zmq.SNDHWM, 1)],
                     on_writable=lambda: calls.append(1))
    address = f"inproc://adapter-{next(_names)}"
    push.bind(address)
    push.start()
    push.want_write()
    reactor.advance(0)
    assert calls == []  # no peer: nowhere to write
    peer = zmq_context().socket(zmq.PULL)
    peer.connect(address)
    push.doRead()  # the FD signals the new peer
    assert calls == [1]
    push.close(), peer.close(linger=0)


def test_waiting_for_zeromq_to_free_a_closed_socket_is_bounded():
    reactor = MemoryReactorClock()
    pull = ZmqSocket(reactor, zmq.PULL, options=[(zmq.LINGER, 0)], name="pull")
    address = f"inproc://adapter-{next(_names)}"
    pull.bind(address)
    peer = zmq_context().socket(zmq.PUSH)  # an inproc peer that never calls ZeroMQ again:
    peer.connect(address)                  # the socket cannot finish closing
    released = []
    with capturedLogs() as events:
        pull.close(linger=0.5).addCallback(released.append)
        reactor.advance(0)
        assert released == [] and pull.closed
        reactor.advance(0.5 + RELEASE_GRACE)
    assert released == [None]
    assert any("pull: ZeroMQ has not let go of the socket 5.5s after closing it" in formatEvent(e)
               for e in events)
    peer.close(linger=0)  # the socket can finish closing now
    run_zmq_until(reactor, lambda: not reactor.getReaders())  # what watched it goes too
    again = ZmqSocket(reactor, zmq.PULL)  # and ZeroMQ still closes sockets
    again.bind(address)
    released = []
    again.close().addCallback(released.append)
    run_zmq_until(reactor, lambda: released)
