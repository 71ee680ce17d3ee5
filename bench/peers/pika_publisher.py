"""Bare pika Twisted publisher with confirms: COUNT messages to QUEUE, at most WINDOW unconfirmed.

Usage: python pika_publisher.py QUEUE COUNT WINDOW [WARMUP]   (WARMUP untimed publishes first)
"""

import json
import sys
import time

import pika
from pika.adapters.twisted_connection import TwistedProtocolConnection
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

BODY = json.dumps({"text": "hello", "n": 0, "pad": "x" * 24}).encode()


@defer.inlineCallbacks
def main(queue, count, window, warmup=0):
    connection = TwistedProtocolConnection(pika.ConnectionParameters(
        credentials=pika.PlainCredentials("guest", "guest")))
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", 5672), connection)
    yield connection.ready
    channel = yield connection.channel()
    yield channel.confirm_delivery()
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=1)
    if warmup:
        yield publish(channel, queue, properties, warmup, window)
    started, cpu = time.perf_counter(), time.process_time()
    yield publish(channel, queue, properties, count, window)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "count": count}), flush=True)
    yield connection.close()
    reactor.stop()


def publish(channel, queue, properties, count, window):
    """``count`` publishes, at most ``window`` unconfirmed; a Deferred firing at the last confirm."""
    done = defer.Deferred()
    state = {"sent": 0, "confirmed": 0}

    def send_more(_=None):
        while state["sent"] < count and state["sent"] - state["confirmed"] < window:
            state["sent"] += 1
            channel.basic_publish("", queue, BODY, properties).addCallback(confirmed)

    def confirmed(_):
        state["confirmed"] += 1
        if state["confirmed"] == count:
            done.callback(None)
        else:
            send_more()

    send_more()
    return done


if __name__ == "__main__":
    reactor.callWhenRunning(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                            int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    reactor.run()
