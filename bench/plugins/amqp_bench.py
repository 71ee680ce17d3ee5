"""The broker side of bench/amqp.py's publish test: N publishes through an outgoing connection."""

import time

from twisted.internet import defer

from broker import Float, Int, Service


class PublishMany(Service):
    """Publish ``count`` messages through ``self.out.amqp["bench"]``; answer the seconds it took."""

    name = "bench.amqp.publish-many"

    class SimpleIO:
        input_required = (Int("count"),)
        output_required = (Float("seconds"),)

    async def handle(self):
        outgoing = self.out.amqp["bench"]
        message = {"text": "hello", "n": 0, "pad": "x" * 24}
        started = time.perf_counter()
        await defer.gatherResults([outgoing.publish(message) for _ in range(self.request.input.count)],
                                  consumeErrors=True)
        self.response.payload = {"seconds": time.perf_counter() - started}
