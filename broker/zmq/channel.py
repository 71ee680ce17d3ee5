"""ZeroMQ channels: PULL and SUB (each message invokes a service or feeds a
pub/sub topic) and request/reply over ROUTER (each request gets its answer).

Running a message, mapping and counting errors, ``max_in_flight`` and
draining on stop are :class:`~broker.channels.MessageChannel`'s; here are the
socket, the framing and the replies.  A channel never crashes on what a peer
sends.  At ``max_in_flight`` unfinished invocations the channel stops reading
and ZeroMQ holds messages up to ``rcvhwm`` (then a PUSH peer blocks:
backpressure, nothing lost).
"""

import zmq
from twisted.logger import Logger

from broker.channels import MessageChannel
from broker.errors import BadRequest, error_body
from broker.security.registry import channel_security
from broker.simpleio import encode
from broker.zmq.adapter import open_socket

__all__ = ["PullChannel", "RouterChannel", "SubChannel", "build_pull", "build_router", "build_sub"]

log = Logger()


class ZmqChannel(MessageChannel):
    """What every inbound ZeroMQ channel shares: its socket, bound or connected per its section."""

    socket_type = None
    metrics_key = "zmq.channel"

    def __init__(self, section, ctx):
        super().__init__(section, ctx, topic=section.get("pubsub_topic"),
                         security=channel_security(section, ctx))
        self.setName(f"zmq:{section.name}")  # also the publisher of what it feeds to pub/sub
        self.socket = None

    def socket_options(self):
        s = self.section
        return [(zmq.RCVHWM, s.rcvhwm), (zmq.MAXMSGSIZE, s.max_message_size),
                (zmq.LINGER, int(s.linger * 1000))]

    # -- life cycle ---------------------------------------------------------------

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
        self.reading_paused = False
        self.socket.start()

    def stopService(self):
        """Stop reading, let running invocations finish (replies still go out), close;
        the Deferred fires once ZeroMQ has let go of the socket's addresses."""
        super().stopService()
        if self.socket is None:
            return None
        return self.drain().addCallback(self._close)

    def _close(self, _):
        socket, self.socket = self.socket, None
        released = socket.close(self.section.linger)
        log.info("zmq channel {channel} closed", channel=self.section.name)
        return released

    def pause_reading(self):
        if self.socket is not None:
            self.socket.pause()

    def resume_reading(self):
        self.socket.resume()

    def health(self):
        ok = self.socket is not None and not self.socket.closed
        return {"ok": ok or not self.running, "endpoints": list(self.socket.endpoints) if ok else []}

    # -- one message --------------------------------------------------------------

    def on_message(self, frames):
        raise NotImplementedError

    def credentials(self, frames):
        """``(frames, headers)``: with a security definition, the credentials frame (the one
        before the body) taken out as an ``authorization`` header."""
        if self.info.security is None or len(frames) < 2:
            return frames, {}
        offered = frames[-2].decode("utf-8", "replace").strip()
        if " " not in offered:
            offered = f"Bearer {offered}"
        return frames[:-2] + frames[-1:], {"authorization": offered}

    def topic_of(self, request):
        template = self.topic  # checked in the config: only {topic} is replaced
        return template.format(topic=request.headers.get("topic", "")) if "{" in template else template

    def succeeded(self, result, request, context):
        """One-way: the answer goes nowhere."""

    def failed(self, error, request, context):
        """One-way: counted and logged, nobody to tell."""


def _topic_headers(topic):
    return {"topic": topic.decode("utf-8", "replace")}


class PullChannel(ZmqChannel):
    """PULL: each message (``[body]`` or ``[topic, body]``) invokes the service."""

    socket_type = zmq.PULL
    type = "zmq_pull"

    def on_message(self, frames):
        frames, auth = self.credentials(frames)
        if len(frames) == 1:
            return self.process(self.request(frames[0], auth))
        if len(frames) == 2:
            return self.process(self.request(frames[1], {**_topic_headers(frames[0]), **auth}))
        self.reject(BadRequest(f"expected 1 frame (body) or 2 (topic, body), got {len(frames)}"),
                    self.request(b"", {}))


class SubChannel(ZmqChannel):
    """SUB: subscribed to topic prefixes; each ``[topic, body]`` message invokes the service."""

    socket_type = zmq.SUB
    type = "zmq_sub"

    def socket_options(self):
        return super().socket_options() + [(zmq.SUBSCRIBE, prefix.encode())
                                           for prefix in self.section.subscribe]

    def on_message(self, frames):
        frames, auth = self.credentials(frames)
        if len(frames) == 2:
            return self.process(self.request(frames[1], {**_topic_headers(frames[0]), **auth}))
        self.reject(BadRequest(f"expected 2 frames (topic, body), got {len(frames)}"),
                    self.request(b"", {}))


class RouterChannel(ZmqChannel):
    """Request/reply over ROUTER: REQ and DEALER clients, many at once, each answered.

    A message is ``[identity..., b"", body]`` (REQ, or DEALER with an empty
    delimiter) or ``[identity, body]`` (DEALER without one); the reply (or the
    error reply, in the channel's data format) goes back with the same envelope.
    """

    socket_type = zmq.ROUTER
    type = "zmq_router"

    def __init__(self, section, ctx):
        super().__init__(section, ctx)
        self.counters.update(replies=0, error_replies=0, replies_undeliverable=0)

    def socket_options(self):
        # ROUTER_MANDATORY: a reply we cannot deliver raises instead of vanishing.
        return super().socket_options() + [(zmq.SNDHWM, self.section.sndhwm),
                                           (zmq.ROUTER_MANDATORY, 1)]

    def on_message(self, frames):
        try:
            delimiter = frames.index(b"", 1)
        except ValueError:
            envelope, body = frames[:1], frames[1:]
        else:
            envelope, body = frames[:delimiter + 1], frames[delimiter + 1:]
        body, auth = self.credentials(body)
        if len(body) == 1:
            return self.process(self.request(body[0], auth), envelope, encode=True)
        problem = "empty request" if not body else f"expected 1 body frame, got {len(body)}"
        self.reject(BadRequest(problem), self.request(b"", {}), envelope)

    def succeeded(self, result, request, envelope):
        self.reply(envelope, result.body, "replies")

    def failed(self, error, request, envelope):
        if self.section.data_format == "xml":
            body = {"result": "Error", "cid": request.cid, "code": error.code,
                    "details": error.message}
            self.reply(envelope, encode("xml", body, root="error")[0], "error_replies")
        else:
            self.reply(envelope, error_body(error, request.cid), "error_replies")

    def reply(self, envelope, body, counter):
        """Send ``body`` back along ``envelope``; count it as ``counter`` or as undeliverable."""
        socket = self.socket
        if socket is None or socket.closed:
            self.counters["replies_undeliverable"] += 1
            return
        try:
            socket.send(envelope + [body])
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or full (EAGAIN)
            self.counters["replies_undeliverable"] += 1
            if self.log_budget.allow(self.name):
                log.warn("{channel}: reply not delivered: {error}", channel=self.name,
                         error=exc.strerror)
            return
        self.counters[counter] += 1


def build_pull(section, ctx):
    return PullChannel(section, ctx)


def build_sub(section, ctx):
    return SubChannel(section, ctx)


def build_router(section, ctx):
    return RouterChannel(section, ctx)
