"""ZeroMQ throughput: the broker's channels against bare pyzmq on the same reactor, in one run.

1. PULL: N messages ``{"text":"hello","repeat":2}`` pushed as fast as the
   receiver takes them, into (a) the broker's ``zmq_pull`` channel invoking
   ``demo.echo`` through the whole pipeline and (b) a bare PULL on the same
   reactor and adapter that only counts.  msgs/s each and the ratio a/b
   (target >= 0.8).
2. Request/reply: round trips/s with 1 and 16 concurrent REQ clients against
   (a) the broker's ``zmq_router`` channel into ``demo.echo`` and (b) a bare
   ROUTER echo on the same reactor and adapter.

Runs are interleaved (a, b, a, b, ...); medians of ``--runs``.  The box is
shared: the idle fraction before each run and each server's CPU time are shown.

    python bench/zmq.py [--messages 100000] [--runs 3] [--duration 5] [--json PATH]
"""

import os
import sys

# This file is called zmq.py: keep its directory off the path while pyzmq is imported.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != HERE]
import zmq  # noqa: E402

sys.path.append(HERE)
import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from harness import (ServerProcess, StartError, free_port, group_cpu_seconds, http_request,  # noqa: E402
                     quiet_guard)

ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
BODY = b'{"text":"hello","repeat":2}'
EXPECTED = b'{"text":"hellohello"}'
PEER = os.path.join(HERE, "peers", "zmq_bare.py")
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def tcp():
    return f"tcp://{HOST}:{free_port()}"


class Broker:
    """``twistd -n broker`` with bench/broker-zmq.yaml; counts come from /broker/metrics."""

    name = "broker"

    def __init__(self):
        self.pull, self.rr, self.http = tcp(), tcp(), free_port()
        env = {**os.environ, "PYTHONPATH": ROOT, "BENCH_ZMQ_PULL": self.pull, "BENCH_ZMQ_RR": self.rr}
        self.proc = ServerProcess("broker", TWISTD + [
            "-n", "--pidfile=", "broker", "--config", os.path.join("bench", "broker-zmq.yaml"),
            "--listen", f"tcp:{self.http}:interface={HOST}"], env=env, cwd=ROOT)

    def start(self, ctx):
        self.proc.start()
        self.proc.wait_ready(lambda: http_request(HOST, self.http, "GET", "/broker/ping")[0] == 200)
        return self

    def handled(self):
        status, body = http_request(HOST, self.http, "GET", "/broker/metrics")
        return json.loads(body)["counters"]["zmq.channel.bench.pull"]["succeeded"]

    def wait_pulled(self, target, ctx, deadline):
        while time.monotonic() < deadline:
            if self.handled() >= target:
                return time.perf_counter()
            time.sleep(0.01)
        raise RuntimeError("broker did not finish in time")


class BarePull:
    """bench/peers/zmq_bare.py in ``pull`` (count only) or ``pull-json`` mode; says "done" every N."""

    def __init__(self, mode, every):
        self.name = "bare" if mode == "pull" else "bare+json"
        self.pull, self.done = tcp(), tcp()
        self.proc = ServerProcess(self.name, [sys.executable, PEER, mode, self.pull, self.done, str(every)],
                                  env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)

    def start(self, ctx):
        self.done_sock = ctx.socket(zmq.PULL)
        self.done_sock.setsockopt(zmq.LINGER, 0)
        self.done_sock.bind(self.done)
        self.proc.start()
        self.proc.wait_ready(lambda: "ready" in self.proc.log_tail())
        return self

    def wait_pulled(self, target, ctx, deadline):
        if not self.done_sock.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise RuntimeError(f"{self.name} did not finish in time")
        self.done_sock.recv()
        return time.perf_counter()


class BareEcho:
    """bench/peers/zmq_bare.py in ``echo`` mode: a ROUTER answering like demo.echo."""

    name = "bare"

    def __init__(self):
        self.rr = tcp()
        self.proc = ServerProcess("bare-echo", [sys.executable, PEER, "echo", self.rr],
                                  env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)

    def start(self, ctx):
        self.proc.start()
        self.proc.wait_ready(lambda: "ready" in self.proc.log_tail())
        return self


def push_run(target, ctx, messages):
    """Push ``messages`` into ``target``; msgs/s from the first send to the last one handled."""
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(target.pull)
    time.sleep(0.2)  # connected before the clock starts
    cpu0 = group_cpu_seconds(target.proc.pid)
    start = time.perf_counter()
    for _ in range(messages):
        push.send(BODY)
    done = target.wait_pulled(target.base + messages, ctx, time.monotonic() + 120)
    cpu = group_cpu_seconds(target.proc.pid) - cpu0
    target.base += messages
    push.close()
    return messages / (done - start), cpu / messages * 1e6


def rr_run(address, ctx, clients, duration):
    """``clients`` REQ sockets, each one request in flight; round trips/s over ``duration``."""
    socks = []
    poller = zmq.Poller()
    for _ in range(clients):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(address)
        poller.register(s, zmq.POLLIN)
        socks.append(s)
    for s in socks:  # one checked round trip each before timing
        s.send(BODY)
        if not s.poll(10_000) or s.recv() != EXPECTED:
            raise RuntimeError(f"{address}: wrong or no reply")
    for s in socks:
        s.send(BODY)
    done = wrong = 0
    start = time.perf_counter()
    end = start + duration
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for s, _ in poller.poll(100):
            if s.recv() != EXPECTED:
                wrong += 1
            done += 1
            s.send(BODY)
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    if wrong:
        raise RuntimeError(f"{address}: {wrong} wrong replies")
    return done / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per request/reply run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    ctx = zmq.Context()
    broker = Broker()
    pullers = [broker, BarePull("pull", args.messages), BarePull("pull-json", args.messages)]
    echoes = [broker, BareEcho()]
    results = {"pull": {t.name: [] for t in pullers}, "rr1": {t.name: [] for t in echoes},
               "rr16": {t.name: [] for t in echoes}, "idle": []}
    started = []
    try:
        try:
            for target in pullers + echoes[1:]:
                started.append(target.start(ctx))
        except StartError as error:
            sys.exit(f"bench: {error}")
        for target in pullers:  # warm up at full size (the bare peers say "done" every N)
            target.base = 0
            push_run(target, ctx, args.messages)
        for run in range(args.runs):
            for target in pullers:
                guard = quiet_guard(max_wait=3.0)
                results["idle"].append(guard["idle"])
                rate, cpu_us = push_run(target, ctx, args.messages)
                results["pull"][target.name].append((rate, cpu_us))
                print(f"run {run + 1} pull  {target.name:9} {rate:9.0f} msgs/s  "
                      f"{cpu_us:6.1f} us CPU/msg  (box idle {guard['idle']:.0%} before)", flush=True)
            for clients, key in ((1, "rr1"), (16, "rr16")):
                for target in echoes:
                    rate = rr_run(target.rr, ctx, clients, args.duration)
                    results[key][target.name].append(rate)
                    print(f"run {run + 1} rr{clients:<3} {target.name:9} {rate:9.0f} round trips/s",
                          flush=True)
    finally:
        for target in started:
            target.proc.stop()
        ctx.destroy(linger=0)

    def median(values):
        return statistics.median(values) if values else float("nan")

    print()
    print("| test | broker | bare pyzmq | ratio |")
    print("|---|---|---|---|")
    pull = {name: median([r for r, _ in runs]) for name, runs in results["pull"].items()}
    pull_a, pull_b = pull["broker"], pull["bare"]
    print(f"| PULL → demo.echo vs counting only, msgs/s | {pull_a:,.0f} | {pull_b:,.0f} | {pull_a / pull_b:.2f} "
          f"({'PASS' if pull_a / pull_b >= 0.8 else 'MISS'} ≥ 0.8) |")
    print(f"| PULL → demo.echo vs json parse/check/answer, msgs/s | {pull_a:,.0f} | {pull['bare+json']:,.0f} "
          f"| {pull_a / pull['bare+json']:.2f} |")
    for key, label in (("rr1", "req/rep, 1 client, round trips/s"), ("rr16", "req/rep, 16 clients, round trips/s")):
        a, b = median(results[key]["broker"]), median(results[key]["bare"])
        print(f"| {label} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    cpu = {name: median([c for _, c in runs]) for name, runs in results["pull"].items()}
    print(f"\nserver CPU per PULL message: broker {cpu['broker']:.1f} us, bare {cpu['bare']:.1f} us, "
          f"bare+json {cpu['bare+json']:.1f} us; "
          f"box idle before runs: {min(results['idle']):.0%}..{max(results['idle']):.0%} "
          f"(2 cores shared with other work)")
    path = args.json or os.path.join(HERE, "results", f"zmq-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    print(f"figures: {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
