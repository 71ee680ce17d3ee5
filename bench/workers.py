"""Workers bench: the http_invoke workload against one process, ``--workers 1`` and ``--workers 2``.

The same POST of demo.echo (basic auth, bench/broker-bench.yaml) from
``wrk -t2 -c50 --latency -s bench/post.lua``, runs interleaved (w0, w1, w2, w0, ...), each
server fresh on a free port. On a 2-core box wrk shares the cores with the workers, so it
reports both throughput and the server's CPU per request (every process of the node: the
main process and its workers). Targets (issue 13): req/s with 2 workers >= 1.4x 1 worker;
CPU per request with 2 workers <= 1.15x 1 worker. Writes bench/results/workers-<ts>.json.

    python bench/workers.py [--duration 10] [--runs 3]
"""

import argparse
import json
import os
import statistics
import sys
import time

import http_invoke
from targets import make_targets

RATIOS = [("w2", "w1", "req_s", 1.4, ">="), ("w2", "w1", "server_us_per_req", 1.15, "<="),
          ("w1", "w0", "req_s", 0.9, ">=")]


def targets():
    """The broker three ways: one process (w0), one worker (w1), two workers (w2)."""
    base = make_targets()["a"]
    found = {}
    for key, workers in (("w0", None), ("w1", 1), ("w2", 2)):
        extra = [] if workers is None else ["--workers", str(workers)]
        found[key] = base.__class__(**{
            **base.__dict__, "key": key,
            "name": "broker" if workers is None else f"broker --workers {workers}",
            "argv": (lambda argv, extra: lambda port: argv(port) + extra)(base.argv, extra),
            "command": base.command + (" " + " ".join(extra) if extra else "")})
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", type=int, default=50)
    args = p.parse_args(argv)
    found = targets()
    runs = {key: [] for key in found}
    for round_no in range(1, args.runs + 1):
        for key, target in found.items():
            run = http_invoke.one_run(target, args)
            runs[key].append(run)
            print(f"[run {round_no}/{args.runs}] {target.name}: {run['req_s']:>9,.0f} req/s  "
                  f"server {run['server_us_per_req']} us CPU/req  p99 {run.get('p99_ms', 0):.2f} ms"
                  f"{http_invoke.run_notes(run, prefix='  ')}", flush=True)
    medians = {key: {field: statistics.median(r[field] for r in rs)
                     for field in ("req_s", "server_us_per_req")} for key, rs in runs.items()}
    print("\nmedians:")
    for key, target in found.items():
        print(f"  {target.name:<22} {medians[key]['req_s']:>9,.0f} req/s  "
              f"{medians[key]['server_us_per_req']:>6.1f} us CPU/req")
    ratios = []
    for a, b, field, target, sense in RATIOS:
        ratio = medians[a][field] / medians[b][field]
        ok = ratio >= target if sense == ">=" else ratio <= target
        ratios.append({"a": a, "b": b, "field": field, "ratio": round(ratio, 3), "target": f"{sense} {target}",
                       "met": ok})
        print(f"  {found[a].name} / {found[b].name} {field}: {ratio:.2f} (target {sense} {target}: "
              f"{'met' if ok else 'NOT met'})")
    out = os.path.join(os.path.dirname(__file__), "results",
                       f"workers-{time.strftime('%Y%m%dT%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"medians": medians, "ratios": ratios, "cpus": os.cpu_count(),
                   "runs": {k: [{f: r[f] for f in ("req_s", "server_us_per_req", "p50_ms", "p99_ms", "errors")
                                 if f in r} for r in rs] for k, rs in runs.items()}}, f, indent=2)
    print(f"\nwritten to {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
