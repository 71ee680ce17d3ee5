"""The ``amqp`` channel: a RabbitMQ queue consumed into a service (or a pub/sub topic).

A :class:`~broker.channels.MessageChannel`: each message becomes a request
(message properties and headers in ``request.headers``), runs and is counted
there; this module adds consuming, and settling each message on RabbitMQ only
**after** its service succeeded (at-least-once: a message whose ack was lost
comes again, ``redelivered``):

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
acked; the message is in flight until then.  If it cannot be (the publisher
is closed, RabbitMQ nacked it or closed the channel), the original is nacked
with requeue after ``setup_retry``, never acked or dropped.  A publisher
closed by RabbitMQ (a channel error) is reopened with backoff; health is not
ok while it is down.  Acks and nacks go through
:class:`~broker.amqp.acks.DeliveryAcks`, one per consumer channel.

The channel uses its connection only while it runs: started, it sets up on
the connection (at once if it is up, else on each connect); stopped, it
cancels its consumers, drains, closes its AMQP channels and leaves.
"""

import json

from twisted.internet import defer, task
from twisted.logger import Logger

from broker.amqp.acks import DeliveryAcks
from broker.amqp.connection import describe_error
from broker.channels import MessageChannel
from broker.security.registry import channel_security

__all__ = ["AMQPChannel", "PublisherClosed", "RETRIES_HEADER", "build_amqp_channel"]

log = Logger()

RETRIES_HEADER = "x-broker-retries"
REOPEN_FIRST = 0.1  # seconds before reopening a closed publisher; doubles up to setup_retry

_PROPERTIES = (("content_type", "content-type"), ("content_encoding", "content-encoding"),
               ("correlation_id", "correlation-id"), ("message_id", "message-id"),
               ("reply_to", "reply-to"), ("type", "type"), ("app_id", "app-id"),
               ("user_id", "user-id"), ("timestamp", "timestamp"), ("priority", "priority"),
               ("expiration", "expiration"))

#: For each kind of copy: the counter when RabbitMQ took it, and when it did not.
_COPIES = {"retry": ("retried", "retry_failed"), "reply": ("replies", "reply_failed"),
           "dead letter": ("dead_lettered", "dead_letter_failed")}


class PublisherClosed(Exception):
    """The channel's publishing channel is closed (being reopened): nothing can be republished."""


class AMQPChannel(MessageChannel):
    """Consumers of one queue, each on its own AMQP channel, plus one confirming publisher."""

    type = "amqp"
    metrics_key = "amqp.channel"

    def __init__(self, section, ctx, connection):
        super().__init__(section, ctx, topic=section.topic, extra={"queue": section.queue},
                         security=channel_security(section, ctx))
        self.connection = connection
        self._pika = None
        self._publisher = None
        self._consumers = []
        self._acks = {}          # consumer channel -> its DeliveryAcks
        self._tags = {}          # consumer channel -> consumer tag
        self._held = {}          # message -> the wait before its retry or requeue (unacked)
        self._draining = False
        self._setup_call = None
        self._reopen_call = None
        self._reopen_delay = REOPEN_FIRST
        self._generation = 0     # counts resets, so a late set-up or reopen knows it is stale
        self.dead_letter_key = section.dead_letter_routing_key or f"{section.queue}.dead"
        self.last_error = None
        self.publisher_error = None
        self.counters.update(acked=0, redelivered=0, retried=0, retry_failed=0, dead_lettered=0,
                             dead_letter_failed=0, replies=0, reply_failed=0, requeued=0,
                             ack_failed=0, publisher_closed=0, rate_limit_requeued=0)

    # -- life cycle -----------------------------------------------------------------------

    def startService(self):
        super().startService()
        self._draining = self.reading_paused = False
        self.connection.add_user(self)  # set up at once if it is connected

    def stopService(self):
        """Drain (at most the connection's ``drain_timeout``), then close this channel's AMQP
        channels (RabbitMQ requeues what is still unacked) and leave the connection."""
        super().stopService()
        for call in (self._setup_call, self._reopen_call):
            if call is not None and call.active():
                call.cancel()
        timeout = self.connection.section.drain_timeout
        drained = self.amqp_drain().addTimeout(timeout, self.reactor, onTimeoutCancel=lambda *_: (
            log.warn("{channel}: messages still in flight after {timeout}s; stopping (they "
                     "come again)", channel=self.name, timeout=timeout)))
        return drained.addBoth(self._stopped)

    def _stopped(self, _):
        self.connection.remove_user(self)
        self._reset()

    def amqp_drain(self):
        """Stop consuming; a Deferred firing once every message taken is settled and its ack
        sent.  Messages waiting for their retry (or requeue) are requeued at once."""
        self._draining = True
        self._requeue_held()
        return self.drain().addCallback(self._flush_acks)

    def pause_reading(self):
        """Cancel the consumers (on drain): RabbitMQ delivers nothing more."""
        for channel, tag in self._tags.items():
            try:
                self._pika.cancel(channel, tag)
            except Exception:
                pass
        self._tags = {}

    def _flush_acks(self, _):
        for acks in self._acks.values():
            acks.flush()

    # -- setting up on each connection ------------------------------------------------

    @defer.inlineCallbacks
    def amqp_connected(self, protocol):
        self._setup_call = None
        from broker.amqp import _pika
        self._pika = _pika
        section, generation = self.section, self._generation
        try:
            publisher = yield self._open_publisher(protocol)
            if self._stale(protocol, generation, publisher):
                return
            self._use_publisher(publisher, protocol)
            for _ in range(section.consumers):
                channel = yield protocol.channel()
                if self._stale(protocol, generation, channel):
                    return
                self._consumers.append(channel)
                self._acks[channel] = DeliveryAcks(channel, self.counters, self.reactor)
                channel.on_closed.addBoth(self._channel_closed, channel, protocol)
                yield channel.basic_qos(prefetch_count=section.prefetch)
                tag = yield _pika.consume(channel, section.queue, self._on_message,
                                          lambda: self._cancelled(protocol))
                if self._stale(protocol, generation):
                    if channel in self._acks:  # stopping: what it took drains
                        _pika.cancel(channel, tag)
                    return
                self._tags[channel] = tag
        except Exception as exc:
            if not self._stale(protocol, generation):
                self._start_over(protocol, f"cannot consume from queue {section.queue}: {exc}")
            return
        self.last_error = None
        log.info("{channel}: consuming {queue} into {target} ({consumers} consumers, prefetch "
                 "{prefetch})", channel=self.name, queue=section.queue,
                 target=section.service or f"topic {section.topic}", consumers=section.consumers,
                 prefetch=section.prefetch)

    def _current(self, protocol):
        """Still running on ``protocol``, and it is open."""
        return self.running and protocol.is_open and self.connection.protocol is protocol

    def _stale(self, protocol, generation, opened=None):
        """Whether a set-up must stop (reset or stopped meanwhile); ``opened`` is closed then."""
        if generation == self._generation and self._current(protocol):
            return False
        if opened is not None and opened.is_open:
            opened.close()
        return True

    def _start_over(self, protocol, error):
        """Consuming failed (the queue is missing or was deleted, a consumer channel closed):
        drop every AMQP channel and set up again after ``setup_retry``."""
        if not self._current(protocol):
            return
        self.last_error = error
        log.warn("{channel}: {error}; setting up again in {delay}s", channel=self.name,
                 error=error, delay=self.section.setup_retry)
        self._reset()
        self._setup_call = self.reactor.callLater(self.section.setup_retry, self.amqp_connected,
                                                  protocol)

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

    def _cancelled(self, protocol):
        self._start_over(protocol, f"RabbitMQ cancelled the consumer of queue {self.section.queue}")

    def _channel_closed(self, reason, channel, protocol):
        if channel in self._consumers:  # the queue was deleted, RabbitMQ cancelled us...
            self._start_over(protocol, f"consumer channel closed: {reason}")

    def amqp_lost(self, reason):
        self._reset()
        if self._setup_call is not None and self._setup_call.active():
            self._setup_call.cancel()
        self._setup_call = None

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
        log.warn("{channel}: {error}", channel=self.name, error=self.publisher_error)
        self._reopen_call = self.reactor.callLater(delay, self._reopen, protocol, self._generation)

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
        if not self._stale(protocol, generation, publisher):
            self._use_publisher(publisher, protocol)
            log.info("{channel}: publishing channel reopened", channel=self.name)

    # -- one message: MessageChannel runs it, then succeeded() or failed() -----------------

    def _on_message(self, message):
        try:
            method, properties = message.method, message.properties
            acks = self._acks.get(message.channel)
            if acks is not None:
                acks.started(method.delivery_tag)  # first: nothing is acked past it from now on
            if method.redelivered:
                self.counters["redelivered"] += 1
            request = self.request(message.body, _headers(method, properties),
                                   properties.correlation_id or properties.message_id,
                                   properties.content_type or "")
            self.process(request, message, properties.reply_to is not None)
        except Exception:
            log.failure("{channel}: taking a message failed", channel=self.name)

    def succeeded(self, result, request, message):
        """Ack; for RPC, publish the reply first."""
        reply_to = message.properties.reply_to
        if reply_to is None or self.topic is not None:
            self._settle_delivery(message, True)
            return None
        if self._gone(message):
            return None
        properties = self._pika.BasicProperties(
            correlation_id=message.properties.correlation_id, content_type=result.content_type,
            headers={"x-broker-cid": request.cid})
        return self._republish(message, "", reply_to, result.body, properties, "reply")

    def failed(self, error, request, message):
        """A client error is dead-lettered at once; a service error retried, then dead-lettered."""
        if self._gone(message):
            return None
        retries = (message.properties.headers or {}).get(RETRIES_HEADER, 0)
        retries = retries if isinstance(retries, int) and retries > 0 else 0
        if error.status == 429 and self.section.on_rate_limit == "requeue":
            self.counters["rate_limit_requeued"] += 1
            delay = float(error.headers.get("Retry-After", 1))
            return self._hold(message, delay, self._retry, retries)
        if error.status >= 500:
            if retries < self.section.max_retries:
                delay = self.retry_delay(retries + 1)
                if delay > 0:
                    return self._hold(message, delay, self._retry, retries + 1)
                return self._retry(message, retries + 1)
            log.warn("{channel}: dead-lettering a message after {retries} retries (cid {cid}): "
                     "{error}", channel=self.name, retries=retries, cid=request.cid,
                     error=error.message)
        return self._dead_letter(message, error, request, retries)

    def retry_delay(self, retry):
        """Seconds to wait before retry number ``retry`` (1, 2...): ``retry_delay`` doubling
        per retry, at most ``retry_delay_max``."""
        section = self.section
        return min(section.retry_delay * 2 ** min(retry - 1, 32), section.retry_delay_max)

    # -- republishing, then acking --------------------------------------------------------

    def _retry(self, message, retries):
        properties = _copy_properties(self._pika, message.properties, {RETRIES_HEADER: retries})
        return self._republish(message, "", self.section.queue, message.body, properties, "retry")

    def _dead_letter(self, message, error, request, retries):
        section = self.section
        extra = {"x-broker-error-code": error.code, "x-broker-error": error.message,
                 "x-broker-channel": section.name, "x-broker-queue": section.queue,
                 RETRIES_HEADER: retries, "x-broker-cid": request.cid}
        if error.errors:
            extra["x-broker-errors"] = json.dumps(error.errors)
        if section.service:
            extra["x-broker-service"] = section.service
        properties = _copy_properties(self._pika, message.properties, extra)
        settled = self._republish(message, section.dead_letter_exchange, self.dead_letter_key,
                                  message.body, properties, "dead letter")
        if message.properties.reply_to is not None:
            body = json.dumps({"result": "Error", "cid": request.cid, "code": error.code,
                               "details": error.message, "errors": error.errors}).encode()
            reply = self._pika.BasicProperties(
                correlation_id=message.properties.correlation_id, content_type="application/json",
                headers={"x-broker-error-code": error.code})
            self._send("", message.properties.reply_to, body, reply).addErrback(
                self._error_reply_failed)
        return settled

    def _republish(self, message, exchange, routing_key, body, properties, copy):
        """Publish a ``copy`` of ``message``, then settle it; a Deferred firing once settled."""
        d = self._send(exchange, routing_key, body, properties)
        return d.addCallbacks(self._republished, self._republish_failed, (message, copy), None,
                              (message, copy))

    def _send(self, exchange, routing_key, body, properties):
        """Publish on the confirming channel; a Deferred firing once RabbitMQ confirmed it."""
        publisher = self._publisher
        if publisher is None or not publisher.is_open:
            return defer.fail(PublisherClosed(self.publisher_error
                                              or "the publishing channel is closed"))
        try:
            return publisher.basic_publish(exchange, routing_key, body, properties, True)
        except Exception:  # closing: pika refuses to send
            return defer.fail()

    def _republished(self, _frame, message, copy):
        self.counters[_COPIES[copy][0]] += 1
        self._reopen_delay = REOPEN_FIRST  # the publisher works
        self._settle_delivery(message, True)

    def _republish_failed(self, failure, message, copy):
        """RabbitMQ did not take the copy: requeue the original later, never ack or drop it."""
        self.counters[_COPIES[copy][1]] += 1
        if copy == "reply" and failure.check(self._pika.UnroutableError):
            # The caller's reply queue is gone: the service did its work; no reason to run it
            # again.
            log.warn("{channel}: reply to {queue} not delivered: no such queue",
                     channel=self.name, queue=message.properties.reply_to)
            self._settle_delivery(message, True)
            return None
        log.error("{channel}: {copy} publish failed ({error}); requeueing the message in {delay}s",
                  channel=self.name, copy=copy, error=describe_error(failure.value),
                  delay=self.section.setup_retry)
        return self._hold(message, self.section.setup_retry, self._settle_delivery, False)

    def _error_reply_failed(self, failure):
        self.counters["reply_failed"] += 1
        log.warn("{channel}: error reply not delivered: {error}", channel=self.name,
                 error=describe_error(failure.value))

    # -- settling ----------------------------------------------------------------------------

    def _settle_delivery(self, message, ack):
        """Ack ``message`` (coalesced) or nack it with requeue (at once): exactly once each."""
        acks = self._acks.get(message.channel)
        if acks is None:  # its channel is gone: RabbitMQ requeued it, it comes again
            self.counters["ack_failed"] += 1
        elif ack:
            acks.ack(message.method.delivery_tag)
        else:
            acks.nack(message.method.delivery_tag)

    def _gone(self, message):
        """True (and settled) when ``message``'s channel closed: nothing is republished for it."""
        if message.channel in self._acks:
            return False
        self._settle_delivery(message, False)
        return True

    def _hold(self, message, delay, then, *args):
        """Keep ``message`` unacked for ``delay`` seconds, then ``then(message, *args)``; a
        Deferred firing once it is settled.

        Bounded by the prefetch: a held message keeps its slot.  While draining
        (or once its channel is gone) it is requeued at once instead.
        """
        if self._draining or message.channel not in self._acks:
            self._settle_delivery(message, False)
            return None
        wait = self._held[message] = task.deferLater(self.reactor, delay, self._release, message)
        return wait.addCallbacks(lambda _: then(message, *args),
                                 lambda _: self._settle_delivery(message, False))  # requeued early

    def _release(self, message):
        del self._held[message]

    def _requeue_held(self):
        held, self._held = self._held, {}
        for wait in held.values():
            wait.cancel()

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
        return {**super().metrics(), "waiting": len(self._held)}


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
    return AMQPChannel(section, ctx, ctx.connection(section, "connection", "amqp"))
