"""ZeroMQ: channels (PULL, SUB, request/reply over ROUTER), outgoing PUSH and PUB
sockets, and the reactor adapter they share."""

from broker.components import ComponentType, Needs
from broker.zmq import channel, config, outgoing

__all__ = ["CHANNELS", "OUTGOING"]

_FEEDS = Needs.feature("pubsub", when="pubsub_topic")
_GUARDED = (Needs.security(), Needs.feature("auth"))


def _always(section):
    return True


def _binds(section):
    return bool(section.bind)


#: ``channels:`` types.
CHANNELS = {
    "zmq_pull": ComponentType(config.ZMQ_PULL, channel.build_pull, needs=[_FEEDS, *_GUARDED],
                              once_per_node=_always),
    "zmq_sub": ComponentType(config.ZMQ_SUB, channel.build_sub, needs=[_FEEDS, *_GUARDED],
                             once_per_node=_always),
    "zmq_router": ComponentType(config.ZMQ_ROUTER, channel.build_router, needs=_GUARDED,
                                once_per_node=_always),
}
#: ``outgoing:`` types: ``self.out.zmq[name]``.
OUTGOING = {
    "zmq_push": ComponentType(config.ZMQ_PUSH_OUT, outgoing.build_push, kind="zmq",
                              once_per_node=_binds),
    "zmq_pub": ComponentType(config.ZMQ_PUB_OUT, outgoing.build_pub, kind="zmq",
                             once_per_node=_binds),
}
