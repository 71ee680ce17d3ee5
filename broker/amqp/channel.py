"""The ``amqp`` channel: a RabbitMQ queue consumed into a service (or a pub/sub topic).

Each message becomes a :class:`~broker.services.context.Request` (body decoded
in the channel's data format, message properties and headers in
``request.headers``) and is acked only **after** the service succeeded
(at-least-once: a message whose ack was lost comes again, ``redelivered``).

* a client error (bad input, too large) goes straight to the dead-letter
  queue, with the reason in ``x-broker-error*`` headers;
* a service error is retried: after ``retry_delay`` (doubling per retry, up to
  ``retry_delay_max``; the message stays unacked meanwhile) it is published
  again to its queue with ``x-broker-retries`` counted up, and dead-lettered
  after ``max_retries``;
* ``reply_to`` + ``correlation_id`` make it RPC: the response (or the error)
  is published to the reply queue.

Every republish (retry, dead letter, reply) goes out on the channel's own
confirming publisher and is confirmed by RabbitMQ before the original is
acked.  If it cannot be (the publisher is closed, RabbitMQ nacked it or closed
the channel), the original is nacked with requeue after ``setup_retry``, never
acked or dropped.  A publisher closed by RabbitMQ (a channel error) is reopened
with backoff; health is not ok while it is down.  Acks and nacks go through
:class:`~broker.amqp.acks.DeliveryAcks`, one per consumer channel.
"""

import json

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.amqp.acks import DeliveryAcks
from broker.amqp.connection import describe_error
from broker.errors import BrokerError, PayloadTooLarge, ServiceError
from broker.ids import new_cid
from broker.services.context import ChannelInfo, Request
from broker.simpleio import decode

__all__ = ["AMQPChannel", "PublisherClosed", "RETRIES_HEADER", "build_amqp_channel"]

log = Logger()

RETRIES_HEADER = "x-broker-retries"
REOPEN_FIRST = 0.1  # seconds before reopening a closed publisher; doubles up to setup_retry

_PROPERTIES = (("content_type", "content-type"), ("content_encoding", "content-encoding"),
               ("correlation_id", "correlation-id"), ("message_id", "message-id"),
               ("reply_to", "reply-to"), ("type", "type"), ("app_id", "app-id"),
               ("user_id", "user-id"), ("timestamp", "timestamp"), ("priority", "priority"),
               ("expiration", "expiration"))


class PublisherClosed(Exception):
    """The channel's publishing channel is closed (being reopened): nothing can be republished."""


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
        self._acks = {}          # consumer channel -> its DeliveryAcks
        self._tags = {}          # consumer channel -> consumer tag
        self._held = {}          # message -> DelayedCall: kept unacked until a retry or requeue
        self._drained = None
        self._setup_call = None
        self._reopen_call = None
        self._reopen_delay = REOPEN_FIRST
        self._generation = 0     # counts resets, so a late reopen knows it is stale
        self.dead_letter_key = section.dead_letter_routing_key or f"{section.queue}.dead"
        self.last_error = None
        self.publisher_error = None
        self.in_progress = 0
        self.counters = {"received": 0, "acked": 0, "redelivered": 0, "client_errors": 0,
                         "service_errors": 0, "retried": 0, "retry_failed": 0,
                         "dead_lettered": 0, "dead_letter_failed": 0, "replies": 0,
                         "reply_failed": 0, "requeued": 0, "ack_failed": 0,
                         "publisher_closed": 0}
        connection.add_user(self)

    # -- setting up on each connection ------------------------------------------------

    @defer.inlineCallbacks
    def amqp_connected(self, protocol):
        self._setup_call = None
        from broker.amqp import _pika
        self._pika = _pika
        section = self.section
        try:
            self._use_publisher((yield self._open_publisher(protocol)), protocol)
            for _ in range(section.consumers):
                channel = yield protocol.channel()
                yield channel.basic_qos(prefetch_count=section.prefetch)
                self._consumers.append(channel)
                self._acks[channel] = DeliveryAcks(channel, self.counters, self._reactor)
                channel.on_closed.addBoth(self._channel_closed, channel, protocol)
                self._tags[channel] = yield _pika.consume(channel, section.queue, self._dispatch,
                                                          lambda: self._cancelled(protocol))
        except Exception as exc:
            self.last_error = f"cannot consume from queue {section.queue}: {exc}"
            log.error("amqp channel {name}: {error}; retrying in {delay}s", name=self.key,
                      error=self.last_error, delay=section.setup_retry)
            self._reset()
            self._retry_setup(protocol)
            return
        self.last_error = None
        log.info("amqp channel {name}: consuming {queue} into {target} ({consumers} consumers, "
                 "prefetch {prefetch})", name=self.key, queue=section.queue,
                 target=section.service or f"topic {section.topic}", consumers=section.consumers,
                 prefetch=section.prefetch)

    def _current(self, protocol):
        """Still running on ``protocol``, and it is open."""
        return self.running and protocol.is_open and self.connection.protocol is protocol

    def _reset(self):
        """Drop every AMQP channel (RabbitMQ requeues what they had unacked)."""
        self._generation += 1
        if self._reopen_call is not None and self._reopen_call.active():
            self._reopen_call.cancel()
        self._reopen_call = None
        self._reopen_delay = REOPEN_FIRST
        self.publisher_error = None
        channels = [self._publisher, *self._consumers]
        self._publisher, self._consumers, self._acks, self._tags = None, [], {}, {}
        self._requeue_held()  # their channels are gone: only counted
        for channel in channels:
            if channel is not None and channel.is_open:
                channel.close()

    def _retry_setup(self, protocol):
        if self._current(protocol):
            self._setup_call = self._reactor.callLater(self.section.setup_retry,
                                                       self.amqp_connected, protocol)

    def _channel_closed(self, reason, channel, protocol):
        if channel not in self._consumers:
            return
        if self._current(protocol):
            # The queue was deleted, or RabbitMQ cancelled us: start over on this connection.
            self.last_error = f"consumer channel closed: {reason}"
            log.warn("amqp channel {name}: {error}", name=self.key, error=self.last_error)
            self._reset()
            self._retry_setup(protocol)

    def _cancelled(self, protocol):
        """RabbitMQ cancelled the consumer (the queue was deleted): start over."""
        if self._current(protocol):
            self.last_error = f"RabbitMQ cancelled the consumer of queue {self.section.queue}"
            log.warn("amqp channel {name}: {error}", name=self.key, error=self.last_error)
            self._reset()
            self._retry_setup(protocol)

    def amqp_lost(self, reason):
        self._reset()
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        self._setup_call = None

    def stopService(self):
        super().stopService()
        for call in (self._setup_call, self._reopen_call):
            if call is not None and call.active():
                call.cancel()

    def amqp_drain(self):
        """Stop consuming; a Deferred firing once every message in progress is settled.

        Messages waiting for their retry (or requeue) are requeued at once.
        """
        for channel, tag in self._tags.items():
            try:
                self._pika.cancel(channel, tag)
            except Exception:
                pass
        self._tags = {}
        self._drained = defer.Deferred()
        self._requeue_held()
        self._check_drained()
        return self._drained

    def _check_drained(self):
        if self._drained is not None and self.in_progress <= 0 and not self._drained.called:
            for acks in self._acks.values():
                acks.flush()
            self._drained.callback(None)

    # -- the publishing channel ------------------------------------------------------------

    @defer.inlineCallbacks
    def _open_publisher(self, protocol):
        """A new confirming channel for retries, dead letters and replies."""
        publisher = yield protocol.channel()
        try:
            yield publisher.confirm_delivery()
            if self.section.dead_letter_exchange == "" and self.section.declare_dead_letter_queue:
                yield publisher.queue_declare(queue=self.dead_letter_key, durable=True)
        except Exception:
            if publisher.is_open:
                publisher.close()
            raise
        return publisher

    def _use_publisher(self, publisher, protocol):
        self._publisher = publisher
        self.publisher_error = None
        publisher.on_closed.addBoth(self._publisher_closed, publisher, protocol)

    def _publisher_closed(self, reason, publisher, protocol):
        if self._publisher is not publisher:  # closed by us, or already replaced
            return
        self._publisher = None
        if isinstance(reason, self._pika.exceptions.AMQPConnectionError):
            return  # the connection is going: amqp_lost starts over
        if self._current(protocol):  # a channel error (e.g. publishing to a missing exchange)
            self.counters["publisher_closed"] += 1
            self._reopen_later(protocol, f"publishing channel closed by RabbitMQ: "
                                         f"{describe_error(reason)}")

    def _reopen_later(self, protocol, error):
        delay = self._reopen_delay
        self._reopen_delay = min(delay * 2, self.section.setup_retry)
        self.publisher_error = f"{error}; reopening it in {delay:g}s"
        log.warn("amqp channel {name}: {error}", name=self.key, error=self.publisher_error)
        self._reopen_call = self._reactor.callLater(delay, self._reopen, protocol,
                                                    self._generation)

    @defer.inlineCallbacks
    def _reopen(self, protocol, generation):
        self._reopen_call = None
        try:
            publisher = yield self._open_publisher(protocol)
        except Exception as exc:
            if generation == self._generation and self._current(protocol):
                self._reopen_later(protocol, "cannot reopen the publishing channel: "
                                             f"{describe_error(exc)}")
            return
        if generation != self._generation or not self._current(protocol):
            publisher.close()  # set up again (or stopped) meanwhile
            return
        self._use_publisher(publisher, protocol)
        log.info("amqp channel {name}: publishing channel reopened", name=self.key)

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
        self.in_progress += 1
        acks = self._acks.get(message.channel)
        if acks is not None:
            acks.started(method.delivery_tag)  # first: nothing is acked past it from now on
        if method.redelivered:
            counters["redelivered"] += 1
        section = self.section
        request = Request.from_channel(
            body, _headers(method, properties), {}, {}, None, None, self.info,
            properties.correlation_id or properties.message_id or new_cid(), None,
            properties.content_type or "")
        try:
            if len(body) > section.max_message_size:
                raise PayloadTooLarge(f"Message of {len(body)} bytes is over the channel's "
                                      f"max_message_size of {section.max_message_size}")
            request.payload = decode(section.data_format, body, request.content_type)
            if section.topic is not None:
                result = self._resources.publish(section.topic, request.payload,
                                                 publisher=f"amqp:{self.key}")
            else:
                result = self._invoker.invoke(section.service, request,
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
            self._settle(message, True)
            return
        if self._gone(message):
            return
        properties = self._pika.BasicProperties(
            correlation_id=message.properties.correlation_id, content_type=result.content_type,
            headers={"x-broker-cid": request.cid} if request.cid else None)
        d = self._publish("", reply_to, result.body, properties)
        d.addCallbacks(self._replied, self._reply_not_sent, (message,), None, (message,))

    def _failed_async(self, failure, message, request):
        if failure.check(BrokerError):
            self._failed(failure.value, message, request)
        else:
            log.failure("amqp channel {name}: message failed (cid {cid})", failure,
                        name=self.key, cid=request.cid)
            self._failed(ServiceError(), message, request)

    def _failed(self, error, message, request):
        """A client error is dead-lettered at once; a service error retried, then dead-lettered."""
        if self._gone(message):
            return
        headers = message.properties.headers or {}
        retries = headers.get(RETRIES_HEADER, 0)
        retries = retries if isinstance(retries, int) and retries > 0 else 0
        if error.status < 500:
            self.counters["client_errors"] += 1
            log.info("amqp channel {name}: dead-lettering a bad message (cid {cid}): {error}",
                     name=self.key, cid=request.cid, error=error.message)
        else:
            self.counters["service_errors"] += 1
            if retries < self.section.max_retries:
                delay = self.retry_delay(retries + 1)
                if delay > 0:
                    self._hold(message, delay, self._retry, retries + 1)
                else:
                    self._retry(message, retries + 1)
                return
            log.warn("amqp channel {name}: dead-lettering a message after {retries} retries "
                     "(cid {cid}): {error}", name=self.key, retries=retries, cid=request.cid,
                     error=error.message)
        self._dead_letter(message, error, request, retries)

    def retry_delay(self, retry):
        """Seconds to wait before retry number ``retry`` (1, 2...): ``retry_delay`` doubling
        per retry, at most ``retry_delay_max``."""
        section = self.section
        return min(section.retry_delay * 2 ** min(retry - 1, 32), section.retry_delay_max)

    # -- republishing, then acking --------------------------------------------------------

    def _retry(self, message, retries):
        properties = _copy_properties(self._pika, message.properties, {RETRIES_HEADER: retries})
        d = self._publish("", self.section.queue, message.body, properties)
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
        d = self._publish(self.section.dead_letter_exchange, self.dead_letter_key, message.body,
                          properties)
        d.addCallbacks(self._republished, self._republish_failed, (message, "dead_lettered"),
                       None, (message, "dead letter"))
        if message.properties.reply_to is not None:
            body = json.dumps({"result": "Error", "cid": request.cid, "code": error.code,
                               "details": error.message, "errors": error.errors}).encode()
            reply = self._pika.BasicProperties(
                correlation_id=message.properties.correlation_id, content_type="application/json",
                headers={"x-broker-error-code": error.code})
            self._publish("", message.properties.reply_to, body, reply).addErrback(
                self._error_reply_failed)

    def _publish(self, exchange, routing_key, body, properties):
        """Publish on the confirming channel; a Deferred firing once RabbitMQ confirmed it."""
        publisher = self._publisher
        if publisher is None or not publisher.is_open:
            return defer.fail(PublisherClosed(self.publisher_error
                                              or "the publishing channel is closed"))
        try:
            return publisher.basic_publish(exchange, routing_key, body, properties, True)
        except Exception:  # closing: pika refuses to send
            return defer.fail()

    def _republished(self, _frame, message, counter):
        self.counters[counter] += 1
        self._reopen_delay = REOPEN_FIRST  # the publisher works
        self._settle(message, True)

    def _republish_failed(self, failure, message, what):
        """RabbitMQ did not take the copy: requeue the original later, never ack or drop it."""
        self.counters["dead_letter_failed" if what == "dead letter" else "retry_failed"] += 1
        log.error("amqp channel {name}: {what} publish failed ({error}); requeueing the message "
                  "in {delay}s", name=self.key, what=what, error=describe_error(failure.value),
                  delay=self.section.setup_retry)
        self._hold(message, self.section.setup_retry, self._settle, False)

    def _replied(self, _frame, message):
        self.counters["replies"] += 1
        self._reopen_delay = REOPEN_FIRST
        self._settle(message, True)

    def _reply_not_sent(self, failure, message):
        self.counters["reply_failed"] += 1
        if failure.check(self._pika.UnroutableError):
            # The caller's reply queue is gone: the service did its work; no reason to run
            # it again.
            log.warn("amqp channel {name}: reply to {queue} not delivered: no such queue",
                     name=self.key, queue=message.properties.reply_to)
            self._settle(message, True)
            return
        log.error("amqp channel {name}: reply publish failed ({error}); requeueing the message "
                  "in {delay}s", name=self.key, error=describe_error(failure.value),
                  delay=self.section.setup_retry)
        self._hold(message, self.section.setup_retry, self._settle, False)

    def _error_reply_failed(self, failure):
        self.counters["reply_failed"] += 1
        log.warn("amqp channel {name}: error reply not delivered: {error}", name=self.key,
                 error=describe_error(failure.value))

    # -- settling ----------------------------------------------------------------------------

    def _settle(self, message, ack):
        """Ack ``message`` (coalesced) or nack it with requeue (at once): exactly once each."""
        self.in_progress -= 1
        acks = self._acks.get(message.channel)
        if acks is None:  # its channel is gone: RabbitMQ requeued it, it comes again
            self.counters["ack_failed"] += 1
        elif ack:
            acks.ack(message.method.delivery_tag)
        else:
            acks.nack(message.method.delivery_tag)
        if self._drained is not None:
            self._check_drained()

    def _gone(self, message):
        """True (and settled) when ``message``'s channel closed: nothing is republished for it."""
        if message.channel in self._acks:
            return False
        self._settle(message, False)
        return True

    def _hold(self, message, delay, then, *args):
        """Keep ``message`` unacked for ``delay`` seconds, then ``then(message, *args)``.

        Bounded by the prefetch: a held message keeps its slot.  While draining
        (or once its channel is gone) it is requeued at once instead.
        """
        if self._drained is not None or message.channel not in self._acks:
            self._settle(message, False)
            return
        self._held[message] = self._reactor.callLater(delay, self._release, message, then, args)

    def _release(self, message, then, args):
        del self._held[message]
        then(message, *args)

    def _requeue_held(self):
        held, self._held = self._held, {}
        for message, call in held.items():
            call.cancel()
            self._settle(message, False)

    # -- health and metrics ---------------------------------------------------------------

    def health(self):
        publishing = self._publisher is not None
        report = {"ok": bool(self._consumers) and publishing and self.last_error is None,
                  "queue": self.section.queue, "consumers": len(self._consumers),
                  "publisher": "open" if publishing else "closed"}
        error = self.last_error or self.publisher_error
        if error:
            report["last_error"] = error
        return report

    def metrics(self):
        return {**self.counters, "in_progress": self.in_progress, "waiting": len(self._held)}


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
    ctx.health(f"amqp.channel.{section.name}", channel.health)
    ctx.metrics(f"amqp.channel.{section.name}", channel.metrics)
    return channel
