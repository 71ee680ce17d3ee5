"""Helpers for tests against real Redis: unique prefixes, cleanup, a private server, waiting."""

import shutil
import subprocess
import time
import uuid

from twisted.internet import defer, reactor, task
from tests.integration.broker_process import accepts, free_port, wait_until as poll_until

SHARED_PORT = 6379


def unique_prefix(what):
    return f"test:{what}:{uuid.uuid4().hex[:12]}:"





def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_until(predicate, timeout=30.0, step=0.05, what="condition"):
    """Poll ``predicate()`` (may return a Deferred) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = yield defer.maybeDeferred(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield sleep(step)


def delete_prefix(prefix, port=SHARED_PORT):
    """Remove every key under ``prefix`` (synchronously, with redis-cli)."""
    keys = subprocess.run(["redis-cli", "-p", str(port), "--scan", "--pattern", f"{prefix}*"],
                          capture_output=True, text=True, check=False).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "-p", str(port), "DEL", *keys], capture_output=True,
                       check=False)


class PrivateRedis:
    """A redis-server of our own on a free port, to stop and start at will."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not poll_until(lambda: accepts(self.port), 10, 0.05):
            raise RuntimeError("private redis-server did not start")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
