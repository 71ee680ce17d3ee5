"""The one module that imports pika (its Twisted adapter installs the reactor on import).

Everything else in :mod:`broker.amqp` imports this lazily, from code that
runs once the reactor is chosen.  pika 2 drops ``TwistedProtocolConnection``;
moving to another client means changing this module only.
"""

import pika
from pika import exceptions, spec
from pika.adapters.twisted_connection import TwistedProtocolConnection
from twisted.internet import protocol

__all__ = ["BasicProperties", "ChannelClosed", "ChannelClosedByBroker", "NackError",
           "UnroutableError", "connection_factory", "exceptions"]

BasicProperties = spec.BasicProperties
NackError = exceptions.NackError
UnroutableError = exceptions.UnroutableError
ChannelClosed = exceptions.ChannelClosed
ChannelClosedByBroker = exceptions.ChannelClosedByBroker
ConnectionClosed = exceptions.ConnectionClosed


def connection_parameters(section):
    """pika parameters for a checked ``amqp`` connection section (host and port are Twisted's)."""
    properties = {"product": "broker"}
    if section.connection_name:
        properties["connection_name"] = section.connection_name
    return pika.ConnectionParameters(
        virtual_host=section.vhost,
        credentials=pika.PlainCredentials(section.username, section.password),
        heartbeat=int(round(section.heartbeat)),
        client_properties=properties)


class _Connection(TwistedProtocolConnection):
    """Keeps why the handshake failed (pika's adapter reports only "AMQPConnectionError: 1")."""

    failure_reason = None

    def connectionLost(self, reason=protocol.connectionDone):
        # A Connection.Close from RabbitMQ (403 ACCESS_REFUSED...) is pending here; the
        # adapter replaces it with ConnectionDone before reporting.
        pending = getattr(self._impl, "_error", None)
        if pending is not None and self.failure_reason is None:
            self.failure_reason = pending
        super().connectionLost(reason)

    def _on_connection_failed(self, connection, error_message=None):
        if self.failure_reason is None:
            self.failure_reason = error_message
        super()._on_connection_failed(connection, error_message)


def connection_factory(section, reactor, on_protocol):
    """A protocol factory building one ``TwistedProtocolConnection`` per TCP connection.

    ``on_protocol(protocol)`` is called with each, before it connects (its
    ``ready`` Deferred fires after the AMQP handshake).
    """
    parameters = connection_parameters(section)

    class Factory(protocol.Factory):
        noisy = False

        def buildProtocol(self, addr):
            built = _Connection(parameters, custom_reactor=reactor)
            on_protocol(built)
            return built

    return Factory()


class ConfirmChannel:
    """A channel in confirm mode that reports confirms by delivery tag.

    pika's ``TwistedChannel.basic_publish`` makes a Deferred per message and
    scans every unconfirmed one on each multiple-ack; this calls
    ``on_confirm(tag, multiple, nacked)`` and ``on_return(message_id)`` instead,
    leaving the bookkeeping to the caller.  ``twisted`` is the wrapped
    ``TwistedChannel`` (for declares and its ``on_closed`` Deferred).
    """

    def __init__(self, twisted_channel, on_confirm, on_return):
        self.twisted = twisted_channel
        self._raw = twisted_channel._channel  # pika.channel.Channel
        self._on_confirm = on_confirm
        self._on_return = on_return
        self.last_tag = 0

    def start(self):
        """Turn confirms on; a Deferred firing once RabbitMQ agreed."""
        from twisted.internet import defer
        d = defer.Deferred()
        self._raw.add_on_return_callback(self._returned)
        self._raw.confirm_delivery(ack_nack_callback=self._confirmed,
                                   callback=lambda _frame: d.callback(None))
        self.twisted.on_closed.addBoth(lambda reason: None if d.called else d.errback(reason))
        return d

    def publish(self, exchange, routing_key, body, properties, mandatory):
        """Send one message; its delivery tag."""
        self._raw.basic_publish(exchange, routing_key, body, properties, mandatory)
        self.last_tag += 1
        return self.last_tag

    @property
    def is_open(self):
        return self._raw.is_open

    def _confirmed(self, frame):
        method = frame.method
        self._on_confirm(method.delivery_tag, method.multiple, isinstance(method, spec.Basic.Nack))

    def _returned(self, _channel, method, properties, _body):
        self._on_return(properties.message_id, method.reply_text)


class Delivery:
    """One consumed message: ``channel`` (the ``TwistedChannel``, for acks), ``method``, ``properties``, ``body``."""

    __slots__ = ("channel", "method", "properties", "body")

    def __init__(self, channel, method, properties, body):
        self.channel = channel
        self.method = method
        self.properties = properties
        self.body = body


def consume(twisted_channel, queue, on_message, on_cancel):
    """``basic.consume`` calling ``on_message(Delivery)`` per message (no Deferred per message).

    ``on_cancel()`` runs when RabbitMQ cancels the consumer (the queue was
    deleted).  Returns a Deferred firing with the consumer tag.
    """
    from twisted.internet import defer
    raw = twisted_channel._channel
    d = defer.Deferred()

    def deliver(_channel, method, properties, body):
        on_message(Delivery(twisted_channel, method, properties, body))

    try:
        raw.add_on_cancel_callback(lambda _frame: on_cancel())
        raw.basic_consume(queue=queue, on_message_callback=deliver, auto_ack=False,
                          callback=lambda frame: d.callback(frame.method.consumer_tag))
    except Exception:
        return defer.fail()
    twisted_channel.on_closed.addBoth(lambda reason: None if d.called else d.errback(reason))
    return d


def cancel(twisted_channel, consumer_tag):
    """``basic.cancel``: no more deliveries for ``consumer_tag`` (those in progress stay unacked)."""
    raw = twisted_channel._channel
    if raw.is_open:
        raw.basic_cancel(consumer_tag=consumer_tag)
