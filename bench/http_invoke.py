"""HTTP invoke bench: the broker's demo.echo against twisted.web, FastAPI/uvicorn and a bare httptools echo.

Every target gets the same POST ``{"text":"hello","repeat":2}`` (application/json) from
``wrk -t2 -c50 -d10s --latency -s bench/post.lua`` on loopback. Runs are interleaved (a, b, c, d, a, b, c, d, ...) so
drift hits all targets alike; each run starts its server fresh on a free port, checks one answer, waits for a quiet
box, runs wrk and stops the server. Prints req/s per run, medians, p50/p99 of the median run and the ratios the broker
must reach (a/b >= 2.5, a/c >= 3, a/d >= 0.5; e/a >= 0.85: a bearer JWT and a rate limit cost at most 15%
against Basic Auth), and writes everything to bench/results/http_invoke-<timestamp>.json.

    pip install -r bench/requirements.txt && python bench/http_invoke.py [--only a,b,c,d] [--duration 10] [--runs 3]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata

import harness
import wrkrun
from targets import BODY, EXPECTED, HOST, ROOT, make_targets

THREADS = 2
ALLOWED_ERRORS = 10  # non-2xx/3xx responses + socket errors tolerated in one run before it is excluded
QUIET_IDLE, QUIET_WAIT = 0.80, 10.0
RATIOS = [("a", "b", 2.5), ("a", "c", 3.0), ("a", "d", 0.5), ("e", "a", 0.85)]
ALIASES = {"broker": "a", "jwt": "e", "broker-jwt": "e", "twisted": "b", "twisted.web": "b", "fastapi": "c", "uvicorn": "c", "httptools": "d"}
PACKAGES = ("twisted", "httptools", "fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "pyyaml")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run [10]")
    p.add_argument("--runs", type=int, default=3, help="runs per target, interleaved [3]")
    p.add_argument("--connections", type=int, default=50, help="wrk connections [50]")
    p.add_argument("--only", default="a,b,c,d,e",
                   help="targets to run, e.g. b,c,d or broker,fastapi or a,e (Basic vs JWT) [a,b,c,d,e]")
    p.add_argument("--json", dest="json_path", help="write results here [bench/results/http_invoke-<ts>.json]")
    args = p.parse_args(argv)
    keys = []
    for item in filter(None, (s.strip().lower() for s in args.only.split(","))):
        key = ALIASES.get(item, item)
        if key not in "abcde" or len(key) != 1:
            p.error(f"--only: unknown target {item!r} (use a,b,c,d or broker,twisted,fastapi,httptools)")
        if key not in keys:
            keys.append(key)
    args.only = sorted(keys)
    if args.runs < 1 or args.duration < 1 or args.connections < THREADS:
        p.error("--runs and --duration must be >= 1, --connections >= 2")
    return args


def scrub(text):
    """Drop this machine's paths from text headed for the results file."""
    for path, name in ((ROOT, "<repo>"), (sys.prefix, "<python>"), (os.path.expanduser("~"), "~")):
        if path and path not in ("/", "~"):
            text = text.replace(path, name)
    return text


def one_run(target, args):
    """Start the target, check it, wait for quiet, run wrk, stop it. Returns a run dict (raises StartError)."""
    port = harness.free_port(HOST)
    env = dict(os.environ, **target.env)
    with harness.ServerProcess(target.name, target.argv(port), env=env, cwd=ROOT).start() as server:
        server.wait_ready(lambda: target.ready(port), timeout=target.start_timeout)
        status, body = harness.http_request(HOST, port, "POST", target.path, BODY, target.headers())
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200 or answer != EXPECTED:
            raise harness.StartError(f"correctness check failed: POST {target.path} gave {status} "
                                     f"{body[:300]!r}, expected 200 {json.dumps(EXPECTED)}")
        quiet = harness.quiet_guard(QUIET_IDLE, QUIET_WAIT)
        busy0, _ = harness.box_cpu()
        cpu0 = harness.group_cpu_seconds(server.pid)
        wrk_env = {"BENCH_AUTHORIZATION": target.authorization}
        url = f"http://{HOST}:{port}{target.path}"
        stats, raw, wrk_cpu = wrkrun.run_wrk(url, args.duration, args.connections, THREADS,
                                             os.path.join(ROOT, "bench", "post.lua"), wrk_env)
        server_cpu = harness.group_cpu_seconds(server.pid) - cpu0
        busy = harness.box_cpu()[0] - busy0
    errors = stats["non_2xx_3xx"] + sum(stats["socket_errors"].values())
    return dict(stats, quiet=quiet, errors=errors, valid=errors <= ALLOWED_ERRORS,
                server_cpu_s=round(server_cpu, 2), wrk_cpu_s=round(wrk_cpu, 2),
                foreign_cpu_s=round(max(0.0, busy - server_cpu - wrk_cpu), 2),
                server_us_per_req=round(server_cpu / stats["requests"] * 1e6, 1) if stats["requests"] else None,
                wrk_output=raw)


def run_all(args, targets):
    """The interleaved loop. A target that fails to start or answer wrongly is dropped for the remaining rounds."""
    results = {k: {"name": t.name, "description": t.description, "command": t.command, "path": t.path,
                   "status": "pending", "reason": None, "runs": [], "failed_runs": []} for k, t in targets.items()}
    active = []
    for key, target in targets.items():
        reason = target.unavailable()
        if reason:
            results[key].update(status="skipped", reason=reason)
            print(f"  {key} {target.name}: SKIPPED - {reason}", flush=True)
        else:
            active.append(key)
    for round_no in range(1, args.runs + 1):
        for key in list(active):
            target = targets[key]
            label = f"[run {round_no}/{args.runs}] {key} {target.name}"
            try:
                run = one_run(target, args)
            except (harness.StartError, wrkrun.WrkError, OSError) as error:
                if results[key]["runs"]:  # it worked before: note this run's failure, keep the target
                    results[key]["failed_runs"].append(f"run {round_no}: " + scrub(str(error)))
                    print(f"{label}: FAILED - {error}", flush=True)
                    continue
                results[key].update(status="failed", reason=scrub(str(error)))
                active.remove(key)
                print(f"{label}: FAILED - {error}\n    ({target.name} dropped from the remaining runs)", flush=True)
                continue
            results[key]["runs"].append(run)
            results[key]["status"] = "ok"
            print(f"{label}: {run['req_s']:>9,.0f} req/s  p50 {run.get('p50_ms', 0):.2f} ms  "
                  f"p99 {run.get('p99_ms', 0):.2f} ms{run_notes(run, prefix='  ')}", flush=True)
    for res in results.values():
        summarise(res)
    return results


def run_notes(run, prefix=""):
    """Warnings about one run: guard not met, errors, CPU used by other processes."""
    notes = []
    if not run["quiet"]["met"]:
        notes.append(f"quiet guard not met (idle {run['quiet']['idle']:.0%} after {run['quiet']['waited_s']} s)")
    if run["errors"]:
        sock = ", ".join(f"{k} {v}" for k, v in run["socket_errors"].items() if v)
        notes.append(f"{run['non_2xx_3xx']} non-2xx/3xx" + (f", socket errors: {sock}" if sock else "")
                     + ("" if run["valid"] else " -> excluded"))
    if run["foreign_cpu_s"] > 1.0:
        notes.append(f"foreign CPU {run['foreign_cpu_s']} s")
    return (prefix + "; ".join(notes)) if notes else ""


def summarise(res):
    """Median req/s over valid runs and the run that sits at the median (for its latencies)."""
    valid = sorted((r for r in res["runs"] if r["valid"]), key=lambda r: r["req_s"])
    res["median_req_s"] = statistics.median(r["req_s"] for r in valid) if valid else None
    mid = valid[(len(valid) - 1) // 2] if valid else None
    res["median_run"] = {k: mid.get(k) for k in ("req_s", "p50_ms", "p75_ms", "p90_ms", "p99_ms",
                                                 "server_us_per_req")} if mid else None
    if len(valid) > 1:
        res["spread"] = round((valid[-1]["req_s"] - valid[0]["req_s"]) / res["median_req_s"], 3)
    if res["status"] == "ok" and not valid:
        res.update(status="failed", reason=f"every run had more than {ALLOWED_ERRORS} errors")


def compute_ratios(results):
    out = []
    for num, den, goal in RATIOS:
        a, b = results.get(num, {}).get("median_req_s"), results.get(den, {}).get("median_req_s")
        value = round(a / b, 3) if a and b else None
        verdict = "n/a" if value is None else ("PASS" if value >= goal else "MISS")
        out.append({"ratio": f"{num}/{den}", "value": value, "target": goal, "verdict": verdict})
    return out


def print_report(args, targets, results, ratios):
    print()
    print(f"POST {BODY.decode()} (application/json); wrk -t{THREADS} -c{args.connections} -d{args.duration}s "
          f"--latency, {args.runs} run(s) per target, interleaved; quiet guard idle >= {QUIET_IDLE:.0%} "
          f"(wait <= {QUIET_WAIT:.0f} s)")
    for key, target in targets.items():
        print(f"  {key} {target.name:<12} {target.description}")
    print()
    width = max(24, 10 * args.runs)
    print(f"{'target':<15} {'runs (req/s)':<{width}} {'median':>9} {'p50 ms':>8} {'p99 ms':>8} {'srv us/req':>10}"
          f" {'spread':>7}")
    for key, res in results.items():
        name = f"{key} {res['name']}"
        runs = "  ".join(f"{r['req_s']:,.0f}" + ("" if r["valid"] else "!") for r in res["runs"])
        mid = res["median_run"]
        if mid:
            spread = f"{res['spread']:.0%}" if "spread" in res else "-"
            print(f"{name:<15} {runs:<{width}} {res['median_req_s']:>9,.0f} {mid['p50_ms']:>8.2f} "
                  f"{mid['p99_ms']:>8.2f} {mid['server_us_per_req'] or 0:>10.0f} {spread:>7}")
        elif runs:
            print(f"{name:<15} {runs:<{width}} {'-':>9}")
        if res["status"] != "ok" or res["reason"]:
            lines = res["reason"].splitlines()  # first line, and the last one (the error under a traceback)
            print(f"{'' if runs else name:<15} {res['status'].upper()}: {lines[0]}")
            if len(lines) > 1:
                print(f"{'':15} {'...' if len(lines) > 2 else ''}{lines[-1].strip().lstrip('| ')}")
        for failure in res["failed_runs"]:
            print(f"{'':15}   {failure.splitlines()[0]}")
        for i, run in enumerate(res["runs"], 1):
            notes = run_notes(run)
            if notes:
                print(f"{'':15}   run {i}: {notes}")
    print()
    print(f"{'ratio':<8} {'value':>7} {'target':>8}  verdict")
    for r in ratios:
        value = f"{r['value']:.2f}" if r["value"] is not None else "-"
        print(f"{r['ratio']:<8} {value:>7} {'>= ' + str(r['target']):>8}  {r['verdict']}")


def environment():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "wrk": wrkrun.wrk_version(), "packages": versions}


def main(argv=None):
    args = parse_args(argv)
    try:
        env = environment()
    except wrkrun.WrkError as error:
        print(f"http_invoke: {error}", file=sys.stderr)
        return 2
    all_targets = make_targets()
    targets = {k: all_targets[k] for k in args.only}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"http_invoke: targets {','.join(targets)}, {args.runs} x {args.duration} s each, {env['wrk']}", flush=True)
    results = run_all(args, targets)
    ratios = compute_ratios(results)
    print_report(args, targets, results, ratios)

    path = args.json_path or os.path.join(
        ROOT, "bench", "results", f"http_invoke-{started.replace('-', '').replace(':', '')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    doc = {"bench": "http_invoke", "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "settings": {"duration_s": args.duration, "runs": args.runs, "connections": args.connections,
                        "threads": THREADS, "body": BODY.decode(), "content_type": "application/json",
                        "order": "interleaved", "allowed_errors_per_run": ALLOWED_ERRORS,
                        "quiet_guard": {"min_idle": QUIET_IDLE, "max_wait_s": QUIET_WAIT}},
           "environment": env, "targets": results, "ratios": ratios}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"\nresults: {args.json_path or os.path.relpath(path)}")
    return 0 if any(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
