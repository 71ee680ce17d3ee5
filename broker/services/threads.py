"""A bounded thread pool for blocking work, kept off the reactor thread."""

from twisted.application.service import Service as _IService
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from broker.errors import ServiceUnavailable

__all__ = ["ThreadRunner"]

log = Logger()


class ThreadRunner(_IService):
    """Runs blocking callables in a pool of at most ``max_threads`` threads.

    At most ``max_queue`` calls may wait for a thread; beyond that a call is
    refused at once with :class:`~broker.errors.ServiceUnavailable` and the
    ``rejected`` counter moves, so a flood cannot queue without bound.
    """

    def __init__(self, reactor=None, max_threads=10, max_queue=1000):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.max_queue = max_queue
        self.pool = ThreadPool(minthreads=0, maxthreads=max_threads, name="broker-blocking")
        self.pending = 0
        self.counters = {"calls": 0, "rejected": 0}

    def startService(self):
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        if self.pool.started:
            self.pool.stop()  # joins idle workers; running calls finish first

    def run(self, fn, *args, **kwargs):
        """Run ``fn`` in the pool; a Deferred fires with its result."""
        if self.pending >= self.max_queue:
            self.counters["rejected"] += 1
            log.warn("thread pool queue full ({pending}), call refused", pending=self.pending)
            raise ServiceUnavailable("Too much blocking work queued")
        if not self.pool.started:
            self.pool.start()
        self.pending += 1
        self.counters["calls"] += 1
        d = deferToThreadPool(self._reactor, self.pool, fn, *args, **kwargs)
        d.addBoth(self._done)
        return d

    def _done(self, result):
        self.pending -= 1
        return result
