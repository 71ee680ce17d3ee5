"""Bare pika Twisted consumer: ack each of COUNT messages on QUEUE; print the seconds it took.

Usage: python pika_consumer.py QUEUE COUNT PREFETCH [WARMUP]   (timed after WARMUP acks)
"""

import json
import sys
import time

import pika
from pika.adapters.twisted_connection import TwistedProtocolConnection
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol


@defer.inlineCallbacks
def main(queue, count, prefetch, warmup=0):
    connection = TwistedProtocolConnection(pika.ConnectionParameters(
        credentials=pika.PlainCredentials("guest", "guest")))
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", 5672), connection)
    yield connection.ready
    channel = yield connection.channel()
    yield channel.basic_qos(prefetch_count=prefetch)
    messages, _tag = yield channel.basic_consume(queue=queue, auto_ack=False)
    started = None
    for n in range(count + warmup):
        message = yield messages.get()
        if n == warmup:
            started, cpu = time.perf_counter(), time.process_time()
        message.channel.basic_ack(delivery_tag=message.method.delivery_tag)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "count": count}), flush=True)
    yield connection.close()
    reactor.stop()


if __name__ == "__main__":
    reactor.callWhenRunning(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                            int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    reactor.run()
