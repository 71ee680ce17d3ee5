"""One RabbitMQ connection, kept up for the node's lifetime.

:class:`AMQPConnection` runs pika's Twisted connection under Twisted's
``ClientService`` with a backoff policy.  Each time a connection is made it
waits for the AMQP handshake, declares the configured topology (exchanges,
queues, bindings) and then tells its users (channels, outgoing connections),
which open their own AMQP channels on it.  When it is lost, users are told
so, and everything starts again on the next connection.  Connection refused
at startup does not stop the node: it keeps retrying and says so in the log
and in health.
"""

import random

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.logger import Logger

__all__ = ["AMQPConnection", "describe_error"]

log = Logger()


class AMQPConnection(Service):
    """A named connection to RabbitMQ that reconnects forever with backoff.

    Users (channels, outgoing connections) register with :meth:`add_user` when
    they start and leave with :meth:`remove_user` when they stopped (each
    closes its own AMQP channels).  A user has ``amqp_connected(protocol)``
    (may return a Deferred; its failure is the user's own business),
    ``amqp_lost(reason)`` and ``amqp_drain()`` (a Deferred, or None, once its
    work is done: the connection closes only after its users drained).

    :ivar state: ``stopped``, ``connecting``, ``connected`` or ``waiting`` (to retry).
    :ivar protocol: the live ``TwistedProtocolConnection``, or None.
    """

    def __init__(self, section, reactor):
        self.key = section.name
        self.name = f"amqp.connection.{section.name}"  # the service name in the node
        self.section = section
        self._reactor = reactor
        self._users = []
        self._client = None
        self.protocol = None
        self.state = "stopped"
        self.last_error = None
        self._failures = 0
        self.counters = {"connects": 0, "disconnects": 0, "connect_failures": 0,
                         "topology_failures": 0}

    def add_user(self, user):
        """Tell ``user`` about each connection from now on (at once if connected)."""
        self._users.append(user)
        if self.protocol is not None:
            self._tell(user, self.protocol)

    def remove_user(self, user):
        """Tell ``user`` nothing more."""
        if user in self._users:
            self._users.remove(user)

    # -- IService -------------------------------------------------------------

    def startService(self):
        super().startService()
        from broker.amqp import _pika  # lazy: importing pika's adapter installs a reactor
        section = self.section
        backoff = backoffPolicy(initialDelay=section.reconnect_initial,
                                maxDelay=section.reconnect_max, factor=1.5, jitter=random.random)
        # ClientService counts only failed TCP connects; a failed handshake or topology
        # (done here, not in prepareConnection: ClientService cannot drop a connection whose
        # preparation failed) counts too, so the backoff grows for those as well.
        self._client = ClientService(
            self._endpoint(), _pika.connection_factory(section, self._reactor, self._prepare),
            retryPolicy=lambda _attempt: backoff(self._failures), clock=self._reactor)
        self.state = "connecting"
        log.info("amqp {name}: connecting to {host}:{port} vhost {vhost}", name=self.key,
                 host=section.host, port=section.port, vhost=section.vhost)
        self._client.startService()

    def stopService(self):
        """Let users drain (bounded by ``drain_timeout``), then close the connection."""
        super().stopService()
        self.state = "stopped"
        if self.protocol is None or not self.protocol.is_open:
            return self._close()
        drains = [defer.maybeDeferred(user.amqp_drain) for user in list(self._users)]
        drained = defer.DeferredList(drains, consumeErrors=True)
        drained.addTimeout(self.section.drain_timeout, self._reactor,
                           onTimeoutCancel=lambda *_: log.warn(
                               "amqp {name}: work still in progress after {timeout}s; closing "
                               "(unacked messages come again)", name=self.key,
                               timeout=self.section.drain_timeout))
        return drained.addBoth(lambda _: self._close())

    def _close(self):
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.is_open:
            closing = defer.Deferred()
            protocol.closed.addBoth(lambda _: closing.callback(None) if not closing.called else None)
            protocol.close()
            closing.addTimeout(2, self._reactor, onTimeoutCancel=lambda *_: None)
            return closing.addCallback(lambda _: self._client.stopService())
        return self._client.stopService()

    # -- connecting -------------------------------------------------------------

    def _endpoint(self):
        section = self.section
        endpoint = HostnameEndpoint(self._reactor, section.host, section.port,
                                    timeout=section.connect_timeout)
        if section.tls:
            from twisted.internet.ssl import Certificate, optionsForClientTLS
            trust = None
            if section.tls_ca_file:
                with open(section.tls_ca_file, "rb") as pem:
                    trust = Certificate.loadPEM(pem.read())
            endpoint = wrapClientTLS(optionsForClientTLS(section.host, trustRoot=trust), endpoint)
        return _Reporting(endpoint, self)

    def _connect_failed(self, failure):
        """TCP (or TLS) connect failed: ClientService retries after its backoff."""
        self._failures += 1
        self.counters["connect_failures"] += 1
        self.state = "waiting"
        self.last_error = describe_error(failure.value)
        log.warn("amqp {name}: cannot connect to {host}:{port}: {error}; retrying",
                 name=self.key, host=self.section.host, port=self.section.port,
                 error=self.last_error)
        return failure

    def _prepare(self, protocol):
        """For each new protocol: wait for the handshake, declare the topology, tell the users.

        Any failure drops the connection; ClientService then retries after the backoff.
        """
        ready = protocol.ready
        ready.addTimeout(self.section.connect_timeout, self._reactor)
        d = ready.addCallback(lambda _: self._declare(protocol))
        d.addCallbacks(lambda _: self._connected(protocol), self._not_ready,
                       errbackArgs=(protocol,))

    def _not_ready(self, failure, protocol):
        self._failures += 1
        self.counters["connect_failures"] += 1
        self.state = "waiting"
        self.last_error = describe_error(getattr(protocol, "failure_reason", None) or failure.value)
        log.warn("amqp {name}: could not set up the connection: {error}; retrying",
                 name=self.key, error=self.last_error)
        protocol.ready = None  # pika would errback it again on connectionLost
        transport = getattr(protocol, "transport", None)
        if transport is not None and getattr(transport, "connected", False):
            transport.abortConnection()

    @defer.inlineCallbacks
    def _declare(self, protocol):
        """Declare exchanges, queues and bindings on a throw-away AMQP channel."""
        section = self.section
        if not (section.exchanges or section.queues):
            return
        channel = yield protocol.channel()
        try:
            for exchange in section.exchanges:
                yield channel.exchange_declare(
                    exchange=exchange.name, exchange_type=exchange.type, durable=exchange.durable,
                    auto_delete=exchange.auto_delete, arguments=dict(exchange.arguments) or None)
            for queue in section.queues:
                arguments = dict(queue.arguments)
                if queue.dead_letter_exchange is not None:
                    arguments["x-dead-letter-exchange"] = queue.dead_letter_exchange
                if queue.dead_letter_routing_key is not None:
                    arguments["x-dead-letter-routing-key"] = queue.dead_letter_routing_key
                yield channel.queue_declare(
                    queue=queue.name, durable=queue.durable, exclusive=queue.exclusive,
                    auto_delete=queue.auto_delete, arguments=arguments or None)
                for binding in queue.bindings:
                    yield channel.queue_bind(queue=queue.name, exchange=binding.exchange,
                                             routing_key=binding.routing_key,
                                             arguments=dict(binding.arguments) or None)
        except Exception as exc:
            self.counters["topology_failures"] += 1
            raise RuntimeError(f"declaring the topology failed: {describe_error(exc)}") from exc
        yield channel.close()

    def _connected(self, protocol):
        self._failures = 0
        self.counters["connects"] += 1
        self.protocol = protocol
        self.state = "connected"
        self.last_error = None
        log.info("amqp {name}: connected to {host}:{port}", name=self.key,
                 host=self.section.host, port=self.section.port)
        protocol.closed.addBoth(self._lost, protocol)
        for user in list(self._users):
            self._tell(user, protocol)

    def _tell(self, user, protocol):
        try:
            d = defer.maybeDeferred(user.amqp_connected, protocol)
        except Exception:  # pragma: no cover - maybeDeferred catches
            return
        d.addErrback(lambda failure: log.failure("amqp {name}: a user failed to start",
                                                 failure, name=self.key))

    def _lost(self, reason, protocol):
        if self.protocol is not protocol:
            return
        self.protocol = None
        self.counters["disconnects"] += 1
        if self.running:
            self.state = "waiting"
            self.last_error = describe_error(reason)
            log.warn("amqp {name}: connection lost ({reason}); reconnecting", name=self.key,
                     reason=self.last_error)
        for user in list(self._users):
            try:
                user.amqp_lost(reason)
            except Exception:
                log.failure("amqp {name}: a user failed to handle the lost connection",
                            name=self.key)

    # -- health -------------------------------------------------------------------

    def health(self):
        report = {"ok": self.state == "connected", "state": self.state,
                  "host": f"{self.section.host}:{self.section.port}"}
        if self.last_error:
            report["last_error"] = self.last_error
        return report


class _Reporting:
    """An endpoint that tells the connection about failed connects before ClientService retries."""

    def __init__(self, endpoint, connection):
        self._endpoint = endpoint
        self._connection = connection

    def __repr__(self):
        section = self._connection.section
        return f"<amqp {self._connection.key} {section.host}:{section.port}>"

    def connect(self, factory):
        return self._endpoint.connect(factory).addErrback(self._connection._connect_failed)


def describe_error(error):
    """A short text for a pika/Twisted error or Failure (never a traceback)."""
    error = getattr(error, "value", error)
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text
