"""The service store: name → service class, loaded by path from plugin dirs."""

import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
from functools import partial
from pathlib import Path

from twisted.logger import Logger

from broker.errors import ServiceNotFound
from broker.services.base import Service, derive_name
from broker.services.stats import ServiceStats
from broker.simpleio import compile_simpleio

__all__ = ["ServiceEntry", "ServiceLoadError", "ServiceStore"]

log = Logger()


class ServiceLoadError(Exception):
    """A plugin module could not be loaded; ``str()`` is one line naming the file."""


class ServiceEntry:
    """A deployed service: its class, name, compiled SimpleIO, logger and counters."""

    __slots__ = ("name", "cls", "sio", "logger", "source", "new", "stats", "timeout")

    def __init__(self, name, cls, sio, source=None, stats=None, timeout=None):
        self.name = name
        #: seconds handle() may wait (None: the invoker's default): config, else the class's
        self.timeout = timeout if timeout is not None else getattr(cls, "timeout", None)
        self.cls = cls
        # An instance the invoker fills in: skip Service.__init__'s defaults
        # unless the class has an __init__ of its own to run.
        self.new = partial(object.__new__, cls) if cls.__init__ is Service.__init__ else cls
        self.sio = sio
        self.source = source
        self.logger = Logger(namespace=f"broker.service.{name}")
        self.stats = stats if stats is not None else ServiceStats()


class ServiceStore:
    """Holds every deployed service by name.

    :param undeclared_input: the default policy for input keys a service's
        SimpleIO does not declare, ``"reject"`` or ``"drop"``.
    """

    def __init__(self, undeclared_input="reject", timeouts=None):
        self.undeclared_input = undeclared_input
        self.timeouts = dict(timeouts or {})  # services.timeouts: name -> seconds
        self._entries = {}
        self.stats = {}  # name -> ServiceStats, kept across redeploys
        self.version = 0  # moves with every deploy and undeploy

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self):
        return len(self._entries)

    def names(self):
        return sorted(self._entries)

    def get(self, name):
        """The entry for ``name``; :class:`~broker.errors.ServiceNotFound` if there is none."""
        try:
            return self._entries[name]
        except KeyError:
            raise ServiceNotFound(name) from None

    def add(self, cls, source=None):
        """Deploy a service class; a name already taken by another class is an error."""
        name = cls.name or derive_name(cls)
        existing = self._entries.get(name)
        if existing is not None and existing.cls is not cls and existing.source != source:
            raise ServiceLoadError(
                f"{source or cls.__module__}: service name {name!r} is already used by "
                f"{existing.source or existing.cls.__module__}")
        sio = compile_simpleio(getattr(cls, "SimpleIO", None), name, self.undeclared_input)
        stats = self.stats.get(name) or self.stats.setdefault(name, ServiceStats())
        entry = self._entries[name] = ServiceEntry(name, cls, sio, source, stats,
                                                   self.timeouts.get(name))
        self.version += 1
        return entry

    def remove(self, name):
        if self._entries.pop(name, None) is not None:
            self.version += 1

    def load_paths(self, paths):
        """Load every ``*.py`` (not starting with ``_``) under each dir or file."""
        names = []
        for path in paths:
            path = Path(path)
            if path.is_dir():
                files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
            elif path.is_file():
                files = [path]
            else:
                raise ServiceLoadError(f"{path}: no such file or directory")
            for file in files:
                names.extend(self.load_module(file))
        return names

    def load_module(self, path):
        """Import one module by path and deploy the services it defines."""
        entries = self.prepare_module(path)
        names = [self.add(entry.cls, source=entry.source).name for entry in entries]
        log.info("loaded {count} service(s) from {path}", count=len(names), path=str(path))
        return names

    def prepare_module(self, path, package="broker_plugins"):
        """Import one module by path and compile its services, deploying nothing.

        :return: a :class:`ServiceEntry` per service the module defines.
        :raise ServiceLoadError: one line naming the file: a syntax or import error,
            a SimpleIO mistake, a name another module's service already has.
        """
        path = Path(path)
        module_name = f"{package}.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path,
                                                      loader=_FreshLoader(module_name, str(path)))
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get(module_name)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            if previous is not None:
                sys.modules[module_name] = previous
            else:
                sys.modules.pop(module_name, None)
            raise ServiceLoadError(f"{path}: {_describe(exc, path)}") from exc
        entries = []
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Service) and cls.__module__ == module_name
                    and not cls.__name__.startswith("_") and "handle" in _defined(cls)):
                name = cls.name or derive_name(cls)
                existing = self._entries.get(name)
                if existing is not None and existing.source != str(path):
                    raise ServiceLoadError(f"{path}: service name {name!r} is already used by "
                                           f"{existing.source or existing.cls.__module__}")
                try:
                    sio = compile_simpleio(getattr(cls, "SimpleIO", None), name, self.undeclared_input)
                except ValueError as error:
                    raise ServiceLoadError(f"{path}: {error}") from None
                entries.append(ServiceEntry(name, cls, sio, str(path)))
        return entries

    def replace_source(self, source, entries):
        """Deploy ``entries`` as everything ``source`` provides: its services missing from
        them are undeployed.  Calls already running keep the entry they started with.

        :return: ``(deployed names, undeployed names)``.
        """
        gone = [name for name, entry in self._entries.items()
                if entry.source == source and name not in {e.name for e in entries}]
        for name in gone:
            del self._entries[name]
        for entry in entries:
            self._entries[entry.name] = entry
        self.version += 1
        return [entry.name for entry in entries], gone

    def from_source(self, source):
        """The names of the services ``source`` (a module's path) deployed."""
        return sorted(name for name, entry in self._entries.items() if entry.source == source)


class _FreshLoader(importlib.machinery.SourceFileLoader):
    """Compiles the source every time: a module rewritten within the same second (and
    size) as its cached bytecode must not be served from that cache."""

    def get_code(self, fullname):
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


def _defined(cls):
    """Names defined by ``cls`` or its bases below :class:`Service`."""
    found = set()
    for klass in cls.__mro__:
        if klass is Service:
            break
        found.update(vars(klass))
    return found


def _describe(exc, path):
    """One line for an import failure: the error and, if any, the plugin's line."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
