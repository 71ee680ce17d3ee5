"""The broker side of bench/amqp.py's publish test: N publishes through an outgoing connection."""

import time

from twisted.internet import defer

from broker import Float, Int, Service


class PublishMany(Service):
    """Publish ``count`` messages through ``self.out.amqp["bench"]``, 1000 awaiting confirms at a time;
    answer the seconds (and CPU seconds) it took."""

    name = "bench.amqp.publish-many"

    class SimpleIO:
        input_required = (Int("count"),)
        input_optional = (Int("warmup", default=0),)
        output_required = (Float("seconds"), Float("cpu"))

    window = 1000  # publishes awaiting their confirm, as the bare pika publisher keeps

    async def handle(self):
        outgoing = self.out.amqp["bench"]
        message = {"text": "hello", "n": 0, "pad": "x" * 24}
        if self.request.input.warmup:
            await self._publish(outgoing, message, self.request.input.warmup)
        started, cpu = time.perf_counter(), time.process_time()
        await self._publish(outgoing, message, self.request.input.count)
        self.response.payload = {"seconds": time.perf_counter() - started,
                                 "cpu": time.process_time() - cpu}

    def _publish(self, outgoing, message, count):
        done = defer.Deferred()
        state = {"sent": 0, "confirmed": 0}

        def send_more(_=None):
            while state["sent"] < count and state["sent"] - state["confirmed"] < self.window:
                state["sent"] += 1
                outgoing.publish(message).addCallbacks(confirmed, done.errback)

        def confirmed(_):
            state["confirmed"] += 1
            if state["confirmed"] == count:
                done.callback(None)
            else:
                send_more()

        send_more()
        return done


class WaitAcked(Service):
    """Wait (in-process, checking every millisecond) until the bench channel acked ``count``.

    Answers the seconds and CPU seconds from the first check that saw acks to
    the last ack, and how many messages that span covered: the bench polls
    nothing over HTTP while the broker consumes.
    """

    name = "bench.amqp.wait-acked"

    class SimpleIO:
        input_required = (Int("count"),)
        input_optional = (Int("warmup", default=0),)
        output_required = (Float("seconds"), Float("cpu"), Int("messages"))

    async def handle(self):
        from twisted.internet import reactor, task
        counters = self.resources.metrics["amqp.channel.bench.consume"]
        count = self.request.input.count
        first = None
        while True:
            acked = counters()["acked"]
            if acked > self.request.input.warmup and first is None:
                first = (time.perf_counter(), time.process_time(), acked)
            if acked >= count + self.request.input.warmup:
                break
            await task.deferLater(reactor, 0.001)
        self.response.payload = {"seconds": time.perf_counter() - first[0],
                                 "cpu": time.process_time() - first[1],
                                 "messages": count + self.request.input.warmup - first[2]}

