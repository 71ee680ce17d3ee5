"""The ``redis`` connection type: one named Redis server the cache and scheduler share.

::

    connections:
      - name: main
        type: redis
        host: 127.0.0.1
        port: 6379
        db: 0
        password: ${REDIS_PASSWORD:}   # no default; empty means none
        timeout: 1s

Where a feature names a Redis connection (``cache.redis``, ``scheduler.redis``,
``pubsub.redis``) a ``redis://[:password@]host[:port][/db]`` URL may stand in
for the name: the node then makes one connection per URL with the defaults
below (:func:`build_redis_from_url`).  ``redis: ${BROKER_REDIS_URL:}``
is Redis when the variable is set and nothing (memory) when it is not.

:class:`RedisConnection` creates its txredisapi connection lazily (the module
installs a reactor when imported, so it is imported only once the node
starts) with ``charset=None, convertNumbers=False``: values go out and come
back as bytes, untouched.  :meth:`RedisConnection.execute` is the one way
in: every command has a timeout, failures are counted, and a
:class:`~broker.redis.breaker.CircuitBreaker` stops hammering a dead server.
"""

from urllib.parse import unquote, urlsplit

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.config.schema import Bool, Duration, Field, Int, Name, Schema, Str
from broker.redis.breaker import CircuitBreaker

__all__ = ["REDIS_CONNECTION", "RedisConnection", "RedisFailure", "RedisUnavailable",
           "build_redis_connection", "build_redis_from_url", "parse_redis_url", "redis_url_name"]

log = Logger()

REDIS_CONNECTION = Schema("redis connection", {
    "name": Field(Name(), required=True),
    "type": Field(Str(), required=True),
    "host": Field(Str(min_length=1), default="127.0.0.1"),
    "port": Field(Int(min=1, max=65535), default=6379),
    "db": Field(Int(min=0), default=0),
    "password": Field(Str(), default=None, doc="no default; empty means no AUTH"),
    "timeout": Field(Duration(min=0.001), default=1.0, doc="per command"),
    "connect_timeout": Field(Duration(min=0.001), default=5.0),
    "pool_size": Field(Int(min=1, max=64), default=1),
    "max_waiting": Field(Int(min=1), default=1000,
                         doc="commands waiting for the connection to come up"),
    "breaker_failures": Field(Int(min=1), default=5,
                              doc="consecutive failures that open the circuit"),
    "breaker_reset": Field(Duration(min=0.001), default=5.0,
                           doc="how long the circuit stays open before a probe"),
    "critical": Field(Bool(), default=False,
                      doc="whether a lost connection makes /broker/health answer 503"),
})


class RedisFailure(Exception):
    """Redis could not answer (down, timed out, connection lost)."""


class RedisUnavailable(RedisFailure):
    """The circuit is open: the command was not sent."""


class RedisConnection(Service):
    """A named Redis server: lazy txredisapi connection, timeouts, breaker, counters.

    :param reactor: the reactor timeouts are scheduled on.
    """

    def __init__(self, name, host="127.0.0.1", port=6379, db=0, password=None, timeout=1.0, *,
                 connect_timeout=5.0, pool_size=1, max_waiting=1000, breaker_failures=5,
                 breaker_reset=5.0, critical=False, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.setName(f"redis:{name}")
        self.conn_name = name
        self.host, self.port, self.db = host, port, db
        self._password = password or None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self.max_waiting = max_waiting
        self.critical = critical
        self.reactor = reactor
        self.breaker = CircuitBreaker(reactor, breaker_failures, breaker_reset, name=f"redis {name}")
        self.counters = {"commands": 0, "failures": 0, "timeouts": 0, "command_errors": 0,
                         "connects": 0, "disconnects": 0, "waiting_full": 0,
                         "handshake_failures": 0}
        self._factory = None
        self._waiting = []
        self._subscribers = []
        self._turn = 0

    def __repr__(self):
        return f"<RedisConnection {self.conn_name} {self.host}:{self.port}/{self.db}>"

    # -- life cycle -----------------------------------------------------------

    def startService(self):
        super().startService()
        self._connect()

    def stopService(self):
        super().stopService()
        factory, self._factory = self._factory, None
        for waiter in list(self._waiting):
            waiter.cancel()
        stopping = [self.close_subscriber(sub) for sub in list(self._subscribers)]
        if factory is not None:
            stopping.append(factory.disconnect())
        return defer.gatherResults(stopping, consumeErrors=True).addErrback(lambda _: None)

    @property
    def connected(self):
        return self._factory is not None and self._factory.size > 0

    def _connect(self):
        if self._factory is None:
            import txredisapi  # noqa: PLC0415 -- imports the global reactor
            factory = _factory_class()(
                f"{self.host}:{self.port}", self.db, self.pool_size, isLazy=True,
                charset=None, password=self._password, replyTimeout=None,
                convertNumbers=False)
            factory.owner = self
            factory.deferred.addErrback(self._handshake_failed)
            factory.startConnecting(txredisapi._makeEndpoint(self.host, self.port,
                                                             self.connect_timeout))
            self._factory = factory
        return self._factory

    def _connection_added(self):
        self.counters["connects"] += 1
        log.info("redis {name}: connected to {host}:{port}", name=self.conn_name,
                 host=self.host, port=self.port)
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def _handshake_failed(self, failure):
        """AUTH or SELECT refused: txredisapi gives up on that connection; say why, once."""
        self.counters["handshake_failures"] += 1
        log.error("redis {name}: {error}", name=self.conn_name, error=failure.getErrorMessage())

    def _connection_lost(self):
        self.counters["disconnects"] += 1
        log.warn("redis {name}: connection to {host}:{port} lost", name=self.conn_name,
                 host=self.host, port=self.port)

    # -- commands -------------------------------------------------------------

    def execute(self, *args, timeout=None):
        """Send one command; a Deferred of its reply (bytes, int, list or None).

        :param timeout: seconds (default: the connection's ``timeout``).
        :raise RedisUnavailable: (in the Deferred) the circuit is open.
        :raise RedisFailure: Redis did not answer in time or is unreachable.
        :raise txredisapi.ResponseError: Redis refused the command (a usage
            error, e.g. INCR on text); it does not count against the breaker.
        """
        if not self.running and self._factory is None:
            return defer.fail(RedisFailure(f"redis {self.conn_name}: not started"))
        if not self.breaker.allow():
            return defer.fail(RedisUnavailable(f"redis {self.conn_name}: circuit open"))
        self.counters["commands"] += 1
        factory = self._connect()
        pool = factory.pool
        if pool:
            self._turn += 1
            conn = pool[self._turn % len(pool)]
            try:
                d = conn.execute_command(*args)
            except Exception:
                d = defer.fail()
        else:
            d = self._when_connected()
            d.addCallback(lambda _: factory.handler.execute_command(*args))
        d.addTimeout(timeout or self.timeout, self.reactor)
        return d.addCallbacks(self._succeeded, self._failed, errbackArgs=(args[0],))

    def call(self, *args):
        """:meth:`execute` with the connection's timeout (the name pub/sub uses)."""
        return self.execute(*args)

    def eval(self, script, keys=(), args=()):
        """Run a Lua ``script`` with ``keys`` and ``args`` through :meth:`execute`."""
        return self.execute(b"EVAL", script, len(keys), *keys, *args)

    def subscriber(self, protocol_class):
        """Start a dedicated, reconnecting SUBSCRIBE connection speaking ``protocol_class``.

        ``protocol_class`` subclasses ``txredisapi.SubscriberProtocol`` and
        subscribes in its own ``connectionMade`` (so again after a reconnect).
        The connection is closed by :meth:`close_subscriber`, or when this one stops.
        """
        import txredisapi  # noqa: PLC0415
        factory = txredisapi.SubscriberFactory()
        factory.protocol = protocol_class
        factory.charset = None
        factory.password = self._password
        factory.dbid = self.db
        factory.replyTimeout = None
        factory.convertNumbers = False
        factory.deferred.addErrback(self._handshake_failed)
        factory.startConnecting(txredisapi._makeEndpoint(self.host, self.port,
                                                         self.connect_timeout))
        self._subscribers.append(factory)
        return factory

    def close_subscriber(self, factory):
        """Close a connection :meth:`subscriber` started; a Deferred firing once it is closed."""
        if factory in self._subscribers:
            self._subscribers.remove(factory)
        return factory.disconnect()

    @property
    def connection_name(self):
        return self.conn_name

    @property
    def client(self):
        """The txredisapi connection handler once started, else None."""
        return self._factory.handler if self._factory is not None else None

    def _when_connected(self):
        if len(self._waiting) >= self.max_waiting:
            self.counters["waiting_full"] += 1
            return defer.fail(RedisFailure(f"redis {self.conn_name}: not connected and "
                                           f"{self.max_waiting} commands already waiting"))
        d = defer.Deferred(lambda d: self._waiting.remove(d) if d in self._waiting else None)
        self._waiting.append(d)
        return d

    def _succeeded(self, reply):
        self.breaker.succeeded()
        return reply

    def _failed(self, failure, command):
        from txredisapi import ResponseError  # noqa: PLC0415 -- loaded by _connect already
        if failure.check(ResponseError):
            self.breaker.succeeded()  # Redis answered: it is alive
            self.counters["command_errors"] += 1
            return failure
        self.breaker.failed()
        self.counters["failures"] += 1
        if failure.check(defer.TimeoutError, defer.CancelledError):
            self.counters["timeouts"] += 1
            self._abort_connections()
            raise RedisFailure(f"redis {self.conn_name}: {command} timed out")
        if failure.check(RedisFailure):
            return failure
        raise RedisFailure(f"redis {self.conn_name}: {command} failed: {failure.getErrorMessage()}")

    def _abort_connections(self):
        """Drop connections a reply did not come back on; txredisapi reconnects.

        What txredisapi's own ``replyTimeout`` would do, without a timer per
        command: a connection to a host that vanished without a reset would
        otherwise hang on forever.
        """
        factory = self._factory
        if factory is None:
            return
        protocols = {id(p): p for p in factory.pool}
        for slot in getattr(factory, "slots", ()):       # also connections still handshaking
            if slot.protocol is not None:
                protocols[id(slot.protocol)] = slot.protocol
        for protocol in protocols.values():
            if protocol.transport is not None:
                protocol.transport.abortConnection()

    # -- health and metrics ---------------------------------------------------

    def health(self):
        connected = self.connected
        return {"ok": connected or not self.critical, "connected": connected,
                "circuit": self.breaker.state, "address": f"{self.host}:{self.port}/{self.db}"}

    def metrics(self):
        return {**self.counters, **self.breaker.counters,
                "connected": int(self.connected), "waiting": len(self._waiting)}


_FACTORY = None


def _factory_class():
    """txredisapi's RedisFactory telling its owner when connections come and go."""
    global _FACTORY
    if _FACTORY is None:
        import txredisapi  # noqa: PLC0415

        class NotifyingFactory(txredisapi.RedisFactory):
            owner = None

            def addConnection(self, conn):
                before = self.size
                super().addConnection(conn)
                if self.size > before and self.owner is not None:
                    self.owner._connection_added()

            def delConnection(self, conn):
                super().delConnection(conn)
                if self.owner is not None and not self.disconnectCalled:
                    self.owner._connection_lost()

        _FACTORY = NotifyingFactory
    return _FACTORY


def build_redis_connection(section, ctx):
    """A :class:`RedisConnection` for one ``connections:`` entry; health and metrics reported."""
    return _reported(RedisConnection(
        section.name, host=section.host, port=section.port, db=section.db,
        password=section.password, timeout=section.timeout,
        connect_timeout=section.connect_timeout, pool_size=section.pool_size,
        max_waiting=section.max_waiting, breaker_failures=section.breaker_failures,
        breaker_reset=section.breaker_reset, critical=section.critical, reactor=ctx.reactor), ctx)


def parse_redis_url(url):
    """``redis://[[user]:password@]host[:port][/db]`` → ``(host, port, db, password)``.

    :raise ValueError: saying what is wrong (never repeating the password).
    """
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f'expected a redis:// URL, got "{parts.scheme}://..."')
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the URL's port is not a number from 1 to 65535") from None
    db = parts.path.strip("/") or "0"
    if not parts.hostname or not db.isdigit() or parts.query or parts.fragment:
        raise ValueError("expected redis://[:password@]host[:port][/db]")
    if parts.username not in (None, "", "default"):
        raise ValueError("a Redis ACL user name is not supported: redis://:password@host")
    return parts.hostname, port, int(db), unquote(parts.password) if parts.password else None


def redis_url_name(url):
    """The name of the connection a ``redis://`` URL makes: ``host:port/db``."""
    host, port, db, _ = parse_redis_url(url)
    return f"{host}:{port}/{db}"


def build_redis_from_url(section, ctx):
    """A :class:`RedisConnection` with the default settings at a URL a feature named
    (``section`` is the node's :class:`~broker.node.assembly.URLSection`)."""
    host, port, db, password = parse_redis_url(section.url)
    return _reported(RedisConnection(section.name, host, port, db, password, reactor=ctx.reactor),
                     ctx)


def _reported(connection, ctx):
    ctx.health(f"redis.{connection.conn_name}", connection.health)
    ctx.metrics(f"redis.{connection.conn_name}", connection.metrics)
    return connection
