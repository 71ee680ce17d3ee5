"""Hot deploy: a pickup directory whose ``*.py`` modules are deployed as they change.

Linux watches the directory with ``twisted.internet.inotify``; elsewhere it is
polled (``services.pickup_interval``).  A module is imported and compiled in
full before anything changes (:meth:`ServiceStore.prepare_module`): one with a
syntax or import error, or a SimpleIO mistake, is reported in one log line
and at ``GET /broker/admin/deploy``, and the previous version keeps serving.
Deleting a file undeploys its services: their channels then answer 404
``service_not_found``.  Calls already running finish on the code they began
with; the next ones get the new.
"""

import hashlib
import os
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import Logger
from twisted.python import filepath

from broker.services.store import ServiceLoadError

__all__ = ["HotDeployer", "PickupWatcher"]

log = Logger()

_PACKAGE = "broker_pickup"


class HotDeployer:
    """Deploys and undeploys pickup modules into a store, remembering the last outcome of each.

    :param store: the node's :class:`~broker.services.store.ServiceStore`.
    :param directory: the pickup directory, or None (``deploy_source`` then refuses).
    :param max_module_size: the largest module :meth:`deploy_source` accepts, in bytes.
    """

    def __init__(self, store, directory=None, max_module_size=1024 * 1024):
        self.store = store
        self.directory = Path(directory) if directory is not None else None
        self.max_module_size = max_module_size
        self.modules = {}   # file name -> {"services": [...], "error": str|None, "deploys": n}
        self.counters = {"deploys": 0, "failures": 0, "undeploys": 0}

    def scan(self):
        """Deploy every module of the directory (at startup); failures are logged, not raised."""
        if self.directory is None:
            return
        for path in sorted(self.directory.glob("*.py")):
            if not path.name.startswith((".", "_")):
                self.deploy(path)

    def deploy(self, path, who="pickup"):
        """Deploy ``path``'s services; the report ``{"file", "services", "undeployed", "error"}``."""
        path = Path(path)
        report = self.modules.setdefault(path.name, {"services": [], "error": None, "deploys": 0,
                                                     "digest": None})
        digest = _digest(path)
        if digest is not None and digest == report["digest"] and report["error"] is None:
            # the same bytes again (an editor's second write, our own write seen by inotify)
            return {"file": path.name, "services": report["services"], "undeployed": [],
                    "error": None}
        try:
            entries = self.store.prepare_module(path, package=_PACKAGE)
        except ServiceLoadError as error:
            self.counters["failures"] += 1
            report["error"] = str(error)
            log.error("hot deploy of {file} failed, the previous version keeps serving: {error}",
                      file=path.name, error=str(error))
            return {"file": path.name, "services": report["services"], "undeployed": [],
                    "error": str(error)}
        deployed, gone = self.store.replace_source(str(path), entries)
        self.counters["deploys"] += 1
        report.update(services=deployed, error=None, deploys=report["deploys"] + 1, digest=digest)
        log.info("hot deployed {file} by {who}: {services}{gone}", file=path.name, who=who,
                 services=", ".join(deployed) or "no services",
                 gone=f" (undeployed {', '.join(gone)})" if gone else "")
        return {"file": path.name, "services": deployed, "undeployed": gone, "error": None}

    def undeploy(self, path, who="pickup"):
        """Undeploy the services ``path`` provided (its file was deleted)."""
        path = Path(path)
        _, gone = self.store.replace_source(str(path), [])
        self.modules.pop(path.name, None)
        self.counters["undeploys"] += 1
        log.info("undeployed {file} by {who}: {services}", file=path.name, who=who,
                 services=", ".join(gone) or "no services")
        return {"file": path.name, "undeployed": gone}

    def deploy_source(self, name, source, who):
        """Write ``source`` (bytes) as ``name`` in the pickup directory, atomically, and deploy it.

        The file stays only when it deployed: a broken module is reported and
        removed, so the previous file (and version) stays in place.

        :raise ValueError: a bad file name, no pickup directory, too big a module.
        """
        if self.directory is None:
            raise ValueError("file: this node has no pickup directory (services.pickup or --pickup)")
        if not name.endswith(".py") or "/" in name or "\\" in name or name.startswith((".", "_")):
            raise ValueError(f"file: must be a module name such as orders.py, got {name!r}")
        if len(source) > self.max_module_size:
            raise ValueError(f"file: larger than {self.max_module_size} bytes")
        target = self.directory / name
        previous = target.read_bytes() if target.exists() else None
        _write_atomically(target, source)
        report = self.deploy(target, who=who)
        if report["error"] is not None:
            if previous is None:
                target.unlink()
            else:
                _write_atomically(target, previous)
        return report


class PickupWatcher(Service):
    """Calls the deployer when a module of the pickup directory is written, moved in or deleted.

    :param deployer: the :class:`HotDeployer`.
    :param interval: seconds between scans when polling.
    :param reactor: the reactor (polling runs on it).
    :param use_inotify: None: inotify where Twisted has it (Linux), polling elsewhere.
    """

    def __init__(self, deployer, interval=1.0, reactor=None, use_inotify=None):
        if reactor is None:
            from twisted.internet import reactor
        self.setName("pickup")
        self.deployer = deployer
        self.directory = deployer.directory
        self.interval = interval
        self.reactor = reactor
        self.use_inotify = _has_inotify() if use_inotify is None else use_inotify
        self.mode = None
        self._notifier = None
        self._loop = None
        self._seen = {}

    def startService(self):
        super().startService()
        self._seen = self._snapshot()
        if self.use_inotify:
            from twisted.internet import inotify
            self._notifier = inotify.INotify(reactor=self.reactor)
            self._notifier.startReading()
            mask = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_DELETE
                    | inotify.IN_MOVED_FROM)
            self._notifier.watch(filepath.FilePath(str(self.directory)), mask=mask,
                                 callbacks=[self._notified])
            self.mode = "inotify"
        else:
            self._loop = task.LoopingCall(self.poll)
            self._loop.clock = self.reactor
            self._loop.start(self.interval, now=False)
            self.mode = "polling"
        log.info("watching {directory} for services ({mode})", directory=str(self.directory),
                 mode=self.mode)

    def stopService(self):
        super().stopService()
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _notified(self, ignored, path, mask):
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if _is_module(name):
            self._changed(Path(self.directory) / name)

    def poll(self):
        """One scan of the directory: deploy what changed, undeploy what went."""
        now = self._snapshot()
        for name, stamp in now.items():
            if self._seen.get(name) != stamp:
                self.deployer.deploy(self.directory / name)
        for name in self._seen.keys() - now.keys():
            self.deployer.undeploy(self.directory / name)
        self._seen = now

    def _changed(self, path):
        if path.exists():
            self.deployer.deploy(path)
        else:
            self.deployer.undeploy(path)
        self._seen = self._snapshot()

    def _snapshot(self):
        found = {}
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return found
        for entry in entries:
            if _is_module(entry.name):
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                found[entry.name] = (stat.st_mtime_ns, stat.st_size)
        return found


def _digest(path):
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _is_module(name):
    return name.endswith(".py") and not name.startswith((".", "_"))


def _has_inotify():
    try:
        from twisted.internet import inotify  # noqa: F401  (Linux only)
    except ImportError:
        return False
    return True


def _write_atomically(target, data):
    """Write ``data`` beside ``target`` under a hidden name, then rename it into place."""
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, target)
