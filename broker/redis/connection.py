"""The ``redis`` connection type: one named Redis server, shared by features.

Config (a ``connections:`` entry)::

    connections:
      - name: redis
        type: redis
        host: 127.0.0.1
        port: 6379
        db: 0
        password: ${REDIS_PASSWORD:}   # no default; empty = no AUTH
        timeout: 2s                    # connect and reply timeout of every call

txredisapi installs the reactor when imported, so it is imported only when
the connection starts, never at module top.
"""

from twisted.application.service import Service
from twisted.logger import Logger

from broker.config.schema import Duration, Field, Int, Schema, Str

__all__ = ["REDIS_CONNECTION", "RedisConnection", "build_redis_connection"]

log = Logger()

REDIS_CONNECTION = Schema("redis connection", {
    "name": Field(Str(pattern=r"^[A-Za-z0-9][\w.\-]*$"), required=True),
    "type": Field(Str(), required=True),
    "host": Field(Str(min_length=1), default="127.0.0.1"),
    "port": Field(Int(min=1, max=65535), default=6379),
    "db": Field(Int(min=0, max=1023), default=0),
    "password": Field(Str(), default=None, doc="no default; empty or absent = no AUTH"),
    "timeout": Field(Duration(min=0.001, max=600), default=2.0,
                     doc="connect timeout and the timeout of every call"),
})


class RedisConnection(Service):
    """A lazy, reconnecting txredisapi client (bytes in, bytes out) started with the node.

    :ivar client: the txredisapi connection handler once started (None before).
    :ivar counters: ``calls``, ``errors``, ``timeouts``.
    """

    def __init__(self, name, host="127.0.0.1", port=6379, db=0, password=None, timeout=2.0,
                 reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.setName(f"redis:{name}")
        self.connection_name = name
        self.host, self.port, self.db = host, port, db
        self._password = password or None
        self.timeout = timeout
        self.reactor = reactor
        self.client = None
        self.counters = {"calls": 0, "errors": 0, "timeouts": 0}
        self._subscribers = []

    def __repr__(self):
        return f"RedisConnection({self.connection_name!r}, {self.host}:{self.port}/{self.db})"

    def startService(self):
        super().startService()
        import txredisapi
        self.client = txredisapi.lazyConnection(
            self.host, self.port, dbid=self.db, reconnect=True, charset=None,
            password=self._password, connectTimeout=self.timeout, replyTimeout=self.timeout,
            convertNumbers=False)

    def stopService(self):
        super().stopService()
        from twisted.internet import defer
        stopping = [factory.disconnect() for factory in self._subscribers]
        self._subscribers = []
        if self.client is not None:
            stopping.append(self.client.disconnect())
            self.client = None
        return defer.gatherResults(stopping, consumeErrors=True).addErrback(lambda _: None)

    @property
    def connected(self):
        """Whether at least one connection to the server is up."""
        factory = getattr(self.client, "_factory", None)
        return bool(factory is not None and getattr(factory, "size", 0))

    def call(self, *args):
        """Run one Redis command; a Deferred failing after ``timeout`` if no answer."""
        from twisted.internet import defer
        if self.client is None:
            return defer.fail(RuntimeError(f"redis connection {self.connection_name} is not started"))
        self.counters["calls"] += 1
        d = self.client.execute_command(*args)
        d.addTimeout(self.timeout, self.reactor)
        d.addErrback(self._failed)
        return d

    def eval(self, script, keys, args):
        """Run a Lua script (EVALSHA with fallback to EVAL) with the call timeout."""
        from twisted.internet import defer
        if self.client is None:
            return defer.fail(RuntimeError(f"redis connection {self.connection_name} is not started"))
        self.counters["calls"] += 1
        return self.client.eval(script, keys, args).addTimeout(self.timeout, self.reactor) \
            .addErrback(self._failed)

    def _failed(self, failure):
        from twisted.internet import defer
        self.counters["timeouts" if failure.check(defer.TimeoutError, defer.CancelledError)
                      else "errors"] += 1
        return failure

    def subscriber(self, protocol_class):
        """Start a dedicated, reconnecting SUBSCRIBE connection speaking ``protocol_class``.

        ``protocol_class`` subclasses ``txredisapi.SubscriberProtocol``; it
        subscribes in its own ``connectionMade`` (so again after a reconnect).
        """
        import txredisapi
        factory = txredisapi.SubscriberFactory()
        factory.protocol = protocol_class
        factory.charset = None
        factory.password = self._password
        factory.dbid = self.db
        factory.replyTimeout = None
        factory.convertNumbers = False
        factory.continueTrying = True
        factory.startConnecting(txredisapi._makeEndpoint(self.host, self.port, self.timeout))
        self._subscribers.append(factory)
        return factory


def build_redis_connection(section, ctx):
    """The :class:`RedisConnection` for one checked ``redis`` connection section."""
    connection = RedisConnection(section.name, section.host, section.port, section.db,
                                 section.password, section.timeout, reactor=ctx.reactor)
    ctx.resources.health[f"redis:{section.name}"] = lambda: {"ok": connection.connected,
                                                             "host": f"{section.host}:{section.port}"}
    ctx.resources.metrics[f"redis:{section.name}"] = lambda: connection.counters
    return connection
