"""A fake reactor for unit tests that run real threads."""

import queue

from twisted.internet.testing import MemoryReactorClock


class ThreadedClock(MemoryReactorClock):
    """A fake reactor whose callFromThread queues calls for the test thread to run."""

    def __init__(self):
        super().__init__()
        self.from_threads = queue.Queue()

    def callFromThread(self, f, *args):
        self.from_threads.put((f, args))

    def run_next(self):
        f, args = self.from_threads.get(timeout=30)
        f(*args)
