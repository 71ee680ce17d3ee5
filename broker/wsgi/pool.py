"""A bounded pool of threads that run hosted WSGI apps.

At most ``threads`` calls run at once and at most ``queue`` more wait; a
call over that is refused at once (the gateway answers 503) and counted.
``pending`` is kept on the reactor thread: :meth:`submit` adds one, the
gateway's :meth:`release` takes it back when the call is over (its answer
fully written or abandoned).
"""

import threading
from queue import SimpleQueue

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = ["WorkerPool"]

log = Logger()


class WorkerPool(Service):
    """``threads`` worker threads fed from one queue.

    :param reactor: for ``callFromThread`` and shutdown timing.
    :param name: names the threads (``wsgi-<name>-N``).
    :param shutdown_timeout: seconds stopping waits for busy threads.
    """

    def __init__(self, reactor, threads, queue, name, shutdown_timeout=10.0):
        self._reactor = reactor
        self.threads = threads
        self.limit = threads + queue
        self.name = f"wsgi-{name}"
        self.shutdown_timeout = shutdown_timeout
        self.pending = 0
        self.rejected = 0
        self._jobs = SimpleQueue()
        self._workers = []
        self._stopped = None

    def startService(self):
        super().startService()
        for n in range(self.threads):
            worker = threading.Thread(target=self._work, name=f"{self.name}-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stopService(self):
        """Let running calls finish (up to ``shutdown_timeout``), then let the threads go."""
        super().stopService()
        alive = [w for w in self._workers if w.is_alive()]
        self._workers = []
        for _ in alive:
            self._jobs.put(None)
        if not alive:
            return None
        done = Deferred()
        self._stopped = (done, len(alive))

        def give_up():
            if not done.called:
                log.warn("{name}: {count} WSGI calls still running at shutdown, left behind",
                         name=self.name, count=self._stopped[1])
                done.callback(None)

        timer = self._reactor.callLater(self.shutdown_timeout, give_up)
        done.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return done

    def submit(self, job):
        """Queue ``job()`` for a worker; False (counted) when the pool is full."""
        if self.pending >= self.limit:
            self.rejected += 1
            return False
        self.pending += 1
        self._jobs.put(job)
        return True

    def release(self):
        """A call is over (reactor thread)."""
        self.pending -= 1

    def _work(self):
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                break
            try:
                job()
            except BaseException:  # a job handles its own errors; this is a last resort
                log.failure("{name}: a WSGI job failed", name=self.name)
        self._reactor.callFromThread(self._exited)

    def _exited(self):
        if self._stopped is None:
            return
        done, left = self._stopped
        self._stopped = (done, left - 1)
        if left - 1 <= 0 and not done.called:
            done.callback(None)
