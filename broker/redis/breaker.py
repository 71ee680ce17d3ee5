"""A circuit breaker: stop calling a server that keeps failing, probe it again later.

``closed`` lets every call through and counts consecutive failures; after
``failures`` of them it turns ``open`` and refuses calls for ``reset``
seconds; then it is ``half_open`` and lets exactly one probe through, whose
success closes it again and whose failure opens it for another ``reset``.
The clock is injected, so a unit test drives it with ``task.Clock``.
"""

from twisted.logger import Logger

__all__ = ["CircuitBreaker"]

log = Logger()

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Decides whether a call may go out; told how each call went.

    :param clock: anything with ``seconds()`` (the reactor, ``task.Clock``).
    :param failures: consecutive failures that open the breaker.
    :param reset: seconds the breaker stays open before one probe.
    :param name: what it guards, for log lines.
    """

    def __init__(self, clock, failures=5, reset=5.0, name="redis"):
        self.clock = clock
        self.threshold = failures
        self.reset = reset
        self.name = name
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = None
        self._probing = False
        self.counters = {"opened": 0, "probes": 0, "short_circuited": 0}

    def allow(self):
        """Whether a call may go out now; a refused call is counted."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self.clock.seconds() >= self.opened_at + self.reset:
            self.state = HALF_OPEN
            self._probing = False
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            self.counters["probes"] += 1
            log.info("{name}: circuit half-open, probing", name=self.name)
            return True
        self.counters["short_circuited"] += 1
        return False

    def succeeded(self):
        if self.state != CLOSED:
            log.info("{name}: probe succeeded, circuit closed", name=self.name)
        self.state = CLOSED
        self.consecutive = 0
        self._probing = False

    def failed(self):
        self.consecutive += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self.consecutive >= self.threshold):
            self._open()

    def _open(self):
        self.state = OPEN
        self.opened_at = self.clock.seconds()
        self._probing = False
        self.counters["opened"] += 1
        log.warn("{name}: circuit open after {count} consecutive failures; probing again in "
                 "{reset}s", name=self.name, count=self.consecutive, reset=self.reset)
