"""pyzmq in the reactor: one ZeroMQ socket watched as a Twisted read descriptor.

ZeroMQ's ``zmq.FD`` is not the socket's data: it is a signal that the
socket's state *may* have changed, and it fires on edges.  So on every event
we drain every waiting message (in batches, yielding to the reactor between
them), then read ``zmq.EVENTS``, which re-arms the FD and shows what arrived
meanwhile; and after every send we schedule one more look, because a send
can consume the edge that would have told us about incoming messages.
Nothing ever waits for the next edge.

txzmq did this once but is unmaintained; this is our own small adapter
(see the research note ecosystem.md §3d).
"""

import itertools
import struct

import zmq
from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["RELEASE_GRACE", "ZmqSocket", "open_socket", "zmq_context"]

log = Logger()

# Plain ints: pyzmq's enum constants cost a Python-level call on every use.
_EVENTS, _POLLIN, _POLLOUT, _NOBLOCK = (int(c) for c in (zmq.EVENTS, zmq.POLLIN, zmq.POLLOUT,
                                                          zmq.NOBLOCK))

#: Seconds past ``linger`` to wait for ZeroMQ to let go of a closed socket.
RELEASE_GRACE = 5.0

_context = None
_monitors = itertools.count()


def zmq_context():
    """The process's one ZeroMQ context (``inproc://`` works across sockets)."""
    global _context
    if _context is None:
        _context = zmq.Context.instance()
    return _context


@implementer(IReadDescriptor)
class ZmqSocket:
    """A ZeroMQ socket living in the reactor.

    :param reactor: the reactor (``addReader``/``removeReader``/``callLater``).
    :param socket_type: ``zmq.PULL``, ``zmq.SUB``, ``zmq.ROUTER``, ...
    :param options: ``[(zmq option, value), ...]`` set before bind/connect.
    :param on_message: ``callable(frames)`` for each message received (a
        list of bytes); None for a socket that only sends.
    :param on_writable: ``callable()`` once sending is possible again after
        :meth:`want_write` (a send that met the high-water mark).
    :param batch: at most this many messages are handled per reactor turn;
        the rest are read on the next turn, so one busy socket cannot starve
        the others.
    :param name: for log lines.
    """

    def __init__(self, reactor, socket_type, *, options=(), on_message=None, on_writable=None,
                 batch=1000, name="zmq"):
        self.reactor = reactor
        self.name = name
        self.sock = zmq_context().socket(socket_type)
        for option, value in options:
            self.sock.setsockopt(option, value)
        self._fd = self.sock.getsockopt(zmq.FD)  # cached: needed again after close
        self.on_message = on_message
        self.on_writable = on_writable
        self.batch = batch
        self.paused = False
        self.endpoints = []
        self._bound = False
        self._wants_write = False
        self._check = None
        self._watching = False

    # -- set-up and tear-down ---------------------------------------------------

    def bind(self, address):
        """Bind ``address``; return the endpoint actually bound (``tcp://…:*`` resolved)."""
        self.sock.bind(address)
        self._bound = True
        endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.endpoints.append(endpoint)
        return endpoint

    def connect(self, address):
        self.sock.connect(address)
        self.endpoints.append(address)
        return address

    def start(self):
        """Watch the socket; messages may already be waiting, so look at once."""
        if not self._watching:
            self._watching = True
            self.reactor.addReader(self)
        self.schedule_check()

    def close(self, linger=0.0):
        """Stop watching and close; ``linger`` seconds for unsent messages to leave.

        :return: a Deferred firing once ZeroMQ has let go of the socket: it closes
            in its own threads, so a bound address is free only then, e.g. for the
            socket replacing this one.  That is at most ``linger`` later, unless an
            ``inproc://`` peer never calls ZeroMQ again: after ``linger`` and
            ``RELEASE_GRACE`` seconds the Deferred fires anyway, with a warning.
        """
        if self._check is not None and self._check.active():
            self._check.cancel()  # else it runs on a closed socket
        self._check = None
        if self._watching:
            self._watching = False
            self.reactor.removeReader(self)
        if self.sock.closed:
            return defer.succeed(None)
        if not self._bound:
            self.sock.close(linger=int(linger * 1000))
            return defer.succeed(None)
        released = defer.Deferred()
        address = f"inproc://broker.zmq.released.{next(_monitors)}"
        self.sock.monitor(address, zmq.EVENT_MONITOR_STOPPED)  # sent once the socket is gone
        watcher = ZmqSocket(self.reactor, zmq.PAIR, options=[(zmq.LINGER, 0)],
                            on_message=lambda frames: _released(frames, watcher, released),
                            name=f"{self.name} (closing)")
        watcher.connect(address)
        watcher.start()
        self.sock.close(linger=int(linger * 1000))
        return released.addTimeout(linger + RELEASE_GRACE, self.reactor,
                                   lambda _, timeout: self._not_released(watcher, timeout))

    def _not_released(self, watcher, timeout):
        # The watcher stays: ZeroMQ sends the event from its reaper thread, which would
        # block for good on a closed watcher (and with it every socket closed after).
        log.warn("{name}: ZeroMQ has not let go of the socket {timeout}s after closing it (an "
                 "inproc peer that never calls ZeroMQ?); going on", name=self.name, timeout=timeout)

    @property
    def closed(self):
        return self.sock.closed

    # -- flow control -------------------------------------------------------------

    def pause(self):
        """Stop taking messages in; ZeroMQ queues them up to the receive high-water mark."""
        self.paused = True

    def resume(self):
        if self.paused:
            self.paused = False
            self.schedule_check()  # waiting messages raise no new edge

    def want_write(self):
        """Call ``on_writable`` as soon as the socket can send again."""
        self._wants_write = True
        self.schedule_check()

    def schedule_check(self):
        """Look at the socket's state on the next reactor turn (once, however often asked)."""
        if self._check is None and not self.sock.closed:
            self._check = self.reactor.callLater(0, self._checked)

    def _checked(self):
        self._check = None
        self.doRead()

    # -- sending ------------------------------------------------------------------

    def send(self, frames):
        """Send a multipart message without blocking.

        :raise zmq.Again: the peer (or every peer) is at its high-water mark.
        :raise zmq.ZMQError: e.g. ``EHOSTUNREACH`` for a ROUTER reply to a gone peer.
        """
        try:
            self.sock.send_multipart(frames, _NOBLOCK)
        finally:
            self.schedule_check()  # a send can consume the edge incoming messages need

    # -- IReadDescriptor ------------------------------------------------------------

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return self.name

    def connectionLost(self, reason):
        """The reactor gave up on the descriptor (it is shutting down)."""
        self._watching = False
        self.close()

    def doRead(self):
        """Drain: handle every message waiting, up to ``batch`` this turn.

        Messages are read until ZeroMQ has none (``zmq.Again``); only then is
        ``zmq.EVENTS`` read, which re-arms the edge-triggered FD and shows a
        message that arrived meanwhile.  (Reading EVENTS per message would
        cost more than the message: ~5 us each in pyzmq.)
        """
        sock = self.sock
        handled = 0
        wrote = False
        while not sock.closed:
            if not self.paused and self.on_message is not None:
                if handled >= self.batch:
                    self.schedule_check()
                    return
                try:
                    frame = sock.recv(_NOBLOCK, False)
                except zmq.Again:
                    pass
                else:
                    frames = [frame.bytes]
                    while frame.more:  # the rest of a multipart message is there already
                        frame = sock.recv(_NOBLOCK, False)
                        frames.append(frame.bytes)
                    handled += 1
                    try:
                        self.on_message(frames)
                    except Exception:  # a bug in a handler must not close the socket
                        log.failure("{name}: handling a message failed", name=self.name)
                    continue
            events = sock.getsockopt(_EVENTS)
            if events & _POLLOUT and self._wants_write and not wrote:
                wrote = True  # once per turn: a writable flag is not a promise
                self._wants_write = False
                self.on_writable()
                continue
            if events & _POLLIN and not self.paused and self.on_message is not None:
                continue
            return


def _released(frames, watcher, released):
    """A monitor event (``[event id, value][, endpoint]``) about a closing socket."""
    event, _ = struct.unpack("=HI", frames[0])
    if event == zmq.EVENT_MONITOR_STOPPED:
        watcher.close()
        if not released.called:  # else the wait timed out
            released.callback(None)


def open_socket(reactor, socket_type, options, section, what, **kwargs):
    """A :class:`ZmqSocket` bound and connected per ``section``; one-line SystemExit on failure."""
    socket = ZmqSocket(reactor, socket_type, options=options, name=what, **kwargs)
    try:
        for address in section.bind or ():
            endpoint = socket.bind(address)
            log.info("{what} ({type}) bound to {endpoint}", what=what, type=section.type,
                     endpoint=endpoint)
        for address in section.connect or ():
            socket.connect(address)
            log.info("{what} ({type}) connecting to {endpoint}", what=what, type=section.type,
                     endpoint=address)
    except zmq.ZMQError as error:
        socket.close()
        raise SystemExit(f"broker: {what}: cannot use {address}: {error}") from None
    return socket

