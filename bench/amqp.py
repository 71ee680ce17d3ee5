"""AMQP throughput: the broker against bare pika Twisted clients, in the same run.

(a) consume: COUNT messages waiting in a queue are consumed → ``demo.echo`` →
    acked by the broker's ``amqp`` channel (prefetch 500), vs a bare pika
    Twisted consumer doing only the ack (same prefetch).  Timed from the first
    delivery to the last ack (the broker's by a bench service checking its
    channel's counters in-process every millisecond).
(b) publish: COUNT publishes with publisher confirms through an outgoing
    ``amqp`` connection (``self.out.amqp["bench"].publish(dict)``, window 1000),
    vs a bare pika Twisted publisher with confirms (pre-encoded body, window 1000).

Runs are interleaved (broker, peer, broker, peer...) against the RabbitMQ on
127.0.0.1:5672 (guest/guest), queues transient and unique per run.  Prints
msgs/s per run, medians and the ratios broker/peer (target ≥ 0.9).

Usage: python bench/amqp.py [--count 30000] [--runs 3] [--json PATH]
"""

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from harness import ServerProcess, free_port, http_request, quiet_guard  # noqa: E402

PREFETCH, WINDOW = 500, 1000
WARMUP = 5000  # untimed messages first, for both sides (allocator and caches warm up)


def blocking():
    import pika
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", 5672, "/", pika.PlainCredentials("guest", "guest")))


def fill(queue, count):
    """Declare ``queue`` (transient) and put ``count`` demo.echo inputs in it."""
    connection = blocking()
    channel = connection.channel()
    channel.queue_declare(queue)
    body = json.dumps({"text": "hello", "repeat": 2}).encode()
    for _ in range(count):
        channel.basic_publish("", queue, body)
    connection.close()


def delete(*queues):
    connection = blocking()
    channel = connection.channel()
    for queue in queues:
        channel.queue_delete(queue)
    connection.close()


def broker_run(count):
    """Consume then publish through one broker process: ``(consume msgs/s, publish msgs/s)``."""
    tag = secrets.token_hex(4)
    consume_q, publish_q = f"bench.consume.{tag}", f"bench.publish.{tag}"
    fill(consume_q, count + WARMUP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CONSUME_QUEUE": consume_q,
           "BENCH_PUBLISH_QUEUE": publish_q}
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
            "--pidfile=", "broker", "--config", str(HERE / "amqp-bench.yaml"),
            "--listen", f"tcp:{port}:interface=127.0.0.1"]
    server = ServerProcess("broker-amqp", argv, env=env, cwd=str(ROOT)).start()
    try:
        server.wait_ready(lambda: http_request("127.0.0.1", port, "GET", "/broker/ping")[0] == 200)
        status, body = http_request("127.0.0.1", port, "POST", "/bench/amqp/wait-acked",
                                    json.dumps({"count": count, "warmup": WARMUP}), timeout=600)
        if status != 200:
            raise RuntimeError(f"consume bench failed: {status} {body[:300]!r}")
        answer = json.loads(body)
        consume = {"rate": answer["messages"] / answer["seconds"],
                   "cpu_us": answer["cpu"] / answer["messages"] * 1e6}
        status, body = http_request("127.0.0.1", port, "POST", "/bench/amqp/publish",
                                    json.dumps({"count": count, "warmup": WARMUP}), timeout=600)
        if status != 200:
            raise RuntimeError(f"publish bench failed: {status} {body[:300]!r}")
        answer = json.loads(body)
        publish = {"rate": count / answer["seconds"], "cpu_us": answer["cpu"] / count * 1e6}
        return consume, publish
    finally:
        server.stop()
        delete(consume_q, publish_q)


def peer_run(count):
    """The bare pika Twisted consumer and publisher: ``(consume msgs/s, publish msgs/s)``."""
    tag = secrets.token_hex(4)
    consume_q, publish_q = f"bench.consume.{tag}", f"bench.publish.{tag}"
    fill(consume_q, count + WARMUP)
    try:
        out = subprocess.run([sys.executable, str(HERE / "peers" / "pika_consumer.py"), consume_q,
                              str(count), str(PREFETCH), str(WARMUP)], capture_output=True, text=True,
                             timeout=600, check=True).stdout
        consume = _figures(out, count)
        connection = blocking()
        connection.channel().queue_declare(publish_q)
        connection.close()
        out = subprocess.run([sys.executable, str(HERE / "peers" / "pika_publisher.py"), publish_q,
                              str(count), str(WINDOW), str(WARMUP)], capture_output=True, text=True,
                             timeout=600, check=True).stdout
        publish = _figures(out, count)
        return consume, publish
    finally:
        delete(consume_q, publish_q)


def _figures(out, count):
    answer = json.loads(out)
    return {"rate": count / answer["seconds"], "cpu_us": answer["cpu"] / count * 1e6}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    results = {"broker": [], "pika": []}
    for run in range(args.runs):
        for name, fn in (("broker", broker_run), ("pika", peer_run)):
            guard = quiet_guard()
            consume, publish = fn(args.count)
            results[name].append({"consume": consume, "publish": publish, "quiet": guard})
            print(f"run {run + 1} {name:6}  consume {consume['rate']:7.0f} msgs/s "
                  f"{consume['cpu_us']:5.1f} us CPU/msg   publish {publish['rate']:7.0f} msgs/s "
                  f"{publish['cpu_us']:5.1f} us CPU/msg"
                  f"{'' if guard['met'] else '   (box busy: idle ' + str(guard['idle']) + ')'}",
                  flush=True)
    print()
    summary = {}
    for test in ("consume", "publish"):
        broker = statistics.median(r[test]["rate"] for r in results["broker"])
        peer = statistics.median(r[test]["rate"] for r in results["pika"])
        broker_cpu = statistics.median(r[test]["cpu_us"] for r in results["broker"])
        peer_cpu = statistics.median(r[test]["cpu_us"] for r in results["pika"])
        ratio, cpu_ratio = broker / peer, peer_cpu / broker_cpu
        summary[test] = {"broker": broker, "pika": peer, "ratio": ratio, "broker_cpu_us": broker_cpu,
                         "pika_cpu_us": peer_cpu, "cpu_ratio": cpu_ratio}
        print(f"{test:8} median: broker {broker:7.0f} msgs/s  bare pika {peer:7.0f} msgs/s  "
              f"ratio {ratio:.2f} {'PASS' if ratio >= 0.9 else 'MISS'} (target >= 0.9)   "
              f"CPU/msg broker {broker_cpu:.1f} us, pika {peer_cpu:.1f} us: ratio {cpu_ratio:.2f}")
    print("Note: broker, RabbitMQ and the clients share this box (and other users' work); the CPU "
          "ratio (pika's CPU per message / the broker's) is the steadier figure on a busy box.")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
