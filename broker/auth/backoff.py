"""Failed-login backoff per client address: after ``failures`` failures in a row, each
further attempt waits twice as long as the last (from ``base`` up to ``max``)."""

import math

from broker.errors import TooManyRequests

__all__ = ["LoginBackoff"]


class LoginBackoff:
    """``{address: [failures, locked until]}``, at most ``max_entries`` (oldest go first)."""

    def __init__(self, clock, failures=5, base=1.0, max=300.0, max_entries=100000):
        self.clock = clock
        self.failures, self.base, self.max, self.max_entries = failures, base, max, max_entries
        self._seen = {}
        self.counters = {"failed": 0, "locked": 0}

    def check(self, address):
        """Raise 429 with ``Retry-After`` while ``address`` must wait."""
        entry = self._seen.get(address)
        if entry is not None:
            wait = entry[1] - self.clock.seconds()
            if wait > 0:
                self.counters["locked"] += 1
                raise TooManyRequests("Too many failed logins: wait before trying again",
                                      headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def failed(self, address):
        entry = self._seen.pop(address, None)
        if entry is None:
            if len(self._seen) >= self.max_entries:
                self._seen.pop(next(iter(self._seen)))
            entry = [0, 0.0]
        entry[0] += 1
        self.counters["failed"] += 1
        over = entry[0] - self.failures
        if over >= 0:
            entry[1] = self.clock.seconds() + min(self.max, self.base * 2 ** min(over, 40))
        self._seen[address] = entry

    def succeeded(self, address):
        self._seen.pop(address, None)
