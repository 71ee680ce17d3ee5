"""Outgoing AMQP: ``await self.out.amqp["name"].publish(data, routing_key=..., headers=...)``.

Every message goes out on a channel in confirm mode; ``publish()`` fires when
RabbitMQ confirms it and fails with a typed :mod:`broker.amqp.errors` error
on basic.nack, on basic.return (``mandatory``) or after ``publish_timeout``.
Messages wait in a bounded outbox while the connection is down or
``max_in_flight`` are unconfirmed; a full outbox fails at once.  Messages
unconfirmed when a connection drops go back to the head of the outbox and
are sent again after reconnecting (at-least-once: duplicates are possible,
each message carries a ``message_id`` to dedupe on).  It uses its connection
only while it runs: started, it opens its channel (at once if connected);
stopped, it waits for its confirms, closes the channel and leaves.
"""

from collections import deque

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.amqp.errors import (AMQPPublishError, OutboxFull, PublishNacked, PublishTimeout,
                                Unroutable)
from broker.ids import id_maker
from broker.simpleio import encode
from broker.services.tracing import outgoing_traceparent

__all__ = ["AMQPOutgoing", "build_amqp_outgoing"]

log = Logger()


class _Message:
    __slots__ = ("exchange", "routing_key", "body", "properties", "deferred", "deadline", "sends")

    def __init__(self, exchange, routing_key, body, properties, deadline):
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.deferred = defer.Deferred()
        self.deadline = deadline
        self.sends = 0


new_message_id = id_maker(0)


class AMQPOutgoing(Service):
    """A named AMQP publisher with publisher confirms and a bounded outbox."""

    def __init__(self, section, connection, reactor):
        self.key = section.name
        self.name = f"amqp.outgoing.{section.name}"  # the service name in the node
        self.section = section
        self.connection = connection
        self._reactor = reactor
        self._pika = None
        self._delivery_mode = 2 if section.persistent else 1
        self._channel = None
        self._outbox = deque()
        self._in_flight = {}     # delivery tag -> message, sent and not yet confirmed
        self._lowest_tag = 1
        self._returned_ids = {}  # message_id -> reason, for basic.return before its ack
        self._drained = []       # Deferreds waiting for nothing to be unconfirmed
        self._pending = deque()  # every unsettled message, oldest (earliest deadline) first
        self._timer = None       # one timer, for the oldest message's deadline
        self._setup_call = None
        self.last_error = None
        self.counters = {"published": 0, "confirmed": 0, "nacked": 0, "unroutable": 0,
                         "outbox_full": 0, "timeouts": 0, "resent": 0, "failed": 0}

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
        if self._pika is None:
            from broker.amqp import _pika
            self._pika = _pika
        traceparent = outgoing_traceparent()
        if traceparent is not None and not (headers and "traceparent" in headers):
            headers = {**(headers or {}), "traceparent": traceparent}
        message = _Message(
            section.exchange, section.routing_key if routing_key is None else routing_key, body,
            self._pika.BasicProperties(
                content_type=content_type or default_type,
                message_id=message_id or new_message_id(), delivery_mode=self._delivery_mode,
                headers=dict(headers) if headers else None, correlation_id=correlation_id,
                reply_to=reply_to, **(properties or {})),
            self._reactor.seconds() + section.publish_timeout)
        self.counters["published"] += 1
        self._pending.append(message)
        if self._timer is None:
            self._timer = self._reactor.callLater(section.publish_timeout, self._expire)
        channel, in_flight, outbox = self._channel, self._in_flight, self._outbox
        if not outbox and channel is not None and len(in_flight) < section.max_in_flight \
                and channel.is_open:  # nothing waits: straight out
            message.sends = 1
            in_flight[channel.publish(message.exchange, message.routing_key, body,
                                      message.properties, section.mandatory)] = message
        else:
            outbox.append(message)
            self._flush()
        return message.deferred

    # -- sending ----------------------------------------------------------------------

    def _flush(self):
        channel = self._channel
        outbox, in_flight, limit = self._outbox, self._in_flight, self.section.max_in_flight
        mandatory, counters = self.section.mandatory, self.counters
        if channel is None or not channel.is_open:
            return
        while outbox and len(in_flight) < limit:
            message = outbox.popleft()
            if message.sends:
                counters["resent"] += 1
            message.sends += 1
            tag = channel.publish(message.exchange, message.routing_key, message.body,
                                  message.properties, mandatory)
            in_flight[tag] = message

    def _on_confirm(self, tag, multiple, nacked):
        """basic.ack/basic.nack for ``tag`` (and every tag before it when ``multiple``)."""
        in_flight = self._in_flight
        if multiple:
            for each in range(self._lowest_tag, tag + 1):
                message = in_flight.pop(each, None)
                if message is not None:
                    self._confirmed(message, nacked)
            self._lowest_tag = max(self._lowest_tag, tag + 1)
        else:
            message = in_flight.pop(tag, None)
            if message is not None:
                self._confirmed(message, nacked)
        if self._outbox:
            self._flush()

    def _on_return(self, message_id, reason):
        """basic.return: the message (acked next) matched no queue."""
        self._returned_ids[message_id] = reason

    def _confirmed(self, message, nacked):
        if nacked:
            self.counters["nacked"] += 1
            self._settle(message, PublishNacked())
        elif self._returned_ids and message.properties.message_id in self._returned_ids:
            reason = self._returned_ids.pop(message.properties.message_id)
            self.counters["unroutable"] += 1
            self._settle(message, Unroutable(
                f'No queue is bound for routing key "{message.routing_key}" on exchange '
                f'"{message.exchange}" ({reason})'))
        else:
            self._settle(message, None)

    def _settle(self, message, error):
        if message.deferred.called:  # timed out already
            return
        message.body = None
        pending = self._pending
        if error is None:
            self.counters["confirmed"] += 1
            message.deferred.callback(None)
        else:
            message.deferred.errback(error)
        while pending and pending[0].deferred.called:  # confirms come (nearly) in order
            pending.popleft()
        if self._drained and not (self._in_flight or self._outbox):
            drained, self._drained = self._drained, []
            for waiting in drained:
                waiting.callback(None)

    def _expire(self):
        """Fail every message past its deadline; wait for the next oldest one."""
        self._timer = None
        now, pending = self._reactor.seconds(), self._pending
        while pending and (pending[0].deferred.called or pending[0].deadline <= now):
            message = pending.popleft()
            if message.deferred.called:
                continue
            self.counters["timeouts"] += 1
            try:
                self._outbox.remove(message)
            except ValueError:
                pass  # in flight: a late confirm is ignored
            message.body = None
            message.deferred.errback(PublishTimeout())
        if pending:
            self._timer = self._reactor.callLater(max(pending[0].deadline - now, 0.001), self._expire)

    # -- connection events --------------------------------------------------------------

    @defer.inlineCallbacks
    def amqp_connected(self, protocol):
        self._setup_call = None
        from broker.amqp import _pika
        self._pika = _pika
        try:
            twisted_channel = yield protocol.channel()
            channel = _pika.ConfirmChannel(twisted_channel, self._on_confirm, self._on_return)
            yield channel.start()
            if self.section.exchange:  # fail clearly now rather than on the first publish
                yield twisted_channel.exchange_declare(exchange=self.section.exchange, passive=True)
        except Exception as exc:
            self.last_error = f"cannot open a publishing channel: {exc}"
            log.error("amqp outgoing {name}: {error}; retrying in 5s", name=self.key,
                      error=self.last_error)
            self._retry_setup(protocol)
            return
        if not self.running:  # stopped meanwhile
            twisted_channel.close()
            return
        self.last_error = None
        self._channel = channel
        self._lowest_tag = 1
        self._returned_ids.clear()
        twisted_channel.on_closed.addBoth(self._channel_closed, channel, protocol)
        self._flush()

    def _retry_setup(self, protocol):
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            self._setup_call = self._reactor.callLater(5.0, self.amqp_connected, protocol)

    def _channel_closed(self, reason, channel, protocol):
        if self._channel is not channel:
            return
        self._channel = None
        unconfirmed = list(self._in_flight.values())  # in the order they were sent
        self._in_flight.clear()
        if not self.running:
            self._fail_all(unconfirmed, "The broker stopped before RabbitMQ confirmed the message")
            return
        if isinstance(reason, self._pika.ChannelClosedByBroker) and protocol.is_open:
            # The channel broke for a reason of its own (e.g. the exchange is gone):
            # sending again would break it again.
            for message in unconfirmed:
                self.counters["failed"] += 1
                self._settle(message, AMQPPublishError(f"RabbitMQ closed the channel: {reason}"))
        else:  # the connection dropped: send them again after reconnecting
            self._outbox.extendleft(reversed([m for m in unconfirmed if not m.deferred.called]))
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            self.last_error = f"channel closed: {reason}"
            log.warn("amqp outgoing {name}: {error}; reopening", name=self.key, error=self.last_error)
            self._retry_setup(protocol)

    def amqp_drain(self):
        """A Deferred firing once nothing waits for a confirm (or to be sent)."""
        if not (self._in_flight or self._outbox):
            return None
        self._drained.append(defer.Deferred())
        return self._drained[-1]

    def amqp_lost(self, reason):
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        self._setup_call = None

    def startService(self):
        super().startService()
        self.connection.add_user(self)  # set up at once if it is connected

    def stopService(self):
        """Wait for what is unconfirmed (at most the connection's ``drain_timeout``), then
        close the channel (what is left fails) and leave the connection."""
        super().stopService()
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        if self._channel is None:
            self._fail_all([], "The broker is stopping; message not sent")
            return self._stopped(None)
        drained = defer.maybeDeferred(self.amqp_drain)
        drained.addTimeout(self.connection.section.drain_timeout, self._reactor,
                           onTimeoutCancel=lambda *_: None)
        return drained.addBoth(self._stopped)

    def _stopped(self, _):
        self.connection.remove_user(self)
        if self._channel is not None and self._channel.is_open:
            self._channel.twisted.close()  # _channel_closed fails what is left

    def _fail_all(self, unconfirmed, reason):
        waiting, self._outbox = list(self._outbox), deque()
        if unconfirmed or waiting:  # each caller gets the error; the operator gets the count
            log.warn("amqp outgoing {name}: {unconfirmed} messages unconfirmed and {waiting} not "
                     "sent: {reason}", name=self.name, unconfirmed=len(unconfirmed),
                     waiting=len(waiting), reason=reason)
        for message in unconfirmed + waiting:
            self._settle(message, AMQPPublishError(reason))
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

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
    ctx.health(f"amqp.outgoing.{section.name}", outgoing.health)
    ctx.metrics(f"amqp.outgoing.{section.name}", outgoing.metrics)
    return outgoing
