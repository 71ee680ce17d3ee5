"""The main process of a node of workers: one listening socket, N worker processes, supervised.

The main process binds the HTTP socket once and never accepts on it; every
worker adopts it (``adoptStreamPort``) and the kernel hands each new
connection to a worker waiting in ``accept`` — an idle one, never a busy one
(docs/workers.md says why this and not ``SO_REUSEPORT``).  The main process
keeps what the workers share (:class:`~broker.workers.central.Central`),
logs their lines saying which worker wrote them, restarts a worker that dies
(with backoff) and exits non-zero when one keeps dying.

* ``SIGHUP``: the config is checked (``broker check`` in a new process: new
  service modules are loaded there); a bad one is refused and the workers
  keep serving; a good one restarts the workers one at a time.
* ``SIGTERM``: every worker stops taking work and finishes what it took
  within ``limits.shutdown_timeout``; then the main process exits 0.
"""

import atexit
import os
import signal
import socket
import sys

from twisted.application.service import Service
from twisted.internet import defer, error as net_error
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol, ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger, eventFromJSON, globalLogPublisher

from broker.node.root import exit_zero_on_sigterm
from broker.workers.central import Central
from broker.workers.link import Link, LinkFactory

__all__ = ["Supervisor"]

log = Logger()


class _Worker(ProcessProtocol):
    """One worker process: its output logged as its own, its end reported."""

    def __init__(self, supervisor, slot, generation, link):
        self.supervisor = supervisor
        self.slot, self.generation, self.link = slot, generation, link
        self.pid = None
        self.retiring = False  # stopped on purpose (a reload): not restarted
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.started_at = supervisor.reactor.seconds()
        self._out = b""
        self._err = b""

    def connectionMade(self):
        self.pid = self.transport.pid

    def outReceived(self, data):
        self._out = self._lines(self._out + data, self._event)

    def errReceived(self, data):
        self._err = self._lines(self._err + data, self._text)

    def _lines(self, buffer, each):
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                each(line)
        if len(rest) > 1 << 20:  # a line that never ends is logged in pieces
            each(rest)
            rest = b""
        return rest

    def _event(self, line):
        try:  # jsonFileLogObserver starts each record with RS (0x1e)
            event = eventFromJSON(line.lstrip(b"\x1e").decode("utf-8", "replace"))
        except ValueError:
            self._text(line)
            return
        event["log_system"] = f"worker-{self.slot}"
        event["worker"] = self.slot
        globalLogPublisher(event)

    def _text(self, line):
        log.info("{text}", text=line.decode("utf-8", "replace"), log_system=f"worker-{self.slot}")

    def processEnded(self, reason):
        self.link.transport and self.link.transport.loseConnection()
        self.supervisor.ended(self, reason.value)
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"worker {self.slot} ended before it was ready"))
        self.ended.callback(reason.value)

    def signal(self, name):
        try:
            self.transport.signalProcess(name)
        except (net_error.ProcessExitedAlready, OSError):
            pass

    def report(self):
        return {"id": self.slot, "pid": self.pid, "generation": self.generation,
                "restarts": self.supervisor.restarts[self.slot],
                "up_for": round(self.supervisor.reactor.seconds() - self.started_at, 3)}


class Supervisor(Service):
    """Binds the listener, runs ``count`` workers, restarts them, reloads and stops them.

    :param config_path: the config file every worker loads.
    :param config: its checked contents (for limits, pub/sub and caches).
    :param count: how many workers.
    :param endpoint: the listening endpoint string.
    """

    name = "workers"

    def __init__(self, config_path, config, count, endpoint, reactor=None, restart_delay=0.5,
                 restart_max_delay=10.0, crash_limit=5, crash_window=30.0, start_timeout=60.0,
                 exit=os._exit, pickup=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config_path, self.config, self.count, self.endpoint = config_path, config, count, endpoint
        self.restart_delay, self.restart_max_delay = restart_delay, restart_max_delay
        self.crash_limit, self.crash_window, self.start_timeout = crash_limit, crash_window, start_timeout
        self._exit = exit
        self.pickup = pickup and os.path.abspath(pickup)
        self.central = Central(config, reactor, self.reports)
        self.port = None
        self.workers = {}          # slot -> running _Worker
        self.restarts = [0] * count
        self._crashes = [[] for _ in range(count)]
        self._pending = {}         # slot -> delayed restart
        self._stopping = False
        self._reloading = None
        self._node_ready = False
        self.failed = None

    # -- start ------------------------------------------------------------------------------

    def privilegedStartService(self):
        super().privilegedStartService()
        results = []
        serverFromString(self.reactor, self.endpoint).listen(Factory.forProtocol(Protocol)) \
            .addBoth(results.append)
        if not results or hasattr(results[0], "getErrorMessage"):
            why = results[0].getErrorMessage() if results else "did not finish at once"
            raise SystemExit(f"broker: cannot listen on {self.endpoint}: {why}")
        self.port = results[0]
        self.port.stopReading()  # the workers accept; the main process only holds the socket

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()
        self.reactor.callWhenRunning(self._install_hup)
        log.info("broker {name}: starting {count} workers on {endpoint}", name=self.config.name,
                 count=self.count, endpoint=self.endpoint)
        started = [self._spawn(slot).ready for slot in range(self.count)]
        defer.DeferredList(started, consumeErrors=True).addCallback(self._all_ready)

    def _install_hup(self):
        signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))

    def _all_ready(self, results):
        if all(ok for ok, _ in results) and not self._node_ready:
            self._node_ready = True
            log.info("broker {name} ready: {urls} ({count} workers)", name=self.config.name,
                     urls=" ".join(self.urls()), count=self.count)

    def urls(self):
        host = self.port.getHost()
        address = getattr(host, "host", None)
        if address is None:
            return [str(host)]
        scheme = "https" if self.endpoint.lower().startswith("ssl:") else "http"
        address = f"[{address}]" if ":" in address else address
        return [f"{scheme}://{address}:{host.port}/"]

    def _family(self):
        host = self.port.getHost()
        kind = type(host).__name__
        return {"IPv4Address": "inet", "IPv6Address": "inet6", "UNIXAddress": "unix"}[kind]

    def _spawn(self, slot, generation=0):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        link = Link(self.central.handlers, dict(self.central.notices), self.reactor,
                    on_lost=self.central.remove)
        link.worker_id = slot
        worker = _Worker(self, slot, generation, link)
        link.notices["ready"] = lambda *_: worker.ready.called or worker.ready.callback(worker)
        self.reactor.adoptStreamConnection(parent.fileno(), socket.AF_UNIX, LinkFactory(lambda: link))
        parent.close()
        self.central.add(link)
        args = [sys.executable, "-m", "broker.workers.child", "--config", self.config_path,
                "--id", str(slot), "--count", str(self.count), "--endpoint", self.endpoint, "--family", self._family()]
        if slot == 0:
            args.append("--primary")
        if self.pickup:  # every worker watches it and deploys what changes
            args += ["--pickup", self.pickup]
        self.reactor.spawnProcess(worker, sys.executable, args, env=os.environ,
                                  childFDs={0: "w", 1: "r", 2: "r", 3: self.port.fileno(),
                                            4: child.fileno()})
        child.close()
        self.workers[slot] = worker
        timer = self.reactor.callLater(self.start_timeout, self._too_slow, worker)
        worker.ready.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        worker.ready.addErrback(lambda _: None)
        return worker

    def _too_slow(self, worker):
        log.error("worker {slot} (pid {pid}) was not ready within {timeout}s; killing it",
                  slot=worker.slot, pid=worker.pid, timeout=self.start_timeout)
        worker.signal("KILL")

    # -- a worker ended ---------------------------------------------------------------------

    def ended(self, worker, reason):
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        if self._stopping or worker.retiring:
            return
        now = self.reactor.seconds()
        crashes = self._crashes[worker.slot]
        crashes[:] = [t for t in crashes if now - t < self.crash_window] + [now]
        why = getattr(reason, "exitCode", None)
        why = f"exit code {why}" if why is not None else f"signal {getattr(reason, 'signal', '?')}"
        if len(crashes) >= self.crash_limit:
            self.fail(f"worker {worker.slot} died {len(crashes)} times within "
                      f"{self.crash_window:g}s (last: {why})")
            return
        delay = min(self.restart_delay * 2 ** (len(crashes) - 1), self.restart_max_delay)
        log.warn("worker {slot} (pid {pid}) died ({why}); restarting it in {delay}s",
                 slot=worker.slot, pid=worker.pid, why=why, delay=delay)
        self.restarts[worker.slot] += 1
        self._pending[worker.slot] = self.reactor.callLater(
            delay, self._restart, worker.slot, worker.generation + 1)

    def _restart(self, slot, generation):
        self._pending.pop(slot, None)
        if not self._stopping:
            self._spawn(slot, generation)

    def fail(self, reason):
        """Give up: stop the node and exit non-zero, saying why."""
        self.failed = reason
        log.critical("broker {name}: giving up: {reason}", name=self.config.name, reason=reason)

        def exit_non_zero():
            sys.stdout.flush()
            sys.stderr.flush()
            self._exit(3)
        atexit.register(exit_non_zero)  # twistd returns 0 once the reactor stopped
        if self.reactor.running:
            self.reactor.stop()

    # -- reload (SIGHUP) ---------------------------------------------------------------------

    def reload(self):
        """Check the config in a new process; if good, restart the workers one at a time."""
        if self._reloading is not None or self._stopping:
            log.info("reload asked while one is running (or stopping): ignored")
            return self._reloading
        log.info("reload: checking {path}", path=self.config_path)
        d = getProcessOutputAndValue(sys.executable, ["-m", "broker.cli", "check", "--config",
                                                      self.config_path], env=os.environ)
        d.addCallback(self._checked)
        d.addErrback(lambda f: log.failure("reload failed", f))
        self._reloading = d
        d.addBoth(lambda _: setattr(self, "_reloading", None))
        return d

    @defer.inlineCallbacks
    def _checked(self, result):
        out, err, code = result
        if code != 0:
            text = (err or out).decode("utf-8", "replace").strip().splitlines()
            log.error("reload refused, the workers keep serving: {why}",
                      why=text[-1] if text else f"check exit code {code}")
            return
        log.info("reload: config good; restarting {count} workers one at a time", count=self.count)
        for slot in range(self.count):
            if self._stopping:
                return
            old = self.workers.get(slot)
            if old is not None:
                old.retiring = True
                old.signal("TERM")
                yield self._bounded(old.ended, self.config.limits.shutdown_timeout + 5, old)
            new = self._spawn(slot, (old.generation + 1) if old else 0)
            try:
                yield new.ready
            except Exception as error:
                log.error("reload: worker {slot} did not start: {error}", slot=slot, error=error)
                return
        log.info("reload: done, {count} workers serve the new code and config", count=self.count)

    def _bounded(self, ended, timeout, worker):
        timer = self.reactor.callLater(timeout, worker.signal, "KILL")
        return ended.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])

    # -- stop (SIGTERM) -----------------------------------------------------------------------

    def stopService(self):
        """Every worker finishes what it took (``limits.shutdown_timeout``), then the socket closes."""
        super().stopService()
        self._stopping = True
        exit_zero_on_sigterm(self.reactor)
        for call in self._pending.values():
            if call.active():
                call.cancel()
        if self.port is not None:  # the socket closes once the last worker lets go of it
            port, self.port = self.port, None
            port.stopListening()
        workers = list(self.workers.values())
        for worker in workers:
            worker.signal("TERM")
        waits = [self._bounded(w.ended, self.config.limits.shutdown_timeout + 5, w) for w in workers]
        d = defer.DeferredList(waits, consumeErrors=True)
        return d.addCallback(lambda _: log.info("broker {name}: every worker stopped",
                                                name=self.config.name))

    # -- the node's reports --------------------------------------------------------------------

    def reports(self):
        return [w.report() for w in self.workers.values()]
