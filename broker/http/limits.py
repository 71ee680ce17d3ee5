"""Limits of the HTTP server protocol, and how a connection enforces them.

:class:`HTTPLimits` bounds what one connection may cost the broker: body and
head sizes, header count, the deadlines (slowloris, idle keep-alive, slow
body, a client not taking our answers), pipelining depth and open connections
per factory.  :data:`COUNTERS` names the integer counters the factory keeps
for the admin and metrics code; every limit that trips moves one of them.

:class:`FlowControl` is the part of the protocol that enforces deadlines and
back-pressure.  Each connection has one timer, pointed at the deadline that
currently matters.  It is not touched on the keep-alive hot path: answers
only note their time, and an idle timer firing early (the connection was
busy since) re-arms itself for the rest.
"""

from dataclasses import dataclass

from twisted.logger import Logger

__all__ = ["COUNTERS", "FlowControl", "HTTPLimits"]

log = Logger()

#: Names of the factory's counters, all starting at zero.
COUNTERS = (
    "connections",           # connections accepted
    "requests",              # requests handed to the handler
    "rejected_connections",  # closed at once: over max_connections
    "header_timeouts",       # head not complete within header_timeout
    "body_timeouts",         # body not complete within body_timeout
    "idle_timeouts",         # keep-alive idle
    "write_timeouts",        # aborted: our answers not taken within write_timeout
    "body_too_large",        # 413
    "headers_too_large",     # 431: head over max_header_size
    "too_many_headers",      # 431: over max_header_count
    "malformed",             # 400 (and 505)
    "unsupported_transfer_coding",  # 501: a Transfer-Encoding other than chunked
    "upgrades",              # connections handed to another protocol
)


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """What one HTTP connection may cost.

    :param max_body_size: largest request body in bytes (declared or chunked).
    :param max_header_count: most header lines in one request.
    :param max_header_size: most bytes of request line plus headers.
    :param header_timeout: seconds from a request's first byte (or the
        connection's opening) until its head is complete.
    :param idle_timeout: seconds a keep-alive connection may wait with no
        request in progress.
    :param body_timeout: seconds from a complete head to a complete body.
    :param write_timeout: seconds a client has to take what waits for it:
        from the moment our answers fill the transport's buffer (it pauses
        us) until it is drained, and from a close until the last answer is
        taken.  Past it the connection is aborted.
    :param max_pipelined: parsed but unanswered requests held per connection
        before reading pauses.
    :param max_connections: open connections per factory; a new one over it
        is answered 503 and closed.
    """

    max_body_size: int = 1_048_576
    max_header_count: int = 100
    max_header_size: int = 16_384
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 30.0
    write_timeout: float = 60.0
    max_pipelined: int = 16
    max_connections: int = 1024


# Timer kinds: the connection's one timer is pointed at one of these.  STALLED:
# our answers wait in the paused transport; DRAINING: closing, the last ones wait.
HEADER, BODY, IDLE, STALLED, DRAINING = "header", "body", "idle", "stalled", "draining"
# A timer firing this close to its deadline counts as on time.
_SLACK = 0.001


class FlowControl:
    """Deadlines and back-pressure for :class:`~broker.http.protocol.HTTPProtocol`.

    Reading pauses while ``max_pipelined`` requests wait, while the client
    leaves our answers unread (the transport pauses us as its producer), and
    once no more requests will be read.  A client must take what we wrote
    within ``write_timeout``, while paused and after we close (a graceful
    close waits for the buffer to drain), or the connection is aborted.
    The mixer-in provides the state (``_queue``, ``_active``, ``_in_head``...)
    and ``_refuse``, ``_pump`` and ``_close``.
    """

    # -- IPushProducer: the transport's write buffer --------------------------

    def pauseProducing(self):
        """The client is not reading our answers: stop reading its requests."""
        self._consumer_paused = True
        self._update()

    def resumeProducing(self):
        """The client reads again: so do we."""
        self._consumer_paused = False
        self._update()

    def stopProducing(self):
        """The transport is going away and has dropped us as its producer."""
        self._registered = False

    # -- reading and the timer ------------------------------------------------

    def _update(self):
        """Pause or resume reading, and point the timer at the current deadline."""
        if self._closing or self._upgraded is not None:
            return
        queue = self._queue
        pending = len(queue) + (self._active is not None)
        if self._pipeline_paused:
            if not queue:
                self._pipeline_paused = False
        elif pending >= self._limits.max_pipelined:
            self._pipeline_paused = True
        paused = self._pipeline_paused or self._consumer_paused or self._discard
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()
        kind = self._timer_kind
        if self._consumer_paused:
            if kind is not STALLED:
                self._arm(STALLED, self._limits.write_timeout)
        elif paused or pending:
            self._timer_kind = None  # the timer may still fire: it then does nothing
        elif self._in_body:
            if kind is not BODY:
                self._arm(BODY, self._limits.body_timeout)
        elif self._in_head or self._fresh:
            if kind is not HEADER:
                self._arm(HEADER, self._limits.header_timeout)
        elif kind is not IDLE:
            self._arm(IDLE, self._limits.idle_timeout)

    def _arm(self, kind, seconds):
        """Point the timer at ``kind``, due ``seconds`` from now.

        A later deadline is a ``DelayedCall.reset`` (cheap in Twisted); a sooner
        one a new call, since moving a call sooner searches the reactor's heap.
        """
        self._timer_kind = kind
        self._deadline = deadline = self._seconds() + seconds
        timer = self._timer
        if timer is not None and timer.active():
            if timer.getTime() <= deadline:
                timer.reset(seconds)
                return
            timer.cancel()
        self._timer = self._call_later(seconds, self._timed_out)

    def _cancel_timer(self):
        self._timer_kind = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self):
        kind = self._timer_kind  # once closing, DRAINING or None
        if kind is None or self._upgraded is not None:
            return
        now = self._seconds()
        deadline = self._answered_at + self._limits.idle_timeout if kind is IDLE else self._deadline
        if deadline - now > _SLACK:
            self._timer = self._call_later(deadline - now, self._timed_out)
            return
        self._timer_kind = None
        if kind is IDLE:
            self._counters["idle_timeouts"] += 1
            self._close()
        elif kind is STALLED or kind is DRAINING:
            self._counters["write_timeouts"] += 1
            log.info("Aborting {peer}: our answers not taken within {seconds}s",
                     peer=self._peer, seconds=self._limits.write_timeout)
            if kind is STALLED:
                self._close(abort=True)
            else:  # closed already: only the abort is left
                self.transport.abortConnection()
        elif kind is BODY:
            self._refuse(408, "Request body timeout", "body_timeouts")
            self._pump()
        elif self._in_head:
            self._refuse(408, "Request header timeout", "header_timeouts")
            self._pump()
        else:  # nothing received on a fresh connection: nobody to answer
            self._counters["header_timeouts"] += 1
            self._close()

    def _count_head(self, data):
        """Bound the raw size of a head still incomplete after this read.

        This counts what httptools holds back in a header still being
        received; ``on_headers_complete`` measures a head once complete.
        """
        if self._begin_read == self._reads:  # the head began in this read
            # ... at its start, or after other requests: then its share is unknown
            self._head_raw = len(data) if self._begin_clean else 0
        else:
            self._head_raw += len(data)
        if self._head_raw > self._max_head:
            self._refuse(431, "Request head too large", "headers_too_large")
