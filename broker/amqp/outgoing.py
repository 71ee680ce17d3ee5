"""Outgoing AMQP: ``await self.out.amqp["name"].publish(data, routing_key=..., headers=...)``.

Every message goes out on a channel in confirm mode; ``publish()`` fires when
RabbitMQ confirms it and fails with a typed :mod:`broker.amqp.errors` error
on basic.nack, on basic.return (``mandatory``) or after ``publish_timeout``.
Messages wait in a bounded outbox while the connection is down or
``max_in_flight`` are unconfirmed; a full outbox fails at once.  Messages
unconfirmed when a connection drops go back to the head of the outbox and
are sent again after reconnecting (at-least-once: duplicates are possible,
each message carries a ``message_id`` to dedupe on).
"""

import uuid
from collections import deque

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.amqp.errors import (AMQPPublishError, OutboxFull, PublishNacked, PublishTimeout,
                                Unroutable)
from broker.simpleio import encode

__all__ = ["AMQPOutgoing", "build_amqp_outgoing"]

log = Logger()


class _Message:
    __slots__ = ("exchange", "routing_key", "body", "properties", "deferred", "timer", "sends")

    def __init__(self, exchange, routing_key, body, properties):
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.deferred = defer.Deferred()
        self.timer = None
        self.sends = 0


class AMQPOutgoing(Service):
    """A named AMQP publisher with publisher confirms and a bounded outbox."""

    def __init__(self, section, connection, reactor):
        self.key = section.name
        self.name = f"amqp.outgoing.{section.name}"  # the service name in the node
        self.section = section
        self.connection = connection
        self._reactor = reactor
        self._pika = None
        self._channel = None
        self._outbox = deque()
        self._in_flight = {}
        self._returned = []
        self._setup_call = None
        self.last_error = None
        self.counters = {"published": 0, "confirmed": 0, "nacked": 0, "unroutable": 0,
                         "outbox_full": 0, "timeouts": 0, "resent": 0, "failed": 0}
        connection.add_user(self)

    # -- the API services use -------------------------------------------------------

    def publish(self, data, routing_key=None, headers=None, *, content_type=None,
                correlation_id=None, message_id=None, reply_to=None, properties=None):
        """Publish ``data`` (dict/list encoded in ``data_format``, str or bytes as is).

        :return: a Deferred firing when RabbitMQ confirms the message.
        :raise OutboxFull: (as the Deferred's failure) the outbox is full.
        """
        section = self.section
        if len(self._outbox) >= section.max_outbox:
            self.counters["outbox_full"] += 1
            return defer.fail(OutboxFull())
        try:
            body, default_type = _encode(section.data_format, data)
        except Exception as exc:
            return defer.fail(exc)
        values = dict(properties or {})
        values.update(content_type=content_type or default_type,
                      message_id=message_id or uuid.uuid4().hex,
                      delivery_mode=2 if section.persistent else 1)
        if headers:
            values["headers"] = dict(headers)
        if correlation_id is not None:
            values["correlation_id"] = correlation_id
        if reply_to is not None:
            values["reply_to"] = reply_to
        message = _Message(section.exchange, section.routing_key if routing_key is None else routing_key,
                           body, self._properties(values))
        message.timer = self._reactor.callLater(section.publish_timeout, self._timed_out, message)
        self.counters["published"] += 1
        self._outbox.append(message)
        self._flush()
        return message.deferred

    def _properties(self, values):
        if self._pika is None:
            from broker.amqp import _pika
            self._pika = _pika
        return self._pika.BasicProperties(**values)

    # -- sending ----------------------------------------------------------------------

    def _flush(self):
        channel = self._channel
        outbox, in_flight, limit = self._outbox, self._in_flight, self.section.max_in_flight
        while channel is not None and outbox and len(in_flight) < limit:
            message = outbox.popleft()
            in_flight[message] = None
            if message.sends:
                self.counters["resent"] += 1
            message.sends += 1
            d = channel.basic_publish(message.exchange, message.routing_key, message.body,
                                      message.properties, self.section.mandatory)
            d.addCallbacks(self._confirmed, self._not_confirmed, (message,), None, (message,))

    def _confirmed(self, _frame, message):
        self._in_flight.pop(message, None)
        self._settle(message, None)
        self._flush()

    def _not_confirmed(self, failure, message):
        self._in_flight.pop(message, None)
        _pika = self._pika
        if failure.check(_pika.NackError):
            self.counters["nacked"] += 1
            self._settle(message, PublishNacked())
        elif failure.check(_pika.UnroutableError):
            self.counters["unroutable"] += 1
            self._settle(message, Unroutable(
                f'No queue is bound for routing key "{message.routing_key}" on exchange '
                f'"{message.exchange}"'))
        elif failure.check(_pika.ChannelClosedByBroker):
            # The channel broke for a reason of its own (e.g. the exchange is gone):
            # sending again would break it again.
            self.counters["failed"] += 1
            self._settle(message, AMQPPublishError(f"RabbitMQ closed the channel: {failure.value}"))
        elif not message.deferred.called:
            self._returned.append(message)  # connection lost: send again after reconnecting
        self._flush()

    def _settle(self, message, error):
        if message.timer is not None and message.timer.active():
            message.timer.cancel()
        if message.deferred.called:  # timed out already
            return
        if error is None:
            self.counters["confirmed"] += 1
            message.deferred.callback(None)
        else:
            message.deferred.errback(error)

    def _timed_out(self, message):
        message.timer = None
        self.counters["timeouts"] += 1
        try:
            self._outbox.remove(message)
        except ValueError:
            pass
        if not message.deferred.called:
            message.deferred.errback(PublishTimeout())

    # -- connection events --------------------------------------------------------------

    @defer.inlineCallbacks
    def amqp_connected(self, protocol):
        self._setup_call = None
        from broker.amqp import _pika
        self._pika = _pika
        try:
            channel = yield protocol.channel()
            yield channel.confirm_delivery()
            if self.section.exchange:  # fail clearly now rather than on the first publish
                yield channel.exchange_declare(exchange=self.section.exchange, passive=True)
        except Exception as exc:
            self.last_error = f"cannot open a publishing channel: {exc}"
            log.error("amqp outgoing {name}: {error}; retrying in 5s", name=self.key,
                      error=self.last_error)
            self._retry_setup(protocol)
            return
        self.last_error = None
        self._channel = channel
        channel.on_closed.addBoth(self._channel_closed, channel, protocol)
        self._flush()

    def _retry_setup(self, protocol):
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            self._setup_call = self._reactor.callLater(5.0, self.amqp_connected, protocol)

    def _channel_closed(self, reason, channel, protocol):
        if self._channel is channel:
            self._channel = None
        returned, self._returned = self._returned, []
        self._outbox.extendleft(reversed(returned))
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            self.last_error = f"channel closed: {reason}"
            log.warn("amqp outgoing {name}: {error}; reopening", name=self.key, error=self.last_error)
            self._retry_setup(protocol)

    def amqp_lost(self, reason):
        self._channel = None
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        self._setup_call = None

    def stopService(self):
        super().stopService()
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        while self._outbox:
            message = self._outbox.popleft()
            self._settle(message, AMQPPublishError("The broker is stopping; message not sent"))

    # -- health and metrics ---------------------------------------------------------------

    def health(self):
        report = {"ok": self._channel is not None, "outbox": len(self._outbox),
                  "in_flight": len(self._in_flight)}
        if self.last_error:
            report["last_error"] = self.last_error
        return report

    def metrics(self):
        return {**self.counters, "outbox": len(self._outbox), "in_flight": len(self._in_flight)}


def _encode(data_format, data):
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), "application/octet-stream"
    if isinstance(data, str):
        return data.encode("utf-8"), "text/plain; charset=utf-8"
    return encode(data_format, data, root="message")


def build_amqp_outgoing(section, ctx):
    """The outgoing object for one checked ``amqp`` outgoing section."""
    connection = ctx.connection(section, "connection", "amqp")
    outgoing = AMQPOutgoing(section, connection, ctx.reactor)
    ctx.resources.health[f"amqp.outgoing.{section.name}"] = outgoing.health
    ctx.resources.metrics[f"amqp.outgoing.{section.name}"] = outgoing.metrics
    return outgoing
