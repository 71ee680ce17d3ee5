"""A bounded thread pool for blocking work, kept off the reactor thread."""

from functools import partial
from threading import Thread

from twisted.application.service import Service as _IService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from broker.errors import ServiceUnavailable

__all__ = ["ThreadRunner"]

log = Logger()


class ThreadRunner(_IService):
    """Runs blocking callables in a pool of at most ``max_threads`` threads.

    At most ``max_queue`` more calls may wait for a thread; beyond that a call
    is refused at once with :class:`~broker.errors.ServiceUnavailable` and the
    ``rejected`` counter moves, so a flood cannot queue without bound.

    A call holds its place until its function returns in its thread, even when
    its caller gave up (a timed-out Deferred is cancelled; a thread cannot be),
    so the bound is on the work really running or waiting.  Stopping waits up
    to ``stop_timeout`` seconds for running calls, never on the reactor thread;
    calls still running then are logged, counted and left behind (the threads
    are daemons: they do not hold the process).

    :ivar pending: calls accepted whose function has not returned yet.
    """

    def __init__(self, reactor=None, max_threads=10, max_queue=1000, stop_timeout=10.0):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.max_threads = max_threads
        self.limit = max_threads + max_queue
        self.stop_timeout = stop_timeout
        self.pool = ThreadPool(minthreads=0, maxthreads=max_threads, name="broker-blocking")
        self.pool.threadFactory = partial(Thread, daemon=True)
        self.pending = 0
        self.counters = {"calls": 0, "rejected": 0, "abandoned": 0, "left_running": 0}
        self._closed = False
        self._drained = None

    def metrics(self):
        """Counters plus the calls ``running`` and ``queued`` now."""
        running = min(self.pending, self.max_threads)
        return {**self.counters, "running": running, "queued": self.pending - running}

    def startService(self):
        super().startService()
        self.pool.start()

    def stopService(self):
        """A Deferred firing once every call has returned, or after ``stop_timeout``."""
        super().stopService()
        if not self.pool.started or self._drained is not None:
            return None
        self._drained = Deferred()
        if not self.pending:
            self._drained.callback(None)
        self._drained.addTimeout(self.stop_timeout, self._reactor, onTimeoutCancel=self._give_up)
        return self._drained.addCallback(self._close)

    def run(self, fn, *args, **kwargs):
        """Run ``fn`` in the pool; a Deferred fires with its result."""
        if self._closed:
            self.counters["rejected"] += 1
            raise ServiceUnavailable("The thread pool is stopped")
        if self.pending >= self.limit:
            self.counters["rejected"] += 1
            log.warn("thread pool full ({pending} calls running or queued), call refused",
                     pending=self.pending)
            raise ServiceUnavailable("Too much blocking work queued")
        if not self.pool.started:
            self.pool.start()
        self.pending += 1
        self.counters["calls"] += 1
        done = Deferred()
        call_from_thread = self._reactor.callFromThread

        def returned(ok, result):  # in the worker thread, once fn is over
            call_from_thread(self._returned, done, ok, result)

        self.pool.callInThreadWithCallback(returned, fn, *args, **kwargs)
        return done

    def _returned(self, done, ok, result):
        """``fn`` is over: free its place, answer its caller if still waiting."""
        self.pending -= 1
        if done.called:  # the caller gave up (cancelled, e.g. by the service timeout)
            self.counters["abandoned"] += 1
            if not ok:
                log.warn("a blocking call failed after its caller gave up: {error}",
                         error=result.getErrorMessage())
        elif ok:
            done.callback(result)
        else:
            done.errback(result)
        if not self.pending and self._drained is not None and not self._drained.called:
            self._drained.callback(None)

    def _give_up(self, _result, _timeout):
        self.counters["left_running"] += self.pending
        log.warn("thread pool stopping: {count} blocking calls still running after {timeout}s, "
                 "left behind", count=self.pending, timeout=self.stop_timeout)

    def _close(self, _):
        """Refuse new calls; the idle threads exit (joined off the reactor thread)."""
        self._closed = True
        Thread(target=self.pool.stop, name="broker-blocking-stop", daemon=True).start()
