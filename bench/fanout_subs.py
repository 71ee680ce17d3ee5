"""N WebSocket subscribers in one Twisted process, for bench/fanout.py.

``--kind broker`` speaks the broker's JSON protocol on /ws; ``--kind wamp``
is a WAMP session (Crossbar).  Each delivery's latency is the receive time
minus the ``t`` the publisher stamped into the data (same machine, same
clock).  Writes ``--ready`` once all N are subscribed and its stats to
``--out`` when ``--expect`` deliveries per subscriber arrived, after
``--idle`` seconds of silence, or at ``--max-time``.  Runs under the main
Python (broker) or the Crossbar venv's (wamp); needs only autobahn + Twisted.
"""

import argparse
import json
import os
import resource
import time

from twisted.internet import reactor

p = argparse.ArgumentParser()
p.add_argument("--kind", choices=("broker", "wamp"), required=True)
p.add_argument("--url", required=True)
p.add_argument("--topic", default="bench.t")
p.add_argument("--n", type=int, default=1)
p.add_argument("--expect", type=int, default=0)
p.add_argument("--idle", type=float, default=3.0)
p.add_argument("--max-time", type=float, default=120.0)
p.add_argument("--ready", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
S = {"joined": 0, "count": 0, "per": {}, "lats": [], "first": None, "last": None, "next": 0}


def joined():
    S["joined"] += 1
    if S["joined"] == a.n:
        with open(a.ready, "w") as f:
            f.write(str(os.getpid()))


def received(index, stamp):
    now = time.time()
    S["count"] += 1
    S["per"][index] = S["per"].get(index, 0) + 1
    S["first"] = S["first"] or now
    S["last"] = now
    S["lats"].append(now - float(stamp))


if a.kind == "broker":
    from autobahn.twisted.websocket import (WebSocketClientFactory, WebSocketClientProtocol,
                                            connectWS)

    class Sub(WebSocketClientProtocol):
        def onOpen(self):
            self.index = S["next"]
            S["next"] += 1
            self.sendMessage(json.dumps({"op": "subscribe", "id": 1, "topic": a.topic}).encode())

        def onMessage(self, payload, isBinary):
            frame = json.loads(payload)
            op = frame["op"]
            if op == "message":
                received(self.index, frame["data"]["t"])
            elif op == "ok" and frame.get("id") == 1:
                joined()

    def connect():
        factory = WebSocketClientFactory(a.url)
        factory.protocol = Sub
        connectWS(factory)
else:
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.twisted.websocket import WampWebSocketClientFactory, connectWS
    from autobahn.wamp.serializer import JsonSerializer
    from autobahn.wamp.types import ComponentConfig

    class Sub(ApplicationSession):
        async def onJoin(self, details):
            self.index = S["next"]
            S["next"] += 1
            await self.subscribe(self.on_event, a.topic)
            joined()

        def on_event(self, payload, *args, **kwargs):
            received(self.index, payload["t"])

    def connect():
        connectWS(WampWebSocketClientFactory(lambda: Sub(ComponentConfig(realm="realm1")),
                                             url=a.url, serializers=[JsonSerializer()]))


def finish():
    lats = sorted(S["lats"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"subscribers": a.n, "deliveries": S["count"],
           "min_per_sub": min([S["per"].get(i, 0) for i in range(a.n)], default=0),
           "span_s": (S["last"] - S["first"]) if S["count"] > 1 else None,
           "lats": lats, "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
    with open(a.out, "w") as f:
        json.dump(out, f)
    reactor.stop()


def watchdog(started):
    now = time.time()
    if (a.expect and S["count"] >= a.expect * a.n) or (S["last"] and now - S["last"] > a.idle) \
            or now - started > a.max_time:
        finish()
    else:
        reactor.callLater(0.2, watchdog, started)


for _ in range(a.n):
    connect()
reactor.callLater(0.5, watchdog, time.time())
reactor.run()
