"""Services the loopback and component tests deploy (loaded by path)."""

from twisted.internet import defer

from broker import Int, Service


class Double(Service):
    """Doubles ``n``; ``n`` of 13 breaks it."""

    name = "test.double"

    class SimpleIO:
        input_required = (Int("n"),)
        output_required = (Int("n"),)

    def handle(self):
        if self.request.input.n == 13:
            raise RuntimeError("unlucky")
        self.response.payload.n = self.request.input.n * 2


class Slow(Service):
    """Answers when the test fires the Deferred it left in ``Slow.waiting``."""

    name = "test.slow"
    waiting = []

    def handle(self):
        d = defer.Deferred()
        Slow.waiting.append(d)
        return d


class Send(Service):
    """Puts ``data`` on the loopback outgoing ``out``."""

    name = "test.send"

    def handle(self):
        self.response.payload = {"cid": self.out.loopback["out"].send(self.request.input)}
