"""The ``amqp`` channel: a RabbitMQ queue consumed into a service (or a pub/sub topic).

Each message becomes a :class:`~broker.services.context.Request` (body decoded
in the channel's data format, message properties and headers in
``request.headers``) and is acked only **after** the service succeeded
(at-least-once: a message whose ack was lost comes again, ``redelivered``).

* a client error (bad input, too large) goes straight to the dead-letter
  queue, with the reason in ``x-broker-error*`` headers;
* a service error is retried: the message is published again to its queue
  with ``x-broker-retries`` counted up, and dead-lettered after ``max_retries``;
* ``reply_to`` + ``correlation_id`` make it RPC: the response (or the error)
  is published to the reply queue.

Every republish (retry, dead letter, reply) is confirmed by RabbitMQ before
the original is acked; if it cannot be, the original is requeued, never lost.
"""

import json

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.errors import BrokerError, PayloadTooLarge, ServiceError
from broker.ids import new_cid
from broker.services.context import ChannelInfo, Request
from broker.simpleio import decode

__all__ = ["AMQPChannel", "RETRIES_HEADER", "build_amqp_channel"]

log = Logger()

RETRIES_HEADER = "x-broker-retries"

_PROPERTIES = (("content_type", "content-type"), ("content_encoding", "content-encoding"),
               ("correlation_id", "correlation-id"), ("message_id", "message-id"),
               ("reply_to", "reply-to"), ("type", "type"), ("app_id", "app-id"),
               ("user_id", "user-id"), ("timestamp", "timestamp"), ("priority", "priority"),
               ("expiration", "expiration"))


class _Acks:
    """Acks of one consumer channel, coalesced into one ``basic.ack(multiple)`` per reactor turn.

    A multiple ack up to tag T acks every outstanding delivery <= T, so it is
    sent only up to the lowest delivery still in progress; later finished ones
    are acked one by one.  Nothing is acked before its service succeeded.
    """

    __slots__ = ("channel", "counters", "_reactor", "_busy", "_done", "_call")

    def __init__(self, channel, counters, reactor):
        self.channel = channel
        self.counters = counters
        self._reactor = reactor
        self._busy = set()   # delivery tags in progress
        self._done = []      # finished, not yet acked
        self._call = None

    def started(self, tag):
        self._busy.add(tag)

    def finished(self, tag):
        """``tag`` is done but not to be acked (nacked, or left for redelivery)."""
        self._busy.discard(tag)

    def ack(self, tag):
        self._busy.discard(tag)
        self._done.append(tag)
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def flush(self):
        self._call = None
        done, self._done = self._done, []
        if not done:
            return
        lowest_busy = min(self._busy) if self._busy else None
        channel = self.channel
        try:
            if lowest_busy is None:
                channel.basic_ack(delivery_tag=max(done), multiple=True)
            else:
                below = [tag for tag in done if tag < lowest_busy]
                if below:
                    channel.basic_ack(delivery_tag=max(below), multiple=True)
                for tag in done:
                    if tag > lowest_busy:
                        channel.basic_ack(delivery_tag=tag)
        except Exception:  # channel gone: RabbitMQ requeues them, they come again
            self.counters["ack_failed"] += len(done)
            return
        self.counters["acked"] += len(done)


class AMQPChannel(Service):
    """Consumers of one queue, each on its own AMQP channel, plus one confirming publisher."""

    def __init__(self, section, connection, *, invoker, store, resources, reactor):
        self.key = section.name
        self.name = f"amqp.channel.{section.name}"  # the service name in the node
        self.section = section
        self.connection = connection
        self.info = ChannelInfo(section.name, "amqp", section.data_format, None,
                                extra={"queue": section.queue})
        self._invoker = invoker
        self._store = store
        self._resources = resources
        self._reactor = reactor
        self._pika = None
        self._publisher = None
        self._consumers = []
        self._acks = {}
        self._tags = {}
        self._drained = None
        self._setup_call = None
        self.dead_letter_key = section.dead_letter_routing_key or f"{section.queue}.dead"
        self.last_error = None
        self.in_progress = 0
        self.counters = {"received": 0, "acked": 0, "redelivered": 0, "client_errors": 0,
                         "service_errors": 0, "retried": 0, "dead_lettered": 0,
                         "dead_letter_failed": 0, "replies": 0, "reply_failed": 0, "ack_failed": 0}
        connection.add_user(self)

    # -- setting up on each connection ------------------------------------------------

    @defer.inlineCallbacks
    def amqp_connected(self, protocol):
        self._setup_call = None
        from broker.amqp import _pika
        self._pika = _pika
        section = self.section
        try:
            publisher = yield protocol.channel()
            yield publisher.confirm_delivery()
            if section.dead_letter_exchange == "" and section.declare_dead_letter_queue:
                yield publisher.queue_declare(queue=self.dead_letter_key, durable=True)
            self._publisher = publisher
            for _ in range(section.consumers):
                channel = yield protocol.channel()
                yield channel.basic_qos(prefetch_count=section.prefetch)
                self._consumers.append(channel)
                self._acks[channel] = _Acks(channel, self.counters, self._reactor)
                channel.on_closed.addBoth(self._channel_closed, channel, protocol)
                self._tags[channel] = yield _pika.consume(channel, section.queue, self._dispatch,
                                                          lambda: self._cancelled(protocol))
        except Exception as exc:
            self.last_error = f"cannot consume from queue {section.queue}: {exc}"
            log.error("amqp channel {name}: {error}; retrying in {delay}s", name=self.key,
                      error=self.last_error, delay=section.setup_retry)
            self._reset(protocol)
            self._retry_setup(protocol)
            return
        self.last_error = None
        log.info("amqp channel {name}: consuming {queue} into {target} ({consumers} consumers, "
                 "prefetch {prefetch})", name=self.key, queue=section.queue,
                 target=section.service or f"topic {section.topic}", consumers=section.consumers,
                 prefetch=section.prefetch)

    def _reset(self, protocol):
        channels = [self._publisher, *self._consumers]
        self._publisher, self._consumers, self._acks, self._tags = None, [], {}, {}
        for channel in channels:
            if channel is not None and channel.is_open:
                channel.close()

    def _retry_setup(self, protocol):
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            self._setup_call = self._reactor.callLater(self.section.setup_retry,
                                                       self.amqp_connected, protocol)

    def _channel_closed(self, reason, channel, protocol):
        if channel not in self._consumers:
            return
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            # The queue was deleted, or RabbitMQ cancelled us: start over on this connection.
            self.last_error = f"consumer channel closed: {reason}"
            log.warn("amqp channel {name}: {error}", name=self.key, error=self.last_error)
            self._reset(protocol)
            self._retry_setup(protocol)

    def _cancelled(self, protocol):
        """RabbitMQ cancelled the consumer (the queue was deleted): start over."""
        if self.running and protocol.is_open and self.connection.protocol is protocol:
            self.last_error = f"RabbitMQ cancelled the consumer of queue {self.section.queue}"
            log.warn("amqp channel {name}: {error}", name=self.key, error=self.last_error)
            self._reset(protocol)
            self._retry_setup(protocol)

    def amqp_lost(self, reason):
        self._publisher, self._consumers, self._acks, self._tags = None, [], {}, {}
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        self._setup_call = None

    def stopService(self):
        super().stopService()
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()

    def amqp_drain(self):
        """Stop consuming; a Deferred firing once every message in progress is settled."""
        for channel, tag in self._tags.items():
            try:
                self._pika.cancel(channel, tag)
            except Exception:
                pass
        self._tags = {}
        self._drained = defer.Deferred()
        self._check_drained()
        return self._drained

    def _check_drained(self):
        if self._drained is not None and self.in_progress <= 0 and not self._drained.called:
            for acks in self._acks.values():
                acks.flush()
            self._drained.callback(None)

    def _dispatch(self, message):
        try:
            self._on_message(message)
        except Exception:
            log.failure("amqp channel {name}: dispatching a message failed", name=self.key)

    # -- one message -------------------------------------------------------------------

    def _on_message(self, message):
        counters = self.counters
        counters["received"] += 1
        method, properties, body = message.method, message.properties, message.body
        if method.redelivered:
            counters["redelivered"] += 1
        section = self.section
        request = Request.from_channel(
            body, _headers(method, properties), {}, {}, None, None, self.info,
            properties.correlation_id or properties.message_id or new_cid(), None,
            properties.content_type or "")
        self.in_progress += 1
        acks = self._acks.get(message.channel)
        if acks is not None:
            acks.started(method.delivery_tag)
        try:
            if len(body) > section.max_message_size:
                raise PayloadTooLarge(f"Message of {len(body)} bytes is over the channel's "
                                      f"max_message_size of {section.max_message_size}")
            request.payload = decode(section.data_format, body, request.content_type)
            if section.topic is not None:
                result = self._resources.publish(section.topic, request.payload,
                                                 publisher=f"amqp:{self.key}")
            else:
                result = self._invoker.run(self._store.get(section.service), request,
                                           properties.reply_to is not None)
        except BrokerError as error:
            self._failed(error, message, request)
            return
        except Exception:
            log.failure("amqp channel {name}: message failed (cid {cid})", name=self.key,
                        cid=request.cid)
            self._failed(ServiceError(), message, request)
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(self._succeeded, self._failed_async, (message, request), None,
                                (message, request))
        else:
            self._succeeded(result, message, request)

    def _succeeded(self, result, message, request):
        reply_to = message.properties.reply_to
        if reply_to is None or self.section.topic is not None:
            self._ack(message)
            return
        properties = self._pika.BasicProperties(
            correlation_id=message.properties.correlation_id, content_type=result.content_type,
            headers={"x-broker-cid": request.cid} if request.cid else None)
        self._reply(message, result.body, properties)

    def _failed_async(self, failure, message, request):
        if failure.check(BrokerError):
            self._failed(failure.value, message, request)
        else:
            log.failure("amqp channel {name}: message failed (cid {cid})", failure,
                        name=self.key, cid=request.cid)
            self._failed(ServiceError(), message, request)

    def _failed(self, error, message, request):
        """A client error is dead-lettered at once; a service error retried, then dead-lettered."""
        headers = message.properties.headers or {}
        retries = headers.get(RETRIES_HEADER, 0)
        retries = retries if isinstance(retries, int) else 0
        if error.status < 500:
            self.counters["client_errors"] += 1
            log.info("amqp channel {name}: dead-lettering a bad message (cid {cid}): {error}",
                     name=self.key, cid=request.cid, error=error.message)
        else:
            self.counters["service_errors"] += 1
            if retries < self.section.max_retries:
                self._retry(message, retries + 1)
                return
            log.warn("amqp channel {name}: dead-lettering a message after {retries} retries "
                     "(cid {cid}): {error}", name=self.key, retries=retries, cid=request.cid,
                     error=error.message)
        self._dead_letter(message, error, request, retries)

    # -- republishing, then acking --------------------------------------------------------

    def _retry(self, message, retries):
        properties = _copy_properties(self._pika, message.properties, {RETRIES_HEADER: retries})
        d = self._publish(message, "", self.section.queue, message.body, properties)
        if d is not None:
            d.addCallbacks(self._republished, self._republish_failed, (message, "retried"), None,
                           (message, "retry"))

    def _dead_letter(self, message, error, request, retries):
        extra = {"x-broker-error-code": error.code, "x-broker-error": error.message,
                 "x-broker-channel": self.key, "x-broker-queue": self.section.queue,
                 RETRIES_HEADER: retries}
        if error.errors:
            extra["x-broker-errors"] = json.dumps(error.errors)
        if self.section.service:
            extra["x-broker-service"] = self.section.service
        if request.cid:
            extra["x-broker-cid"] = request.cid
        properties = _copy_properties(self._pika, message.properties, extra)
        d = self._publish(message, self.section.dead_letter_exchange, self.dead_letter_key,
                          message.body, properties)
        if d is None:
            return
        d.addCallbacks(self._republished, self._republish_failed, (message, "dead_lettered"),
                       None, (message, "dead letter"))
        if message.properties.reply_to is not None:
            body = json.dumps({"result": "Error", "cid": request.cid, "code": error.code,
                               "details": error.message, "errors": error.errors}).encode()
            reply = self._pika.BasicProperties(
                correlation_id=message.properties.correlation_id, content_type="application/json",
                headers={"x-broker-error-code": error.code})
            self._publish(message, "", message.properties.reply_to, body, reply).addErrback(
                self._reply_failed)

    def _reply(self, message, body, properties):
        d = self._publish(message, "", message.properties.reply_to, body, properties)
        if d is None:
            return
        d.addCallbacks(self._replied, self._reply_failed_then_ack, (message,), None, (message,))

    def _publish(self, message, exchange, routing_key, body, properties):
        """Publish on the confirming channel; None (message left unacked) when it is gone."""
        publisher = self._publisher
        if publisher is None or not publisher.is_open:
            self._settled(message)  # unacked: it comes again after reconnecting
            return None
        return publisher.basic_publish(exchange, routing_key, body, properties, True)

    def _republished(self, _frame, message, counter):
        self.counters[counter] += 1
        self._ack(message)

    def _republish_failed(self, failure, message, what):
        """RabbitMQ would not take the copy: requeue the original later, never drop it."""
        if what == "dead letter":
            self.counters["dead_letter_failed"] += 1
        log.error("amqp channel {name}: {what} publish failed ({error}); requeueing the message "
                  "in {delay}s", name=self.key, what=what, error=failure.value,
                  delay=self.section.setup_retry)
        self._reactor.callLater(self.section.setup_retry, self._nack, message)

    def _replied(self, _frame, message):
        self.counters["replies"] += 1
        self._ack(message)

    def _reply_failed(self, failure):
        self.counters["reply_failed"] += 1
        log.warn("amqp channel {name}: reply not delivered: {error}", name=self.key,
                 error=failure.value)

    def _reply_failed_then_ack(self, failure, message):
        # The service did its work; a caller that went away is no reason to run it again.
        self._reply_failed(failure)
        self._ack(message)

    def _ack(self, message):
        self.in_progress -= 1
        acks = self._acks.get(message.channel)
        if acks is None:  # its channel is gone: RabbitMQ requeues it, it comes again
            self.counters["ack_failed"] += 1
        else:
            acks.ack(message.method.delivery_tag)
        if self._drained is not None:
            self._check_drained()

    def _settled(self, message):
        """Done with ``message`` without acking it."""
        self.in_progress -= 1
        acks = self._acks.get(message.channel)
        if acks is not None:
            acks.finished(message.method.delivery_tag)
        if self._drained is not None:
            self._check_drained()

    def _nack(self, message):
        self._settled(message)
        try:
            message.channel.basic_nack(delivery_tag=message.method.delivery_tag, requeue=True)
        except Exception:
            self.counters["ack_failed"] += 1

    # -- health and metrics ---------------------------------------------------------------

    def health(self):
        report = {"ok": bool(self._consumers) and self.last_error is None,
                  "queue": self.section.queue, "consumers": len(self._consumers)}
        if self.last_error:
            report["last_error"] = self.last_error
        return report

    def metrics(self):
        return {**self.counters, "in_progress": self.in_progress}


def _headers(method, properties):
    """AMQP headers (names lower-cased) and message properties, as a request's headers."""
    headers = {}
    if properties.headers:
        for key, value in properties.headers.items():
            headers[key.lower()] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    for attribute, key in _PROPERTIES:
        value = getattr(properties, attribute)
        if value is not None:
            headers[key] = value
    headers["redelivered"] = method.redelivered
    headers["routing-key"] = method.routing_key
    headers["exchange"] = method.exchange
    return headers


def _copy_properties(_pika, properties, extra_headers):
    """The message's properties with more headers."""
    values = {attribute: getattr(properties, attribute) for attribute, _ in _PROPERTIES}
    values["delivery_mode"] = properties.delivery_mode
    values["headers"] = {**(properties.headers or {}), **extra_headers}
    return _pika.BasicProperties(**values)


def build_amqp_channel(section, ctx):
    """The consuming service for one checked ``amqp`` channel section."""
    connection = ctx.connection(section, "connection", "amqp")
    channel = AMQPChannel(section, connection, invoker=ctx.invoker, store=ctx.store,
                          resources=ctx.resources, reactor=ctx.reactor)
    ctx.resources.health[f"amqp.channel.{section.name}"] = channel.health
    ctx.resources.metrics[f"amqp.channel.{section.name}"] = channel.metrics
    return channel
