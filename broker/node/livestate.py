"""Where live configuration changes are kept: memory, a state file, or Redis.

One small interface, :class:`LiveState`, with three implementations, made
in one place per node (the ``live`` feature, :func:`build_live_state`):

* :class:`MemoryLiveState` — changes last until the node stops (``live.persist: false``);
* :class:`FileLiveState` — a JSON file beside the config, rewritten atomically
  (temporary file, fsync, rename) after every change; read at startup;
* :class:`RedisLiveState` — a Redis hash every node of a cluster reads: a node
  polls the version counter and applies what the others changed.

An entry is ``"kind/name"`` → the section as the operator gave it (``None``
records a deletion of something the config file declares), with who made the
change and when.  The state wins over the config file for every object it
names; what it does not name comes from the file.
"""

import json
import os
import time
from pathlib import Path

from twisted.internet import defer

from broker.components import ComponentType, Needs
from broker.config.schema import Bool, Duration, Field, Path as PathType, Schema, Str

__all__ = ["FileLiveState", "LIVE", "LIVE_SECTION", "LiveState", "MemoryLiveState",
           "RedisLiveState", "build_live_state"]

LIVE_SECTION = Schema("live", {
    "persist": Field(Bool(), default=True, doc="keep changes made through the admin API across "
                                               "restarts (false: in memory only)"),
    "state_file": Field(PathType(), default=None,
                        doc="where changes are kept; default: <config>.state.json beside the "
                            "config file"),
    "redis": Field(Str(), default=None, doc="a redis connection's name or a redis:// URL: changes "
                                            "kept in Redis and applied by every node"),
    "prefix": Field(Str(min_length=1), default="broker:live:", doc="Redis key prefix"),
    "poll_interval": Field(Duration(min=0.05, max=3600), default=1.0,
                           doc="Redis: how often a node looks for changes made by the others"),
})


class LiveState:
    """The changes made while nodes run.  Every method answers a Deferred.

    :ivar shared: whether other nodes write it too (then :meth:`version` is polled).
    :ivar where: what it is, for logs.
    """

    shared = False
    where = "memory"

    def load(self):
        """``{key: {"raw": section or None, "who": ..., "at": ...}}``."""
        raise NotImplementedError

    def save(self, key, raw, who):
        """Record ``raw`` (None: deleted) for ``key``."""
        raise NotImplementedError

    def version(self):
        """A value that changes with every save by any node."""
        raise NotImplementedError


class MemoryLiveState(LiveState):
    """Changes kept in memory: gone when the node stops."""

    def __init__(self):
        self.entries = {}
        self._version = 0

    def load(self):
        return defer.succeed({key: dict(entry) for key, entry in self.entries.items()})

    def save(self, key, raw, who):
        self.entries[key] = {"raw": raw, "who": who, "at": time.time()}
        self._version += 1
        return defer.succeed(None)

    def version(self):
        return defer.succeed(self._version)


class FileLiveState(MemoryLiveState):
    """Changes kept in a JSON file, written atomically after each change.

    :raise ValueError: the file exists but cannot be read as a state file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self.where = str(self.path)
        if self.path.exists():
            try:
                document = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = dict(document["entries"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{self.path}: not a readable state file ({error})") from None

    def save(self, key, raw, who):
        super().save(key, raw, who)
        self._write()
        return defer.succeed(None)

    def _write(self):
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        data = json.dumps({"format": 1, "entries": self.entries}, indent=1, sort_keys=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path)


class RedisLiveState(LiveState):
    """Changes kept in Redis: a hash of entries and a version counter every node polls.

    :param connection: a :class:`~broker.redis.RedisConnection`.
    :param prefix: the key prefix (nodes of one cluster share it).
    """

    shared = True

    def __init__(self, connection, prefix="broker:live:", poll_interval=1.0):
        self.connection = connection
        self.prefix = prefix
        self.poll_interval = poll_interval
        self.where = f"redis {connection.conn_name} {prefix}"

    @defer.inlineCallbacks
    def load(self):
        reply = yield self.connection.execute("HGETALL", self.prefix + "entries")
        if isinstance(reply, dict):
            items = reply.items()
        else:
            reply = list(reply or ())
            items = zip(reply[0::2], reply[1::2])
        return {_text(key): json.loads(_text(value)) for key, value in items}

    @defer.inlineCallbacks
    def save(self, key, raw, who):
        entry = json.dumps({"raw": raw, "who": who, "at": time.time()}, sort_keys=True)
        yield self.connection.execute("HSET", self.prefix + "entries", key, entry)
        yield self.connection.execute("INCR", self.prefix + "version")

    @defer.inlineCallbacks
    def version(self):
        value = yield self.connection.execute("GET", self.prefix + "version")
        return _text(value) if value is not None else "0"


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def build_live_state(section, ctx):
    """The node's :class:`LiveState`: Redis when ``live.redis``, else the state file, else memory
    (in a worker process, the main process's, which every worker polls)."""
    if section.redis:
        return RedisLiveState(ctx.connection(section, "redis", "redis"), section.prefix,
                              section.poll_interval)
    if ctx.worker is not None:
        return ctx.worker.live_state(section.poll_interval)
    return main_live_state(section)


def main_live_state(section):
    """The state file (or memory) a checked ``live`` section without Redis describes."""
    if not section.persist:
        return MemoryLiveState()
    path = section.state_file
    if path is None:
        if not section.file:
            return MemoryLiveState()
        config = Path(section.file)
        path = config.with_name(config.stem + ".state.json")
    try:
        return FileLiveState(path)
    except ValueError as error:
        from broker.config.schema import config_error
        raise config_error(section, "state_file", str(error)) from None


#: The ``live:`` section: where changes made while the node runs are kept.
LIVE = ComponentType(LIVE_SECTION, build_live_state, needs=[Needs.connection("redis", "redis")])
