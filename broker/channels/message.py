"""What every message transport's inbound channel shares.

A message channel (AMQP, ZeroMQ, WebSocket invoke, loopback) receives
messages from its transport, builds a request with :meth:`MessageChannel.request`
and hands it to :meth:`MessageChannel.process`, which

* checks the size and authenticates (the channel's security definition),
* runs the service through the invoker (which decodes and validates), or
  decodes the body and publishes it to a pub/sub topic instead,
* maps every failure to a typed :class:`~broker.errors.BrokerError`
  (anything else is a logged :class:`~broker.errors.ServiceError`), counts it
  and logs bad input at a bounded rate,
* settles: calls the subclass's :meth:`~MessageChannel.succeeded` or
  :meth:`~MessageChannel.failed` exactly once (ack, reply, dead-letter...),
* counts messages in flight until they are settled, pauses reading at
  ``max_in_flight`` and lets :meth:`~MessageChannel.stopService` drain them,
* reports health and metrics under ``<metrics_key>.<name>``.

A subclass implements receiving, :meth:`succeeded`, :meth:`failed` and, if
it reads at its own pace, :meth:`pause_reading` / :meth:`resume_reading`.
"""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.errors import BrokerError, PayloadTooLarge, ServiceError, Timeout
from broker.ids import new_cid
from broker.services.context import ChannelInfo, Request, Response
from broker.simpleio import decode

__all__ = ["LogBudget", "MessageChannel"]

log = Logger()


class LogBudget:
    """At most ``per_second`` warnings a second (peers can flood us); the rest are summed up."""

    def __init__(self, clock, per_second=10):
        self._clock, self._per_second = clock, per_second
        self._window, self._used, self._suppressed = None, 0, 0

    def allow(self, channel):
        now = int(self._clock.seconds())
        if now != self._window:
            if self._suppressed:
                log.warn("{channel}: {count} more such lines not logged",
                         channel=channel, count=self._suppressed)
            self._window, self._used, self._suppressed = now, 0, 0
        if self._used < self._per_second:
            self._used += 1
            return True
        self._suppressed += 1
        return False


class MessageChannel(Service):
    """The shared steps of a message channel; a subclass adds its transport.

    :param section: the checked channel section (``name``, ``data_format``, and
        ``service`` or a topic, maybe ``max_message_size`` and ``max_in_flight``).
    :param ctx: the :class:`~broker.components.BuildContext`.
    :param topic: a topic to publish each message to instead of invoking a
        service (a template is resolved by :meth:`topic_of`).
    :param security: the security definition messages must pass, or None.
    :param extra: transport facts for :class:`~broker.services.context.ChannelInfo`.

    The service name (``<type>:<name>`` unless a subclass sets another) names the
    channel in log lines and as the publisher of what it feeds to pub/sub.

    :cvar type: the channel type (``ChannelInfo.type``).
    :cvar metrics_key: the prefix of its health and metrics (``amqp.channel``).
    """

    type = None
    metrics_key = None

    def __init__(self, section, ctx, *, topic=None, security=None, extra=None):
        self.section = section
        self.setName(f"{self.type}:{section.name}")
        self.info = ChannelInfo(section.name, self.type, section.data_format, security, extra)
        self.service = section.get("service")
        self.topic = topic
        self.invoker = ctx.invoker
        self.resources = ctx.resources
        self.reactor = ctx.reactor
        self.max_message_size = section.get("max_message_size")
        self.max_in_flight = section.get("max_in_flight")
        self.in_flight = 0
        self.reading_paused = False
        self.log_budget = LogBudget(ctx.reactor)
        self._drained = None   # while draining: the Deferreds waiting for it
        self.counters = {"received": 0, "succeeded": 0, "client_errors": 0, "service_errors": 0,
                         "timeouts": 0, "paused": 0, "rate_limited": 0}
        if topic is not None:
            self.counters.update(published=0, publish_errors=0)
        key = f"{self.metrics_key}.{section.name}"
        ctx.health(key, self.health)
        ctx.metrics(key, self.metrics)

    # -- the transport's side -----------------------------------------------------------

    def request(self, body, headers, cid=None, content_type="", peer=None):
        """A neutral request for one message (``cid``: the message's own, else a new one)."""
        return Request.from_channel(body, headers, {}, {}, None, None, self.info,
                                    cid or new_cid(), peer, content_type)

    def succeeded(self, result, request, context):
        """Settle a message whose service answered (``result``: a
        :class:`~broker.services.context.Response`) or whose topic took it
        (``result``: the message id).  May return a Deferred: the message is in
        flight until it fires."""
        raise NotImplementedError

    def failed(self, error, request, context):
        """Settle a message that failed with ``error`` (a :class:`~broker.errors.BrokerError`;
        ``error.status < 500`` is the sender's fault).  May return a Deferred."""
        raise NotImplementedError

    def pause_reading(self):
        """Stop taking messages from the transport (``max_in_flight`` reached)."""

    def resume_reading(self):
        """Take messages again."""

    def topic_of(self, request):
        """The topic a message is published to (when the channel feeds a topic)."""
        return self.topic

    # -- one message ------------------------------------------------------------------------

    def process(self, request, context=None, encode=False, service=None):
        """Run one message and settle it; ``context`` goes to the settling methods.

        :param encode: whether the service's answer is wanted encoded
            (``response.body``), e.g. for a reply.
        :param service: the service to run when messages name their own (WebSocket
            ``invoke``); default: the channel's ``service``.
        """
        self.counters["received"] += 1
        self.in_flight += 1
        try:
            body = request.raw_request
            if self.max_message_size is not None and len(body) > self.max_message_size:
                raise PayloadTooLarge(f"Message of {len(body)} bytes is over the channel's "
                                      f"max_message_size of {self.max_message_size}")
            if self.topic is not None:
                result = self._publish(request)
            else:
                result = self.invoker.invoke(service or self.service, request, encode)
        except BrokerError as error:
            return self._failed(error, request, context)
        except Exception:
            log.failure("{channel}: message failed (cid {cid})", channel=self.name, cid=request.cid)
            return self._failed(ServiceError(), request, context)
        # Deferred is an ABC (Awaitable): a synchronous answer passes an identity check
        if result.__class__ is not Response and isinstance(result, defer.Deferred):
            if self.max_in_flight is not None and self.in_flight >= self.max_in_flight \
                    and not self.reading_paused:
                self.reading_paused = True
                self.counters["paused"] += 1
                self.pause_reading()
            result.addCallbacks(self._succeeded, self._failed_async, (request, context), None,
                                (request, context))
        else:
            self._succeeded(result, request, context)

    def reject(self, error, request, context=None):
        """Settle a message the transport could not even read (bad framing, say) as
        failed with ``error``, counted and logged like any other failure."""
        self.counters["received"] += 1
        self.in_flight += 1
        self._failed(error, request, context)

    def _publish(self, request):
        topic = self.topic_of(request)
        if self.info.security is not None:
            request.caller = self.info.security.authenticate(request)
            if self.resources.rbac is not None and request.caller is not None:
                self.resources.rbac.check(request.caller, "publish", topic, request.cid)
        payload = decode(self.info.data_format, request.raw_request, request.content_type)
        return defer.maybeDeferred(self.resources.publish, topic, payload, publisher=self.name)

    def _succeeded(self, result, request, context):
        if self.topic is not None:
            self.counters["published"] += 1
        self.counters["succeeded"] += 1
        self._settle(self.succeeded, result, request, context)

    def _failed_async(self, failure, request, context):
        if failure.check(BrokerError):
            return self._failed(failure.value, request, context)
        log.failure("{channel}: message failed (cid {cid})", failure, channel=self.name,
                    cid=request.cid)
        return self._failed(ServiceError(), request, context)

    def _failed(self, error, request, context):
        counters = self.counters
        if self.topic is not None:
            counters["publish_errors"] += 1
        if isinstance(error, Timeout):
            counters["timeouts"] += 1
        elif error.status == 429:  # over a rate limit: dropped (or the transport's equivalent)
            counters["rate_limited"] += 1
        if error.status < 500:
            counters["client_errors"] += 1
            if self.log_budget.allow(self.name):
                log.info("{channel}: bad message (cid {cid}): {error}", channel=self.name,
                         cid=request.cid, error=error.message)
        else:
            counters["service_errors"] += 1
        self._settle(self.failed, error, request, context)

    def _settle(self, method, outcome, request, context):
        try:
            done = method(outcome, request, context)
        except Exception:
            log.failure("{channel}: settling a message failed (cid {cid})", channel=self.name,
                        cid=request.cid)
            done = None
        if done is not None and isinstance(done, defer.Deferred):  # (an ABC: slow to check)
            done.addErrback(self._settle_failed, request).addBoth(self._settled)
        else:
            self._settled(None)

    def _settle_failed(self, failure, request):
        log.failure("{channel}: settling a message failed (cid {cid})", failure,
                    channel=self.name, cid=request.cid)

    def _settled(self, _):
        self.in_flight -= 1
        if self.reading_paused and (self.max_in_flight is None
                                    or self.in_flight < self.max_in_flight):
            if self._drained is None:
                self.reading_paused = False
                self.resume_reading()
        if self._drained is not None and not self.in_flight:
            drained, self._drained = self._drained, None
            for waiting in drained:
                waiting.callback(None)

    # -- life cycle, health, metrics --------------------------------------------------------

    def drain(self):
        """A Deferred firing once every message taken is settled (reading stays paused);
        each caller gets its own."""
        if not self.reading_paused:
            self.reading_paused = True
            self.pause_reading()
        if not self.in_flight:
            return defer.succeed(None)
        if self._drained is None:
            self._drained = []
        self._drained.append(defer.Deferred())
        return self._drained[-1]

    def health(self):
        return {"ok": True}

    def metrics(self):
        return {**self.counters, "in_flight": self.in_flight}
