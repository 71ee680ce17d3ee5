"""Config schemas of the ZeroMQ channel and outgoing types.

Every socket states its high-water marks, linger and message size on
purpose (defaults shown in ``etc/examples/zmq.yaml``); see ``docs/zmq.md``.
"""

import re

from broker.config.schema import Choice, Duration, Field, Int, ListOf, Name, Schema, Size, Str, Type
from broker.security.registry import MESSAGE_GUARD_FIELDS

__all__ = ["ZMQ_PULL", "ZMQ_PUB_OUT", "ZMQ_PUSH_OUT", "ZMQ_ROUTER", "ZMQ_SUB", "Addresses"]

#: Data formats a ZeroMQ socket carries (no HTTP-only ones such as form or SOAP).
ZMQ_FORMATS = ("json", "xml", "raw")

_ADDRESS = re.compile(r"^(?:tcp://[^\s/]+:(?:\d{1,5}|\*)|ipc://\S+|inproc://\S+)$")


class Addresses(Type):
    """One ZeroMQ address or a list of them: ``tcp://127.0.0.1:17031``, ``tcp://*:*``,
    ``ipc:///run/x.sock``, ``inproc://name``; returned as a tuple."""

    def _check(self, value, where):
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise where.error("needs at least one address")
        checked = []
        for index, item in enumerate(items):
            spot = where.child(value, index) if isinstance(value, (list, tuple)) else where
            text = Str()._check(item, spot)
            if not _ADDRESS.match(text):
                raise spot.error(f'expected a ZeroMQ address such as "tcp://127.0.0.1:17031" '
                                 f'(tcp://host:port or :*, ipc://path, inproc://name), got "{text}"')
            checked.append(text)
        return tuple(checked)


_NAME = Name()

_SOCKET = {
    "name": Field(_NAME, required=True),
    "type": Field(Str(), required=True),
    "bind": Field(Addresses(), default=None, doc="address(es) to bind"),
    "connect": Field(Addresses(), default=None, doc="address(es) to connect to"),
    "data_format": Field(Choice(*ZMQ_FORMATS), default="json"),
    "linger": Field(Duration(max=60.0), default="1s",
                    doc="how long unsent messages may still leave once the socket closes"),
}

_INBOUND = {
    **_SOCKET,
    "rcvhwm": Field(Int(min=1), default=1000,
                    doc="messages ZeroMQ queues for us before senders block (PUSH) or drop (PUB)"),
    "max_message_size": Field(Size(min=1), default="1MiB",
                              doc="larger messages make ZeroMQ drop the peer's connection"),
    "max_in_flight": Field(Int(min=1), default=100,
                           doc="unfinished invocations before the channel stops reading"),
    "batch": Field(Int(min=1, max=100_000), default=500,
                   doc="messages handled per reactor turn before yielding"),
    # with security: each message has a credentials frame right before its body
    # ("Bearer <token>", "Basic ...", or a bare token); over a rate_limit it is dropped, counted
    **MESSAGE_GUARD_FIELDS,
}

_FEEDS = {
    "service": Field(Str(min_length=1), default=None, doc="the service each message invokes"),
    "pubsub_topic": Field(Str(min_length=1), default=None,
                          doc="publish each message to this pub/sub topic instead of invoking a "
                              "service; {topic} is replaced by the message's ZeroMQ topic"),
}


def _check_socket(section):
    if not section.bind and not section.connect:
        raise ValueError('needs "bind" or "connect" (or both): where the socket listens or which '
                         "peers it connects to")


def _check_feed(section):
    _check_socket(section)
    if (section.service is None) == (section.pubsub_topic is None):
        raise ValueError('needs exactly one of "service" (invoke it) or "pubsub_topic" '
                         "(publish to it)")
    if section.pubsub_topic is not None:
        try:
            section.pubsub_topic.format(topic="t")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"pubsub_topic: only {{topic}} may be replaced, "
                             f"got {section.pubsub_topic!r} ({error!r})") from None


ZMQ_PULL = Schema("zmq_pull channel", {**_INBOUND, **_FEEDS}, validate=_check_feed)

ZMQ_SUB = Schema("zmq_sub channel", {
    **_INBOUND, **_FEEDS,
    "subscribe": Field(ListOf(Str()), default=[""],
                       doc='topic prefixes to subscribe to; "" is every topic'),
}, validate=_check_feed)

ZMQ_ROUTER = Schema("zmq_router channel", {
    **_INBOUND,
    "service": Field(Str(min_length=1), required=True),
    "sndhwm": Field(Int(min=1), default=1000, doc="replies queued per client"),
}, validate=_check_socket)

_OUTBOUND = {
    **_SOCKET,
    "sndhwm": Field(Int(min=1), default=1000,
                    doc="messages ZeroMQ queues per peer before it is full"),
}

ZMQ_PUSH_OUT = Schema("zmq_push outgoing", {
    **_OUTBOUND,
    "on_full": Field(Choice("error", "queue"), default="error",
                     doc="when every peer is full: raise ZmqFull to the service, or wait in "
                         "our own bounded queue"),
    "queue_size": Field(Int(min=1), default=1000,
                        doc="messages waiting when on_full is queue; beyond it ZmqFull is raised"),
    "retry_interval": Field(Duration(min=0.001, max=10.0), default="50ms",
                            doc="how often a waiting queue re-checks, besides ZeroMQ's own signal"),
}, validate=_check_socket)

ZMQ_PUB_OUT = Schema("zmq_pub outgoing", {
    **_OUTBOUND,
    "topic": Field(Str(), default="", doc="topic frame when send() names none"),
}, validate=_check_socket)
