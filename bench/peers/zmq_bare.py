"""The bare peer of ``bench/zmq.py``: pyzmq on the same reactor and the same
adapter as the broker, with no broker pipeline.

``pull BIND DONE N``: count messages; after every N send ``b"done"`` to DONE.
``pull-json BIND DONE N``: the same, but first parse, check and answer each
message like demo.echo (json.loads, type checks, json.dumps; no pipeline).
``echo BIND``: ROUTER answering ``{"text": text * repeat}`` (parsed and
checked like demo.echo's input, nothing else).
"""

import json
import os
import sys

import zmq
from twisted.internet import reactor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from broker.zmq.adapter import ZmqSocket, zmq_context  # noqa: E402


def _echo(body):
    data = json.loads(body)
    text, repeat = data["text"], data.get("repeat", 1)
    if not isinstance(text, str) or not isinstance(repeat, int):
        return b'{"error":"bad input"}'
    return json.dumps({"text": text * repeat}, separators=(",", ":")).encode()


def pull(bind, done_address, every, work=False):
    done = zmq_context().socket(zmq.PUSH)
    done.connect(done_address)
    count = [0]

    def counted(frames):
        if work:
            _echo(frames[-1])
        count[0] += 1
        if count[0] % every == 0:
            done.send(b"done")

    sock = ZmqSocket(reactor, zmq.PULL, options=[(zmq.RCVHWM, 1000), (zmq.LINGER, 0)],
                     on_message=counted, batch=500)
    sock.bind(bind)
    sock.start()


def echo(bind):
    def answer(frames):
        sock.send(frames[:-1] + [_echo(frames[-1])])

    sock = ZmqSocket(reactor, zmq.ROUTER, options=[(zmq.RCVHWM, 1000), (zmq.SNDHWM, 1000),
                                                   (zmq.LINGER, 0)], on_message=answer, batch=500)
    sock.bind(bind)
    sock.start()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode in ("pull", "pull-json"):
        pull(args[0], args[1], int(args[2]), work=mode == "pull-json")
    else:
        echo(args[0])
    print("ready", flush=True)
    reactor.run()
