"""The broker side of bench/amqp.py's publish test: N publishes through an outgoing connection."""

import time

from twisted.internet import defer

from broker import Float, Int, Service


class PublishMany(Service):
    """Publish ``count`` messages through ``self.out.amqp["bench"]``; answer the seconds (and CPU seconds) it took."""

    name = "bench.amqp.publish-many"

    class SimpleIO:
        input_required = (Int("count"),)
        output_required = (Float("seconds"), Float("cpu"))

    async def handle(self):
        outgoing = self.out.amqp["bench"]
        message = {"text": "hello", "n": 0, "pad": "x" * 24}
        started, cpu = time.perf_counter(), time.process_time()
        await defer.gatherResults([outgoing.publish(message) for _ in range(self.request.input.count)],
                                  consumeErrors=True)
        self.response.payload = {"seconds": time.perf_counter() - started,
                                 "cpu": time.process_time() - cpu}
