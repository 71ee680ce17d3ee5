"""Per-service counters and a latency histogram, kept cheap for the invoker's hot path.

The invoker adds to plain attributes and, when timing is on, one bucket of a
fixed histogram per answered invocation; exporters (``/metrics``, the
dashboard) read them when asked, so nothing else runs per request.
"""

from bisect import bisect_left

__all__ = ["LATENCY_BUCKETS", "ServiceStats"]

#: Upper bounds (seconds) of the latency histogram's buckets; one more bucket holds the rest.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)


class ServiceStats:
    """One service's invocations, errors, timeouts and answered-invocation latencies."""

    __slots__ = ("invocations", "client_errors", "service_errors", "timeouts", "counts", "sum",
                 "bounds")

    def __init__(self, bounds=LATENCY_BUCKETS):
        self.invocations = self.client_errors = self.service_errors = self.timeouts = 0
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds):
        """Count one answered invocation that took ``seconds``."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def observed(self):
        return sum(self.counts)

    def cumulative(self):
        """``[(upper bound, count at or under it)]``, ending with ``+inf``."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            total += count
            out.append((bound, total))
        return out

    def quantile(self, q):
        """An estimate of the ``q`` quantile (seconds) from the buckets, or None when empty."""
        total = self.observed
        if not total:
            return None
        rank, seen, lower = q * total, 0, 0.0
        for bound, count in zip(self.bounds, self.counts):
            if count and seen + count >= rank:
                return lower + (bound - lower) * (rank - seen) / count
            seen += count
            lower = bound
        return self.bounds[-1]

    def report(self):
        """The counters and p50/p99 (milliseconds) as a plain dict."""
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        return {"invocations": self.invocations, "client_errors": self.client_errors,
                "service_errors": self.service_errors, "timeouts": self.timeouts,
                "answered": self.observed,
                "p50_ms": None if p50 is None else round(p50 * 1000, 3),
                "p99_ms": None if p99 is None else round(p99 * 1000, 3)}
