"""The local channel between the main process and one worker: calls, answers and notices.

Frames are length-prefixed (4 bytes, big-endian) orjson arrays over a Unix
socket pair, both sides alike:

* ``[0, id, op, args]`` — a call; the other side answers ``[1, id, result]``
  or ``[2, id, code, message]`` (a typed error: its ``BrokerError`` code);
* ``[3, op, args]`` — a notice (no answer): a pub/sub message, a log line.

Everything is bounded: a frame over ``max_frame`` closes the link (counted),
calls waiting for an answer are at most ``max_pending`` (more fail at once,
counted) and each fails after ``timeout`` seconds (counted).  A lost link
fails every call waiting on it.
"""

import orjson
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from broker.errors import BrokerError, ServiceUnavailable

__all__ = ["Link", "LinkError", "LinkFactory"]

log = Logger()

CALL, ANSWER, ERROR, NOTICE = 0, 1, 2, 3


class LinkError(ServiceUnavailable):
    """The other process did not answer: the link is down, busy or too slow."""

    code = "worker_link"


class RemoteError(BrokerError):
    """An error raised on the other side, kept with its code and message."""

    def __init__(self, code, message, status=500):
        super().__init__(message)
        self.code, self.status = code, status


class Link(Int32StringReceiver):
    """One end of the link.

    :param handlers: ``{op: callable(*args)}`` answering calls (a value or a Deferred).
    :param notices: ``{op: callable(*args)}`` taking notices.
    :param reactor: for call timeouts.
    """

    def __init__(self, handlers, notices, reactor, max_frame=64 << 20, max_pending=10_000,
                 timeout=10.0, on_lost=None):
        self.MAX_LENGTH = max_frame
        self.handlers, self.notices = handlers, notices
        self.reactor = reactor
        self.max_pending, self.timeout = max_pending, timeout
        self.on_lost = on_lost
        self.connected = False
        self._next = 0
        self._pending = {}
        self.counters = {"calls": 0, "notices_sent": 0, "notices_received": 0, "timeouts": 0,
                         "pending_refused": 0, "frames_too_large": 0, "bad_frames": 0}

    # -- sending ---------------------------------------------------------------------------

    def call(self, op, *args):
        """Ask the other side; a Deferred of its answer (:class:`LinkError` when it cannot)."""
        if not self.connected:
            return defer.fail(LinkError("The main process link is down"))
        if len(self._pending) >= self.max_pending:
            self.counters["pending_refused"] += 1
            return defer.fail(LinkError(f"Too many calls waiting on the link ({self.max_pending})"))
        self._next += 1
        call_id = self._next
        d = defer.Deferred(lambda _: self._pending.pop(call_id, None))
        self._pending[call_id] = d
        d.addTimeout(self.timeout, self.reactor, onTimeoutCancel=self._timed_out)
        self.counters["calls"] += 1
        self._send([CALL, call_id, op, args])
        return d

    def _timed_out(self, result, timeout):
        self.counters["timeouts"] += 1
        raise LinkError(f"No answer on the link within {timeout}s")

    def notify(self, op, *args):
        """Tell the other side, expecting no answer; False when the link is down."""
        if not self.connected:
            return False
        self.counters["notices_sent"] += 1
        self._send([NOTICE, op, args])
        return True

    def send_frame(self, frame):
        """Send a frame already encoded (one encoding for many links)."""
        if self.connected:
            self.counters["notices_sent"] += 1
            self.sendString(frame)

    @staticmethod
    def notice_frame(op, *args):
        return _dumps([NOTICE, op, args])

    def _send(self, frame):
        self.sendString(_dumps(frame))

    # -- receiving -------------------------------------------------------------------------

    def connectionMade(self):
        self.connected = True

    def connectionLost(self, reason=None):
        self.connected = False
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(LinkError("The link to the other process was lost"))
        if self.on_lost is not None:
            self.on_lost(self)

    def lengthLimitExceeded(self, length):
        self.counters["frames_too_large"] += 1
        log.error("link: a frame of {length} bytes is over the limit of {limit}; closing the link",
                  length=length, limit=self.MAX_LENGTH)
        self.transport.loseConnection()

    def stringReceived(self, data):
        try:
            frame = orjson.loads(data)
            kind = frame[0]
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
            self.counters["bad_frames"] += 1
            return
        if kind == NOTICE:
            self.counters["notices_received"] += 1
            handler = self.notices.get(frame[1])
            if handler is None:
                self.counters["bad_frames"] += 1
                return
            try:
                handler(*frame[2])
            except Exception:
                log.failure("link: notice {op} failed", op=frame[1])
        elif kind == CALL:
            self._answer(frame[1], frame[2], frame[3])
        else:
            d = self._pending.pop(frame[1], None)
            if d is None:
                return  # timed out already
            if kind == ANSWER:
                d.callback(frame[2])
            else:
                d.errback(RemoteError(frame[2], frame[3], frame[4] if len(frame) > 4 else 500))

    def _answer(self, call_id, op, args):
        handler = self.handlers.get(op)
        if handler is None:
            self._send([ERROR, call_id, "bad_request", f"No such link call: {op}", 400])
            return
        d = defer.maybeDeferred(handler, *args)
        d.addCallbacks(lambda result: self._reply([ANSWER, call_id, result]),
                       lambda failure: self._reply(_error_frame(call_id, op, failure)))

    def _reply(self, frame):
        if self.connected:
            self._send(frame)


def _dumps(frame):
    """orjson, with what reports hold besides JSON's own types (int keys, sets...) as text."""
    return orjson.dumps(frame, default=str, option=orjson.OPT_NON_STR_KEYS)


def _error_frame(call_id, op, failure):
    error = failure.value
    if isinstance(error, BrokerError):
        return [ERROR, call_id, error.code, error.message, error.status]
    log.failure("link: call {op} failed", failure, op=op)
    return [ERROR, call_id, "internal_error", f"{op} failed: {failure.getErrorMessage()}", 500]


class LinkFactory(Factory):
    """Builds one :class:`Link` (the main process adopts one socket per worker)."""

    noisy = False

    def __init__(self, make):
        self.make = make

    def buildProtocol(self, addr):
        return self.make()
