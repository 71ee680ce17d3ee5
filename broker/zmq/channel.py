"""ZeroMQ channels: PULL and SUB (each message invokes a service or feeds a
pub/sub topic) and request/reply over ROUTER (each request gets its answer).

A message becomes a neutral :class:`~broker.services.context.Request`; the
invoker's typed errors are mapped here once: counted, logged (rate-limited)
and, on request/reply, answered with an error reply.  A channel never
crashes on what a peer sends.  At most ``max_in_flight`` invocations run at
once; beyond that the channel stops reading and ZeroMQ holds messages up to
``rcvhwm`` (then a PUSH peer blocks: backpressure, nothing lost).
"""

import zmq
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.zmq.adapter import LogBudget, open_socket
from broker.errors import BadRequest, BrokerError, Timeout, error_body
from broker.ids import new_cid
from broker.services.context import ChannelInfo, Request
from broker.simpleio import decode, encode

__all__ = ["PullChannel", "RouterChannel", "SubChannel", "build_pull", "build_router", "build_sub"]

log = Logger()


class ZmqChannel(Service):
    """What every inbound ZeroMQ channel shares: socket, flow control, counters.

    :param section: the checked channel section.
    :param ctx: the :class:`~broker.components.BuildContext`.
    """

    socket_type = None
    kind = None

    def __init__(self, section, ctx):
        self.section = section
        self.setName(f"zmq:{section.name}")
        self.reactor = ctx.reactor
        self.invoker = ctx.invoker
        self.resources = ctx.resources
        self.channel = ChannelInfo(section.name, self.kind, section.data_format)
        self.service = section.get("service")
        self.pubsub_topic = section.get("pubsub_topic")
        self.socket = None
        self.in_flight = 0
        self._drained = None
        self._log_budget = LogBudget(ctx.reactor)
        self.counters = {"received": 0, "invoked": 0, "bad_input": 0, "service_errors": 0,
                         "timeouts": 0, "paused": 0, "in_flight": 0}
        if self.pubsub_topic is not None:
            self.counters.update(published=0, publish_errors=0)
        ctx.metrics(f"zmq.channel.{section.name}", self.metrics)
        ctx.health(f"zmq.channel.{section.name}", self.health)

    # -- life cycle ---------------------------------------------------------------

    def socket_options(self):
        s = self.section
        return [(zmq.RCVHWM, s.rcvhwm), (zmq.MAXMSGSIZE, s.max_message_size),
                (zmq.LINGER, int(s.linger * 1000))]

    def privilegedStartService(self):
        """Bind (and connect) now, so an address in use stops startup with one line."""
        super().privilegedStartService()
        if self.socket is None:
            self.socket = open_socket(
                self.reactor, self.socket_type, self.socket_options(), self.section,
                f"zmq channel {self.section.name}", on_message=self.on_message,
                batch=self.section.batch)

    def startService(self):
        self.privilegedStartService()
        super().startService()
        self.socket.start()

    def stopService(self):
        """Stop reading, let running invocations finish (replies still go out), close."""
        super().stopService()
        if self.socket is None:
            return None
        self.socket.pause()
        if self.in_flight:
            self._drained = defer.Deferred()
            return self._drained.addCallback(lambda _: self._close())
        self._close()
        return None

    def _close(self):
        socket, self.socket = self.socket, None
        socket.close(self.section.linger)
        log.info("zmq channel {channel} closed", channel=self.section.name)

    def metrics(self):
        self.counters["in_flight"] = self.in_flight
        return self.counters

    def health(self):
        ok = self.socket is not None and not self.socket.closed
        return {"ok": ok or not self.running, "endpoints": list(self.socket.endpoints) if ok else []}

    # -- one message --------------------------------------------------------------

    def on_message(self, frames):
        raise NotImplementedError

    def dispatch(self, body, headers, cid, answer=None):
        """Invoke the service (or publish) with one message body; ``answer(bytes)`` replies."""
        self.counters["received"] += 1
        if self.pubsub_topic is not None:
            return self._publish(body, headers, cid)
        request = Request.from_channel(body, headers, {}, {}, None, None, self.channel, cid, None, "")
        invoker = self.invoker
        try:
            if answer is None:
                # One-way (PULL, SUB): decode here and run without encoding an answer nobody
                # reads -- Invoker.run is there for channels that decode themselves.  ZeroMQ
                # channels have no security definition, so nothing is skipped but the encoding.
                request.payload = decode(self.channel.data_format, body)
                result = invoker.invoke(self.service, request, False)
            else:
                result = invoker.invoke(self.service, request)
        except BrokerError as error:
            return self.failed(error, cid, answer)
        except Exception:
            log.failure("zmq channel {channel}: unexpected failure (cid {cid})",
                        channel=self.section.name, cid=cid)
            return self.failed(BrokerError(), cid, answer)
        if isinstance(result, defer.Deferred):
            self._track(result.addCallbacks(self._succeeded, self._async_failed,
                                            (answer,), None, (cid, answer)))
        else:
            self._succeeded(result, answer)

    def _succeeded(self, response, answer):
        self.counters["invoked"] += 1
        if answer is not None:
            answer(response.body)

    def _async_failed(self, failure, cid, answer):
        if failure.check(BrokerError):
            return self.failed(failure.value, cid, answer)
        log.failure("zmq channel {channel}: unexpected failure (cid {cid})", failure,
                    channel=self.section.name, cid=cid)
        return self.failed(BrokerError(), cid, answer)

    def failed(self, error, cid, answer=None):
        """Count, log and (on request/reply) answer one failed message."""
        if isinstance(error, Timeout):
            self.counters["timeouts"] += 1
        if error.status < 500:
            self.counters["bad_input"] += 1
            if self._log_budget.allow(self.section.name):
                log.warn("zmq channel {channel}: bad input (cid {cid}): {error}",
                         channel=self.section.name, cid=cid, error=error.message)
        else:
            self.counters["service_errors"] += 1
        if answer is not None:
            answer(self.error_reply(error, cid))

    def error_reply(self, error, cid):
        if self.section.data_format == "xml":
            body = {"result": "Error", "cid": cid, "code": error.code, "details": error.message}
            return encode("xml", body, root="error")[0]
        return error_body(error, cid)

    def _publish(self, body, headers, cid):
        try:
            payload = decode(self.section.data_format, body)
        except BadRequest as error:
            return self.failed(error, cid)
        template = self.pubsub_topic  # checked in the config: only {topic} is replaced
        topic = template.format(topic=headers.get("topic", "")) if "{" in template else template
        published = defer.maybeDeferred(self.resources.publish, topic, payload,
                                        publisher=f"zmq:{self.section.name}")
        self._track(published.addCallbacks(self._published, self._publish_failed, None, None,
                                           (topic, cid)))

    def _published(self, _msg_id):
        self.counters["published"] += 1

    def _publish_failed(self, failure, topic, cid):
        self.counters["publish_errors"] += 1
        if self._log_budget.allow(self.section.name):
            log.warn("zmq channel {channel}: publishing to {topic} failed (cid {cid}): {error}",
                     channel=self.section.name, topic=topic, cid=cid,
                     error=failure.getErrorMessage())

    # -- flow control ---------------------------------------------------------------

    def _track(self, d):
        """Count an unfinished invocation; stop reading at ``max_in_flight``."""
        if d.called:
            return
        self.in_flight += 1
        if self.in_flight >= self.section.max_in_flight and self.socket is not None:
            if not self.socket.paused:
                self.counters["paused"] += 1
            self.socket.pause()
        d.addBoth(self._finished)

    def _finished(self, _):
        self.in_flight -= 1
        if self._drained is not None:
            if not self.in_flight:
                drained, self._drained = self._drained, None
                drained.callback(None)
        elif self.socket is not None and self.in_flight < self.section.max_in_flight:
            self.socket.resume()


def _topic_headers(topic):
    return {"topic": topic.decode("utf-8", "replace")}


class PullChannel(ZmqChannel):
    """PULL: each message (``[body]`` or ``[topic, body]``) invokes the service."""

    socket_type = zmq.PULL
    kind = "zmq_pull"

    def on_message(self, frames):
        cid = new_cid()
        if len(frames) == 1:
            return self.dispatch(frames[0], {}, cid)
        if len(frames) == 2:
            return self.dispatch(frames[1], _topic_headers(frames[0]), cid)
        self.counters["received"] += 1
        self.failed(BadRequest(f"expected 1 frame (body) or 2 (topic, body), got {len(frames)}"),
                    cid)


class SubChannel(ZmqChannel):
    """SUB: subscribed to topic prefixes; each ``[topic, body]`` message invokes the service."""

    socket_type = zmq.SUB
    kind = "zmq_sub"

    def socket_options(self):
        return super().socket_options() + [(zmq.SUBSCRIBE, prefix.encode())
                                           for prefix in self.section.subscribe]

    def on_message(self, frames):
        cid = new_cid()
        if len(frames) == 2:
            return self.dispatch(frames[1], _topic_headers(frames[0]), cid)
        self.counters["received"] += 1
        self.failed(BadRequest(f"expected 2 frames (topic, body), got {len(frames)}"), cid)


class RouterChannel(ZmqChannel):
    """Request/reply over ROUTER: REQ and DEALER clients, many at once, each answered.

    A message is ``[identity..., b"", body]`` (REQ, or DEALER with an empty
    delimiter) or ``[identity, body]`` (DEALER without one); the reply goes
    back with the same envelope.
    """

    socket_type = zmq.ROUTER
    kind = "zmq_router"

    def __init__(self, section, ctx):
        super().__init__(section, ctx)
        self.counters.update(replies=0, error_replies=0, replies_undeliverable=0)

    def socket_options(self):
        # ROUTER_MANDATORY: a reply we cannot deliver raises instead of vanishing.
        return super().socket_options() + [(zmq.SNDHWM, self.section.sndhwm),
                                           (zmq.ROUTER_MANDATORY, 1)]

    def on_message(self, frames):
        cid = new_cid()
        try:
            delimiter = frames.index(b"", 1)
        except ValueError:
            envelope, body = frames[:1], frames[1:]
        else:
            envelope, body = frames[:delimiter + 1], frames[delimiter + 1:]
        answer = _Answer(self, envelope)
        if len(body) != 1:
            self.counters["received"] += 1
            problem = "empty request" if not body else f"expected 1 body frame, got {len(body)}"
            return self.failed(BadRequest(problem), cid, answer)
        self.dispatch(body[0], {}, cid, answer)

    def failed(self, error, cid, answer=None):
        if answer is not None:
            answer.error = True
        super().failed(error, cid, answer)

    def reply(self, envelope, body, error):
        socket = self.socket
        if socket is None or socket.closed:
            self.counters["replies_undeliverable"] += 1
            return
        try:
            socket.send(envelope + [body])
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or full (EAGAIN)
            self.counters["replies_undeliverable"] += 1
            if self._log_budget.allow(self.section.name):
                log.warn("zmq channel {channel}: reply not delivered: {error}",
                         channel=self.section.name, error=exc.strerror)
            return
        self.counters["error_replies" if error else "replies"] += 1


class _Answer:
    """Sends one reply back along its envelope."""

    __slots__ = ("channel", "envelope", "error")

    def __init__(self, channel, envelope):
        self.channel, self.envelope, self.error = channel, envelope, False

    def __call__(self, body):
        self.channel.reply(self.envelope, body, self.error)


def build_pull(section, ctx):
    return PullChannel(section, ctx)


def build_sub(section, ctx):
    return SubChannel(section, ctx)


def build_router(section, ctx):
    return RouterChannel(section, ctx)
