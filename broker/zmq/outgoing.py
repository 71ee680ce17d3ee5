"""Outgoing ZeroMQ sockets by name: ``self.out.zmq["name"].send(data, topic=...)``.

* ``zmq_push``: when every peer is at its send high-water mark the service
  gets :class:`ZmqFull` (``on_full: error``) or the message waits in our own
  bounded queue (``on_full: queue``) and leaves as soon as a peer has room;
  a full queue raises :class:`ZmqFull` too.  Never silent loss.
* ``zmq_pub``: an XPUB socket with ``XPUB_NODROP``, so a message a subscriber
  has no room for is *known* to be dropped and counted (plain PUB drops
  silently); it also tells us which prefixes are subscribed.
"""

from collections import deque

import zmq
from twisted.application.service import Service
from twisted.logger import Logger

from broker.channels import LogBudget
from broker.errors import ServiceUnavailable
from broker.simpleio import encode
from broker.zmq.adapter import open_socket

__all__ = ["PubOutgoing", "PushOutgoing", "ZmqFull", "build_pub", "build_push"]

log = Logger()


class ZmqFull(ServiceUnavailable):
    """An outgoing ZeroMQ socket cannot take the message now (peers full, queue full)."""

    code = "zmq_full"
    default_message = "ZeroMQ peer is full"


class ZmqOutgoing(Service):
    """What PUSH and PUB share: the socket, encoding, counters, clean close."""

    socket_type = None
    kind = None

    def __init__(self, section, ctx):
        self.section = section
        self.setName(f"zmq-out:{section.name}")
        self.reactor = ctx.reactor
        self.socket = None
        self._log_budget = LogBudget(ctx.reactor)
        self.counters = {"sent": 0}
        ctx.metrics(f"zmq.outgoing.{section.name}", lambda: self.counters)
        ctx.health(f"zmq.outgoing.{section.name}", self.health)

    def socket_options(self):
        return [(zmq.SNDHWM, self.section.sndhwm), (zmq.LINGER, int(self.section.linger * 1000))]

    def privilegedStartService(self):
        super().privilegedStartService()
        if self.socket is None:
            self.socket = open_socket(
                self.reactor, self.socket_type, self.socket_options(), self.section,
                f"zmq outgoing {self.section.name}", **self.handlers())

    def handlers(self):
        return {}

    def startService(self):
        self.privilegedStartService()
        super().startService()
        self.socket.start()

    def stopService(self):
        """Close; the Deferred fires once ZeroMQ has let go of the socket's addresses."""
        super().stopService()
        if self.socket is None:
            return None
        self.before_close()
        socket, self.socket = self.socket, None
        released = socket.close(self.section.linger)
        log.info("zmq outgoing {name} closed", name=self.section.name)
        return released

    def before_close(self):
        pass

    def health(self):
        return {"ok": self.socket is not None or not self.running}

    def frames(self, data, topic):
        """``[body]`` or ``[topic, body]``, the body in the configured data format."""
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        else:
            body = encode(self.section.data_format, data)[0]
        if topic is None:
            return [body]
        return [topic.encode("utf-8") if isinstance(topic, str) else bytes(topic), body]

    def _socket(self):
        if self.socket is None:
            raise ServiceUnavailable(f'outgoing zmq connection "{self.section.name}" is not running')
        return self.socket


class PushOutgoing(ZmqOutgoing):
    """PUSH to one or more PULL peers, round-robin."""

    socket_type = zmq.PUSH
    kind = "zmq_push"

    def __init__(self, section, ctx):
        super().__init__(section, ctx)
        self.queue = deque()
        self._retry = None
        self.counters.update(queued=0, full_errors=0, dropped_on_close=0, waiting=0)

    def handlers(self):
        return {"on_writable": self._flush}

    def send(self, data, topic=None):
        """Send ``data`` (dict/list in the data format; str/bytes as given).

        :return: True when handed to ZeroMQ now, False when it waits in the queue.
        :raise ZmqFull: every peer is full and (``on_full: error``) or the queue is full.
        """
        socket = self._socket()
        frames = self.frames(data, topic)
        if not self.queue:
            try:
                socket.send(frames)
            except zmq.Again:
                if self.section.on_full == "error":
                    self.counters["full_errors"] += 1
                    raise ZmqFull(f'outgoing zmq "{self.section.name}": every peer is at its '
                                  f"high-water mark ({self.section.sndhwm} messages) or none "
                                  f"is connected") from None
            else:
                self.counters["sent"] += 1
                return True
        if len(self.queue) >= self.section.queue_size:
            self.counters["full_errors"] += 1
            raise ZmqFull(f'outgoing zmq "{self.section.name}": peers are full and the wait queue '
                          f"holds its limit of {self.section.queue_size} messages")
        self.queue.append(frames)
        self.counters["queued"] += 1
        self.counters["waiting"] = len(self.queue)
        self._wait()
        return False

    def _wait(self):
        """Flush when ZeroMQ says a peer has room, and on a timer in case no edge comes."""
        if self.socket is None:
            return
        self.socket.want_write()
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(self.section.retry_interval, self._flush)

    def _flush(self):
        socket = self.socket
        queue = self.queue
        while queue and socket is not None:
            try:
                socket.send(queue[0])
            except zmq.Again:
                break
            queue.popleft()
            self.counters["sent"] += 1
        self.counters["waiting"] = len(queue)
        if queue:
            self._wait()

    def before_close(self):
        self._flush()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self.queue:
            self.counters["dropped_on_close"] += len(self.queue)
            log.warn("zmq outgoing {name}: {count} queued messages not sent at shutdown "
                     "(no peer had room)", name=self.section.name, count=len(self.queue))
            self.queue.clear()
            self.counters["waiting"] = 0


class PubOutgoing(ZmqOutgoing):
    """PUB to any number of SUB peers; each message is ``[topic, body]``."""

    socket_type = zmq.XPUB
    kind = "zmq_pub"

    def __init__(self, section, ctx):
        super().__init__(section, ctx)
        self.subscriptions = set()
        self.counters.update(dropped=0, no_subscriber=0, subscriptions=0)

    def socket_options(self):
        return super().socket_options() + [(zmq.XPUB_NODROP, 1)]

    def handlers(self):
        return {"on_message": self._subscription}

    def _subscription(self, frames):
        """XPUB hands us (un)subscriptions: ``b"\\x01prefix"`` / ``b"\\x00prefix"``."""
        frame = frames[0] if frames else b""
        if frame[:1] == b"\x01":
            self.subscriptions.add(frame[1:])
        elif frame[:1] == b"\x00":
            self.subscriptions.discard(frame[1:])
        self.counters["subscriptions"] = len(self.subscriptions)

    def send(self, data, topic=None):
        """Publish ``data`` under ``topic`` (default: the configured ``topic``).

        :return: True when handed to ZeroMQ, False when dropped (counted): a
            subscriber was at its high-water mark.
        """
        socket = self._socket()
        frames = self.frames(data, self.section.topic if topic is None else topic)
        try:
            socket.send(frames)
        except zmq.Again:
            self.counters["dropped"] += 1
            if self._log_budget.allow(self.section.name):
                log.warn("zmq outgoing {name}: a subscriber is at its high-water mark "
                         "({hwm}); message dropped", name=self.section.name,
                         hwm=self.section.sndhwm)
            return False
        topic_frame = frames[0]
        if any(topic_frame.startswith(prefix) for prefix in self.subscriptions):
            self.counters["sent"] += 1
        else:
            self.counters["no_subscriber"] += 1
        return True


def build_push(section, ctx):
    return PushOutgoing(section, ctx)


def build_pub(section, ctx):
    return PubOutgoing(section, ctx)
