"""Services the ZeroMQ integration tests drive (loaded from this directory only)."""

from twisted.internet import reactor, task

from broker import Bool, Int, Service
from broker.zmq.outgoing import ZmqFull

SEEN = {}


class Record(Service):
    """Remember every (key, n) received, and the ZeroMQ topic it came with."""

    name = "zmqtest.record"

    class SimpleIO:
        input_required = ("key", Int("n"))

    def handle(self):
        topic = self.request.headers.get("topic")
        SEEN.setdefault(self.request.input.key, []).append([self.request.input.n, topic])


class Seen(Service):
    """What :class:`Record` saw, by key."""

    name = "zmqtest.seen"

    def handle(self):
        self.response.payload = {"seen": SEEN}


class SlowEcho(Service):
    """Echo ``text`` after ``delay_ms`` milliseconds (so replies finish out of order)."""

    name = "zmqtest.slow_echo"

    class SimpleIO:
        input_required = ("text", Int("delay_ms"))
        output_required = ("text",)

    def handle(self):
        def answer():
            self.response.payload.text = self.request.input.text
        return task.deferLater(reactor, self.request.input.delay_ms / 1000.0, answer)


class Emit(Service):
    """Send ``count`` messages through ``self.out.zmq[name]``; report what happened."""

    name = "zmqtest.emit"

    class SimpleIO:
        input_required = ("name", Int("count"))
        input_optional = ("topic", Int("pad", default=0), Bool("raise_full", default=False))
        output_required = (Int("accepted"), Int("waiting_or_dropped"), Int("full"))

    def handle(self):
        out = self.out.zmq[self.request.input.name]
        topic = self.request.input.topic
        pad = "x" * self.request.input.pad
        accepted = other = full = 0
        for n in range(self.request.input.count):
            try:
                sent = out.send({"key": "emit", "n": n, "pad": pad}, topic=topic)
            except ZmqFull:
                if self.request.input.raise_full:
                    raise
                full += 1
            else:
                accepted += bool(sent)
                other += not sent
        self.response.payload = {"accepted": accepted, "waiting_or_dropped": other, "full": full}


class Shout(Service):
    """No SimpleIO: takes the raw text, answers it upper-cased (for raw channels)."""

    name = "zmqtest.shout"

    def handle(self):
        data = self.request.input
        self.response.payload = (data.decode("latin-1") if isinstance(data, bytes) else data).upper()
