"""Cached ``GET /rates?currency=USD,GBP``: the broker's exchange-rates example against a bare peer.

(a) the broker running ``etc/examples/rates.yaml`` (fixture providers, memory cache, scheduler);
    after one warm-up request the answer comes from the cache through the whole pipeline
    (routing, SimpleIO input and output, ``rates.get``, JSON encoding);
(b) ``peers/rates_twisted_web.py``: a twisted.web Resource answering the same rows from a dict.

Runs are interleaved (a, b, a, b, ...) with ``wrk -t2 -cN -dD --latency``; the medians and the
ratio a/b are printed, with each server's CPU time per request (steadier than req/s on a busy
machine).  Needs ``wrk`` and the cache and scheduler sections (``cache:``,
``scheduler:``) in the broker.  The machine is shared: treat figures as indicative.

    python bench/rates_get.py [--runs 3] [--duration 5] [--connections 50]
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ServerProcess, free_port, group_cpu_seconds, http_request,  # noqa: E402
                     quiet_guard)
from wrkrun import run_wrk  # noqa: E402

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = "/rates?currency=USD,GBP"
SCRIPT = os.path.join(ROOT, "bench", "get.lua")


def broker_argv(port):
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            "broker", "--config", os.path.join("etc", "examples", "rates.yaml"),
            "--listen", f"tcp:{port}:interface={HOST}"]


def peer_argv(port):
    return [sys.executable, os.path.join("bench", "peers", "rates_twisted_web.py"), "--port", str(port)]


TARGETS = {"a": ("broker", broker_argv), "b": ("twisted.web", peer_argv)}


def check(port):
    status, body = http_request(HOST, port, "GET", PATH)
    rows = json.loads(body)
    return status == 200 and [r["currency"] for r in rows] == ["USD", "GBP"]


def one_run(key, args):
    name, argv = TARGETS[key]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    with ServerProcess(name, argv(port), env=env, cwd=ROOT).start() as server:
        server.wait_ready(lambda: check(port), timeout=30)
        quiet_guard()
        url = f"http://{HOST}:{port}{PATH}"
        cpu_before = group_cpu_seconds(server.pid)
        result, _raw, _cpu = run_wrk(url, args.duration, args.connections, 2, SCRIPT)
        cpu = group_cpu_seconds(server.pid) - cpu_before
    bad = result["non_2xx_3xx"] + sum(result["socket_errors"].values())
    cpu_us = cpu / max(result["requests"], 1) * 1e6       # the server's CPU per request
    return result["req_s"], result.get("p99_ms"), cpu_us, bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    results = {key: [] for key in TARGETS}
    cpus = {key: [] for key in TARGETS}
    for run in range(args.runs):
        for key in TARGETS:
            req_s, p99, cpu_us, bad = one_run(key, args)
            flag = "!" if bad > 10 else ""
            print(f"run {run + 1} {TARGETS[key][0]:12} {req_s:10.0f} req/s  p99 {p99} ms  "
                  f"{cpu_us:6.0f} us CPU/req {flag}", flush=True)
            if not flag:
                results[key].append(req_s)
                cpus[key].append(cpu_us)
    medians = {key: statistics.median(v) if v else None for key, v in results.items()}
    cpu_medians = {key: statistics.median(v) if v else None for key, v in cpus.items()}
    for key, (name, _) in TARGETS.items():
        print(f"median {name:12} {medians[key] or 0:10.0f} req/s  {cpu_medians[key] or 0:6.0f} us CPU/req")
    if medians["a"] and medians["b"]:
        print(f"ratio broker / twisted.web: throughput {medians['a'] / medians['b']:.2f}, "
              f"CPU per request {cpu_medians['a'] / cpu_medians['b']:.2f}")


if __name__ == "__main__":
    main()
