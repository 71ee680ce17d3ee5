"""Cache throughput: the broker's Redis cache against a bare txredisapi client, in the same run.

    python bench/cache_redis.py [--ops 20000] [--concurrency 50] [--runs 3] [--port 6379]

Needs a Redis server.  Each target does ``--ops`` GETs (then SETs) of a small JSON value with
``--concurrency`` commands in flight on one connection, in one process on the real reactor:

  a  broker   ``RedisCache.get``/``set``: key prefix, JSON, a timeout per command, the circuit
              breaker and counters (what ``self.cache`` does in a service)
  b  bare     ``txredisapi`` handler ``get``/``set`` of the same bytes, no timeout, no JSON
  c  memory   ``MemoryCache.get``/``set`` (no network; for scale)

Runs are interleaved (a, b, c, a, b, c, ...); the table shows ops/s per run and the median, and
the ratio a/b (the cost of the broker's safety around each call; target >= 0.6).  Keys are under
a random prefix and deleted afterwards.  The machine may be shared: note its load with the figures.
"""

import argparse
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor, task  # noqa: E402

VALUE = {"currency": "USD", "rate": 1.0842, "provider": "ecb", "as_of": "2026-12-01",
         "is_stale": False}


@defer.inlineCallbacks
def drive(op, ops, concurrency):
    """Run ``op(i)`` ``ops`` times with ``concurrency`` in flight; ops per second."""
    started = time.perf_counter()
    counter = iter(range(ops))

    @defer.inlineCallbacks
    def worker():
        for i in counter:
            yield op(i)

    yield defer.gatherResults([worker() for _ in range(concurrency)], consumeErrors=True)
    return ops / (time.perf_counter() - started)


@defer.inlineCallbacks
def main(args):
    import json

    import txredisapi

    from broker.cache import MemoryCache, RedisCache
    from broker.redis import RedisConnection

    prefix = f"bench:cache:{uuid.uuid4().hex[:8]}:"
    connection = RedisConnection("bench", port=args.port, timeout=2.0)
    connection.startService()
    cache = RedisCache(connection, prefix=prefix, timeout=2.0)
    bare = txredisapi.lazyConnection("127.0.0.1", args.port, charset=None, convertNumbers=False)
    memory = MemoryCache(reactor)
    keys = [f"k{i % 1000}" for i in range(args.ops)]
    bare_keys = [(prefix + key).encode() for key in keys]
    payload = json.dumps(VALUE, separators=(",", ":")).encode()
    yield cache.set("warm", VALUE)
    yield bare.get(b"warm")

    targets = {
        "a broker": (lambda i: cache.set(keys[i], VALUE), lambda i: cache.get(keys[i])),
        "b bare": (lambda i: bare.set(bare_keys[i], payload), lambda i: bare.get(bare_keys[i])),
        "c memory": (lambda i: memory.set(keys[i], VALUE), lambda i: memory.get(keys[i])),
    }
    results = {(name, kind): [] for name in targets for kind in ("set", "get")}
    for _ in range(args.runs):
        for name, (set_op, get_op) in targets.items():
            results[(name, "set")].append((yield drive(set_op, args.ops, args.concurrency)))
            results[(name, "get")].append((yield drive(get_op, args.ops, args.concurrency)))
    got = yield cache.get(keys[0])
    assert got == VALUE, got
    assert cache.counters["errors"] == 0, cache.counters

    load = os.getloadavg()
    print(f"cache_redis: {args.ops} ops x {args.runs} runs, {args.concurrency} in flight, "
          f"load average {load[0]:.2f} {load[1]:.2f} (the machine is shared)")
    print(f"{'target':<10} {'op':<4} {'runs (ops/s)':<34} median")
    medians = {}
    for (name, kind), values in results.items():
        medians[(name, kind)] = median = statistics.median(values)
        runs = " ".join(f"{v:9.0f}" for v in values)
        print(f"{name:<10} {kind:<4} {runs:<34} {median:9.0f}")
    for kind in ("get", "set"):
        ratio = medians[("a broker", kind)] / medians[("b bare", kind)]
        print(f"a/b {kind}: {ratio:.2f} ({'PASS' if ratio >= 0.6 else 'MISS'}, target >= 0.6)")

    keys_left = yield connection.execute(b"KEYS", (prefix + "*").encode())
    if keys_left:
        yield connection.execute(b"DEL", *keys_left)
    yield bare.disconnect()
    yield connection.stopService()


def run():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=6379)
    args = parser.parse_args()
    failures = []
    task.react(lambda _: main(args).addErrback(failures.append))
    if failures:
        failures[0].printTraceback()
        sys.exit(1)


if __name__ == "__main__":
    run()
