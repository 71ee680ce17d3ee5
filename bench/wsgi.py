"""WSGI hosting bench: a Flask hello app hosted in the broker vs the same app in Crossbar's WSGI host.

Every target serves ``bench/peers/flask_hello.py`` (``GET /wsgi/`` → ``{"hello":"world"}``) and gets the
same ``wrk -t2 -c50 -d10s --latency`` on loopback, runs interleaved (a, b, c, a, b, c, ...), each server
started fresh on a free port:

  a  broker       twistd -n broker, a ``wsgi`` channel at /wsgi (threads: --threads, default 2)
  b  crossbar     Crossbar's ``wsgi`` web service (router worker, its thread pool); recipe in docs/wsgi.md
  c  twisted.web  twisted.web.wsgi.WSGIResource on a Site, no access log (the reference Crossbar builds on)

Prints req/s per run, the medians, p50/p99, server CPU µs per request, and the ratios a/b (target >= 2) and
a/c. Results go to bench/results/wsgi-<UTC timestamp>.json.

    pip install flask && python -m venv .venv-crossbar && .venv-crossbar/bin/pip install crossbar flask
    python bench/wsgi.py [--runs 3] [--duration 10] [--crossbar PATH] [--threads 2] [--only a,b,c]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import harness
import wrkrun

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
PATH = "/wsgi/"
EXPECTED = {"hello": "world"}
THREADS = 2
TARGET_RATIO = 2.0

BROKER_CONFIG = """\
name: wsgi-bench
http:
  listen: tcp:{port}:interface=127.0.0.1
  docs: false
channels:
  - name: hello
    type: wsgi
    path: /wsgi
    app: flask_hello:app
    python_path: [{peers}]
    threads: {threads}
"""

CROSSBAR_CONFIG = {
    "version": 2, "controller": {},
    "workers": [{"type": "router", "options": {"pythonpath": [".."]},
                 "realms": [{"name": "realm1", "roles": []}],
                 "transports": [{"type": "web",
                                 "endpoint": {"type": "tcp", "interface": HOST, "port": 0, "backlog": 1024},
                                 "paths": {"/": {"type": "json", "value": {"ok": True}},
                                           "wsgi": {"type": "wsgi", "module": "flask_hello",
                                                    "object": "app"}}}]}],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=2, help="the broker mount's WSGI threads [2]")
    p.add_argument("--crossbar", default=os.environ.get("CROSSBAR") or _default_crossbar(),
                   help="the crossbar executable [.venv-crossbar/bin/crossbar, or on PATH]")
    p.add_argument("--only", default="a,b,c")
    p.add_argument("--json", dest="json_path")
    return p.parse_args(argv)


def _default_crossbar():
    local = os.path.join(ROOT, ".venv-crossbar", "bin", "crossbar")
    return local if os.path.exists(local) else (shutil.which("crossbar") or local)


def broker_target(args, workdir):
    def argv(port):
        config = os.path.join(workdir, f"broker-{port}.yaml")
        with open(config, "w") as f:
            f.write(BROKER_CONFIG.format(port=port, peers=PEERS, threads=args.threads))
        return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                "broker", "--config", config]
    return "broker", argv, dict(os.environ, PYTHONPATH=ROOT), None


def crossbar_target(args, workdir):
    if not os.path.exists(args.crossbar):
        return None

    def argv(port):
        node = os.path.join(workdir, f"crossbar-{port}")
        cbdir = os.path.join(node, ".crossbar")
        os.makedirs(cbdir)
        shutil.copy(os.path.join(PEERS, "flask_hello.py"), node)
        config = json.loads(json.dumps(CROSSBAR_CONFIG))
        config["workers"][0]["transports"][0]["endpoint"]["port"] = port
        with open(os.path.join(cbdir, "config.json"), "w") as f:
            json.dump(config, f)
        return [args.crossbar, "start", "--cbdir", cbdir, "--loglevel", "warn"]
    return "crossbar", argv, dict(os.environ), workdir


def twisted_target(args, workdir):
    return ("twisted.web", lambda port: [sys.executable, os.path.join(PEERS, "twisted_wsgi.py"), str(port)],
            dict(os.environ), None)


def one_run(name, argv, env, cwd, args):
    port = harness.free_port(HOST)
    with harness.ServerProcess(name, argv(port), env=env, cwd=cwd or ROOT).start() as server:
        def ready():
            status, body = harness.http_request(HOST, port, "GET", PATH, timeout=2.0)
            return status == 200 and json.loads(body) == EXPECTED
        server.wait_ready(ready, timeout=60.0)
        quiet = harness.quiet_guard(0.80, 10.0)
        busy0, _ = harness.box_cpu()
        cpu0 = harness.group_cpu_seconds(server.pid)
        stats, raw, wrk_cpu = wrkrun.run_wrk(f"http://{HOST}:{port}{PATH}", args.duration, args.connections,
                                             THREADS, os.path.join(ROOT, "bench", "get.lua"))
        server_cpu = harness.group_cpu_seconds(server.pid) - cpu0
        busy = harness.box_cpu()[0] - busy0
    errors = stats["non_2xx_3xx"] + sum(stats["socket_errors"].values())
    return {**stats, "quiet": quiet, "server_cpu_s": round(server_cpu, 2), "wrk_cpu_s": round(wrk_cpu, 2),
            "foreign_cpu_s": round(max(0.0, busy - server_cpu - wrk_cpu), 2), "errors": errors,
            "valid": errors <= 10,
            "server_us_per_req": round(server_cpu / stats["requests"] * 1e6, 1) if stats["requests"] else None,
            "raw": raw}


def main(argv=None):
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="bench-wsgi-")
    makers = {"a": broker_target, "b": crossbar_target, "c": twisted_target}
    keys = [k.strip() for k in args.only.split(",") if k.strip() in makers]
    targets, results = {}, {}
    for key in keys:
        made = makers[key](args, workdir)
        if made is None:
            print(f"  {key}: SKIPPED - no crossbar at {args.crossbar} (see the recipe in docs/wsgi.md; "
                  f"c twisted.web.wsgi is the stand-in peer)")
            continue
        targets[key] = made
        results[key] = {"name": made[0], "runs": [], "failures": []}
    try:
        for n in range(1, args.runs + 1):
            for key, (name, make_argv, env, cwd) in targets.items():
                try:
                    run = one_run(name, make_argv, env, cwd, args)
                except (harness.StartError, wrkrun.WrkError, OSError) as error:
                    results[key]["failures"].append(str(error))
                    print(f"[run {n}] {key} {name}: FAILED - {str(error).splitlines()[0]}", flush=True)
                    continue
                results[key]["runs"].append(run)
                note = "" if run["quiet"]["met"] else f"  (box busy: idle {run['quiet']['idle']:.0%})"
                print(f"[run {n}] {key} {name:<12} {run['req_s']:>8,.0f} req/s  p50 {run.get('p50_ms', 0):.1f} ms"
                      f"  p99 {run.get('p99_ms', 0):.1f} ms  server {run['server_us_per_req']} us/req"
                      f"  foreign CPU {run['foreign_cpu_s']} s{note}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nGET {PATH} (Flask hello), wrk -t{THREADS} -c{args.connections} -d{args.duration}s, "
          f"{args.runs} interleaved runs; the box is shared: see foreign CPU")
    print(f"{'target':<15} {'median req/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'srv us/req':>10}")
    for key, res in results.items():
        valid = sorted((r for r in res["runs"] if r["valid"]), key=lambda r: r["req_s"])
        if not valid:
            print(f"{key} {res['name']:<13} {'-':>12}  FAILED {res['failures'][:1]}")
            continue
        mid = valid[(len(valid) - 1) // 2]
        res["median_req_s"] = statistics.median(r["req_s"] for r in valid)
        res["median_us_per_req"] = statistics.median(r["server_us_per_req"] for r in valid)
        print(f"{key} {res['name']:<13} {res['median_req_s']:>12,.0f} {mid.get('p50_ms', 0):>8.1f} "
              f"{mid.get('p99_ms', 0):>8.1f} {res['median_us_per_req']:>10.0f}")
    ratios = {}
    for other in ("b", "c"):
        if "median_req_s" in results.get("a", {}) and "median_req_s" in results.get(other, {}):
            a, o = results["a"], results[other]
            ratios[f"a/{other}"] = {"req_s": round(a["median_req_s"] / o["median_req_s"], 2),
                                    "cpu_per_req": round(o["median_us_per_req"] / a["median_us_per_req"], 2)}
            goal = " (target >= 2: " + ("PASS" if ratios[f"a/{other}"]["req_s"] >= TARGET_RATIO else "MISS") \
                + ")" if other == "b" else ""
            print(f"ratio a/{other} ({o['name']}): {ratios[f'a/{other}']['req_s']:.2f}x req/s{goal}, "
                  f"{ratios[f'a/{other}']['cpu_per_req']:.2f}x less server CPU per request")
    path = args.json_path or os.path.join(ROOT, "bench", "results",
                                          time.strftime("wsgi-%Y%m%dT%H%M%SZ.json", time.gmtime()))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "crossbar"}, "results": results,
                   "ratios": ratios}, f, indent=1)
    print(f"results: {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
