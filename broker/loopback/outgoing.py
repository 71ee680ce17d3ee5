"""``self.out.loopback[name].send(data)``: put a message on a loopback queue."""

from broker.ids import new_cid
from broker.loopback.connection import LoopbackMessage
from broker.simpleio import encode

__all__ = ["LoopbackOutgoing", "build_outgoing"]


class LoopbackOutgoing:
    """Encodes data in its format and queues it; bounded by the connection's queues."""

    def __init__(self, section, connection):
        self.section = section
        self.connection = connection
        self.counters = {"sent": 0}

    def send(self, data, *, reply_to=None, headers=None, cid=None):
        """Queue ``data`` (a dict, list, str or bytes); the message's cid.

        :raise broker.errors.ServiceUnavailable: the queue is full.
        """
        if isinstance(data, (bytes, str)):
            body = data.encode() if isinstance(data, str) else data
            content_type = "text/plain; charset=utf-8"
        else:
            body, content_type = encode(self.section.data_format, data, root="message")
        cid = cid or new_cid()
        message = LoopbackMessage(body, {"content-type": content_type, **(headers or {})}, cid,
                                  reply_to)
        self.connection.put(self.section.queue, message)
        self.counters["sent"] += 1
        return cid


def build_outgoing(section, ctx):
    outgoing = LoopbackOutgoing(section, ctx.connection(section, "connection", "loopback"))
    ctx.metrics(f"loopback.outgoing.{section.name}", lambda: outgoing.counters)
    return outgoing
