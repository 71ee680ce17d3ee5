"""Publish → WebSocket fan-out: the broker against Crossbar.io, in the same run.

(a) server CPU per delivery and deliveries/s for 1, 10 and 100 subscribers
    (a paced HTTP publisher, ``--rate`` messages/s for ``--duration`` s);
(b) publish → receive latency p50/p99 at 100 subscribers (the same runs);
(c) HTTP publish throughput with no subscribers (wrk).

Server CPU comes from /proc (the server's process group); subscribers run in
several client processes (``--procs``) so they are not the bottleneck, and
their CPU is reported too.  Crossbar runs from its own venv
(``.venv-crossbar``, see bench/README.md); without it only the broker runs
and no ratios are printed.

    python bench/fanout.py [--runs 1] [--rate 50] [--duration 5] [--only broker,crossbar]
    python bench/fanout.py --only broker,broker-w2 --rate 2000 --subscribers 100   # workers
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from harness import ServerProcess, StartError, box_cpu, free_port, group_cpu_seconds, http_request  # noqa: E402

CROSSBAR_VENV = Path(os.environ.get("CROSSBAR_VENV", ROOT / ".venv-crossbar"))
PAD = "x" * 64


class Broker:
    name = "broker"
    kind = "broker"
    python = sys.executable
    extra = []

    def start(self):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                "broker", "--config", str(HERE / "pubsub-bench.yaml"),
                "--listen", f"tcp:{self.port}:interface=127.0.0.1", *self.extra]
        self.server = ServerProcess("broker", argv, env=env, cwd=str(ROOT)).start()
        self.server.wait_ready(lambda: http_request("127.0.0.1", self.port, "GET", "/broker/ping")[0] == 200)
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.publish_path = "/broker/publish/bench.t"

    def body(self, data):
        return json.dumps(data)


class BrokerWorkers(Broker):
    """The broker as 2 worker processes: subscribers spread over both (the kernel hands each
    connection to a worker), every publish reaching them through the main process."""

    name = "broker-w2"
    extra = ["--workers", "2"]


class Crossbar:
    name = "crossbar"
    kind = "wamp"
    python = str(CROSSBAR_VENV / "bin" / "python")

    @staticmethod
    def available():
        return (CROSSBAR_VENV / "bin" / "crossbar").exists()

    def start(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-crossbar-")
        config = json.loads((HERE / "peers" / "crossbar" / ".crossbar" / "config.json").read_text())
        config["workers"][0]["transports"][0]["endpoint"]["port"] = self.port
        cbdir = Path(self.dir) / ".crossbar"
        cbdir.mkdir()
        (cbdir / "config.json").write_text(json.dumps(config))
        argv = [str(CROSSBAR_VENV / "bin" / "crossbar"), "start", "--cbdir", str(cbdir), "--loglevel", "warn"]
        self.server = ServerProcess("crossbar", argv, cwd=self.dir).start()
        self.server.wait_ready(lambda: http_request("127.0.0.1", self.port, "GET", "/json")[0] == 200,
                                 timeout=60)
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.publish_path = "/publish"

    def body(self, data):
        return json.dumps({"topic": "bench.t", "args": [data]})


def percentile(values, pct):
    if not values:
        return None
    return values[min(len(values) - 1, int(round(pct / 100 * (len(values) - 1))))]


def fanout_run(target, subscribers, rate, duration, procs):
    """One paced run: subscribers in ``procs`` processes, ``rate`` publishes/s for ``duration`` s."""
    count = int(rate * duration)
    work = tempfile.mkdtemp(prefix="bench-fanout-")
    split = [subscribers // procs + (i < subscribers % procs) for i in range(min(procs, subscribers))]
    clients = []
    for i, n in enumerate(split):
        argv = [target.python, str(HERE / "fanout_subs.py"), "--kind", target.kind, "--url", target.ws_url,
                "--n", str(n), "--expect", str(count), "--idle", "5", "--max-time", str(duration + 60),
                "--ready", f"{work}/ready{i}", "--out", f"{work}/out{i}.json"]
        clients.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    deadline = time.monotonic() + 60
    while not all(os.path.exists(f"{work}/ready{i}") for i in range(len(split))):
        if time.monotonic() > deadline or any(c.poll() is not None for c in clients):
            for c in clients:
                c.kill()
            errors = b"".join(c.stderr.read() or b"" for c in clients if c.poll() is not None)
            raise RuntimeError(f"subscribers did not join: {errors.decode()[-800:]}")
        time.sleep(0.05)
    time.sleep(0.5)
    cpu0, box0 = group_cpu_seconds(target.server.pid), box_cpu()
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    rtts, bad, started = [], 0, time.time()
    for seq in range(count):
        delay = started + seq / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        t = time.time()
        conn.request("POST", target.publish_path, target.body({"t": t, "seq": seq, "pad": PAD}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        bad += response.status != 200
        rtts.append(time.time() - t)
    conn.close()
    for c in clients:
        c.wait(duration + 90)
    cpu1, box1 = group_cpu_seconds(target.server.pid), box_cpu()
    outs = [json.loads(Path(f"{work}/out{i}.json").read_text()) for i in range(len(split))]
    shutil.rmtree(work, ignore_errors=True)
    lats = sorted(x for o in outs for x in o["lats"])
    deliveries = sum(o["deliveries"] for o in outs)
    spans = [o["span_s"] for o in outs if o["span_s"]]
    server_cpu = cpu1 - cpu0
    client_cpu = sum(o["client_cpu_s"] for o in outs)
    return {
        "subscribers": subscribers, "published": count, "publish_errors": bad, "deliveries": deliveries,
        "expected": count * subscribers, "min_per_sub": min(o["min_per_sub"] for o in outs),
        "deliveries_per_s": round(deliveries / max(spans), 1) if spans else None,
        "server_cpu_s": round(server_cpu, 3),
        "server_us_per_delivery": round(server_cpu / deliveries * 1e6, 1) if deliveries else None,
        "client_cpu_s": round(client_cpu, 2),
        "foreign_cpu_s": round((box1[0] - box0[0]) - server_cpu - client_cpu, 2),
        "lat_ms": {k: round(percentile(lats, p) * 1000, 2) if lats else None
                   for k, p in (("p50", 50), ("p99", 99), ("max", 100))},
        "post_rtt_ms_p50": round(percentile(sorted(rtts), 50) * 1000, 2),
    }


def publish_throughput(target, duration, connections):
    """(c): wrk POSTs publishes flat out with no subscriber."""
    if shutil.which("wrk") is None:
        return {"error": "wrk not on PATH (apt-get install wrk)"}
    from wrkrun import run_wrk
    body = target.body({"t": 0, "seq": 0, "pad": PAD})
    cpu0 = group_cpu_seconds(target.server.pid)
    parsed, _raw, wrk_cpu = run_wrk(f"http://127.0.0.1:{target.port}{target.publish_path}", duration,
                                    connections, 1, str(HERE / "publish.lua"), {"BENCH_BODY": body})
    cpu = group_cpu_seconds(target.server.pid) - cpu0
    return {"publish_per_s": parsed["req_s"], "p50_ms": parsed.get("p50_ms"), "p99_ms": parsed.get("p99_ms"),
            "non_2xx": parsed["non_2xx_3xx"], "server_cpu_s": round(cpu, 2),
            "server_us_per_publish": round(cpu / parsed["requests"] * 1e6, 1) if parsed["requests"] else None}


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--subscribers", default="1,10,100")
    p.add_argument("--procs", type=int, default=4, help="subscriber processes")
    p.add_argument("--wrk-duration", type=int, default=5)
    p.add_argument("--only", default="broker,crossbar")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    targets = []
    for name in a.only.split(","):
        if name == "broker":
            targets.append(Broker())
        elif name == "broker-w2":
            targets.append(BrokerWorkers())
        elif name == "crossbar":
            if Crossbar.available():
                targets.append(Crossbar())
            else:
                print(f"crossbar: skipped, no {CROSSBAR_VENV}/bin/crossbar "
                      "(python3 -m venv .venv-crossbar && .venv-crossbar/bin/pip install crossbar)")
    sizes = [int(n) for n in a.subscribers.split(",")]
    results = {t.name: {"fanout": {n: [] for n in sizes}, "publish": []} for t in targets}
    load = os.getloadavg()
    for run in range(a.runs):
        for target in targets:          # interleaved: drift hits both alike
            try:
                target.start()
            except StartError as error:
                print(f"{target.name}: did not start: {error}")
                if getattr(target, "server", None) is not None:
                    target.server.stop()        # the process (group) that did not get ready
                continue
            try:
                for n in sizes:
                    r = fanout_run(target, n, a.rate, a.duration, a.procs)
                    results[target.name]["fanout"][n].append(r)
                    print(f"run {run + 1} {target.name:8} N={n:<3} deliveries {r['deliveries']}/{r['expected']} "
                          f"{r['deliveries_per_s']}/s  server {r['server_us_per_delivery']} µs/delivery "
                          f"({r['server_cpu_s']} s)  lat p50 {r['lat_ms']['p50']} p99 {r['lat_ms']['p99']} ms  "
                          f"clients {r['client_cpu_s']} s  foreign {r['foreign_cpu_s']} s", flush=True)
                pub = publish_throughput(target, a.wrk_duration, 16)
                results[target.name]["publish"].append(pub)
                print(f"run {run + 1} {target.name:8} HTTP publish, no subscribers: {pub}", flush=True)
            finally:
                target.server.stop()
                if getattr(target, "dir", None):
                    shutil.rmtree(target.dir, ignore_errors=True)
    print(f"\nload average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores shared with other work)")
    summary = {}
    for name, res in results.items():
        summary[name] = {
            "us_per_delivery": {n: median([r["server_us_per_delivery"] for r in rs]) for n, rs in res["fanout"].items()},
            "deliveries_per_s": {n: median([r["deliveries_per_s"] for r in rs]) for n, rs in res["fanout"].items()},
            "p50_ms": {n: median([r["lat_ms"]["p50"] for r in rs]) for n, rs in res["fanout"].items()},
            "p99_ms": {n: median([r["lat_ms"]["p99"] for r in rs]) for n, rs in res["fanout"].items()},
            "publish_per_s": median([r.get("publish_per_s") for r in res["publish"]]),
        }
        s = summary[name]
        print(f"{name:8}  µs/delivery {s['us_per_delivery']}  deliveries/s {s['deliveries_per_s']}  "
              f"p50 {s['p50_ms']}  p99 {s['p99_ms']}  publish/s {s['publish_per_s']}")
    if "broker" in summary and "broker-w2" in summary:
        b, w = summary["broker"], summary["broker-w2"]
        print("\nratios (broker --workers 2 / broker, one process):")
        for n in sizes:
            if b["deliveries_per_s"][n] and w["deliveries_per_s"][n]:
                ratio = w["deliveries_per_s"][n] / b["deliveries_per_s"][n]
                print(f"  deliveries/s, N={n}: {ratio:.3f}  (target >= 1.3 at a rate that saturates one "
                      f"process: {'PASS' if ratio >= 1.3 else 'MISS'})")
    if "broker" in summary and "crossbar" in summary:
        b, c = summary["broker"], summary["crossbar"]
        print("\nratios (broker / crossbar):")
        for n in sizes:
            if b["us_per_delivery"][n] and c["us_per_delivery"][n]:
                ratio = b["us_per_delivery"][n] / c["us_per_delivery"][n]
                print(f"  (a) CPU per delivery, N={n}: {ratio:.3f}  (target <= 0.25: "
                      f"{'PASS' if ratio <= 0.25 else 'MISS'})")
        top = max(sizes)
        if b["p99_ms"][top] and c["p99_ms"][top]:
            ratio = b["p99_ms"][top] / c["p99_ms"][top]
            print(f"  (b) p99 latency at N={top}: {ratio:.3f}  (target <= 1: {'PASS' if ratio <= 1 else 'MISS'})")
        if b["publish_per_s"] and c["publish_per_s"]:
            ratio = b["publish_per_s"] / c["publish_per_s"]
            print(f"  (c) HTTP publish throughput: {ratio:.2f}x  (target >= 3: {'PASS' if ratio >= 3 else 'MISS'})")
    out = a.json or str(HERE / "results" / f"fanout-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"results": results, "summary": summary, "args": vars(a), "loadavg": load}, f, indent=1,
                  default=str)
    print(f"figures: {out}")


if __name__ == "__main__":
    main()
