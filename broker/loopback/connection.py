"""Named in-memory queues: what a loopback channel consumes and an outgoing fills."""

from collections import deque

from twisted.application.service import Service

from broker.errors import ServiceUnavailable

__all__ = ["LoopbackConnection", "LoopbackMessage", "build_connection"]


class LoopbackMessage:
    """One message: its body, headers, correlation id and where a reply goes."""

    __slots__ = ("body", "headers", "cid", "reply_to")

    def __init__(self, body, headers=None, cid=None, reply_to=None):
        self.body, self.headers, self.cid, self.reply_to = body, headers or {}, cid, reply_to

    def __repr__(self):
        return f"LoopbackMessage({self.body!r}, cid={self.cid!r}, reply_to={self.reply_to!r})"


class LoopbackConnection(Service):
    """Queues by name, each holding at most ``max_queue`` messages nobody took yet.

    A queue has at most one consumer, a callable taking a message and
    answering whether it took it (False: it is busy; the message waits).
    """

    def __init__(self, name, max_queue, reactor):
        self.setName(f"loopback:{name}")
        self.max_queue = max_queue
        self._reactor = reactor
        self._queues = {}
        self._consumers = {}
        self._scheduled = set()
        self.counters = {"put": 0, "refused": 0, "delivered": 0}

    def queue(self, name):
        """The messages waiting on ``name`` (a deque; created empty)."""
        return self._queues.setdefault(name, deque())

    def put(self, name, message):
        """Queue ``message`` on ``name``; :class:`ServiceUnavailable` when it is full."""
        queue = self.queue(name)
        if len(queue) >= self.max_queue:
            self.counters["refused"] += 1
            raise ServiceUnavailable(f"loopback queue {name} is full ({self.max_queue} messages)")
        queue.append(message)
        self.counters["put"] += 1
        self.wake(name)

    def consume(self, name, consumer):
        """Deliver messages of ``name`` to ``consumer(message) -> bool``."""
        if name in self._consumers:
            raise ValueError(f"loopback queue {name} already has a consumer")
        self._consumers[name] = consumer
        self.wake(name)

    def cancel(self, name):
        self._consumers.pop(name, None)

    def wake(self, name):
        """Deliver what waits on ``name`` on the next reactor turn (never re-entrantly)."""
        if name not in self._scheduled and self._consumers.get(name) and self._queues.get(name):
            self._scheduled.add(name)
            self._reactor.callLater(0, self._deliver, name)

    def _deliver(self, name):
        self._scheduled.discard(name)
        queue = self._queues.get(name)
        while queue:
            consumer = self._consumers.get(name)
            if consumer is None or not consumer(queue[0]):
                return
            queue.popleft()
            self.counters["delivered"] += 1

    def health(self):
        return {"ok": True, "queues": {name: len(q) for name, q in self._queues.items() if q}}


def build_connection(section, ctx):
    connection = LoopbackConnection(section.name, section.max_queue, ctx.reactor)
    ctx.health(f"loopback.connection.{section.name}", connection.health)
    ctx.metrics(f"loopback.connection.{section.name}", lambda: connection.counters)
    return connection
