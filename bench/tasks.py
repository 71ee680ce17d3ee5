"""Async invocations with pushed results against synchronous ones, through the same broker.

(a) ``--tasks`` POSTs ``{"service": "demo.echo", "data": ..., "async": true}`` to
    ``/broker/invoke`` (each answered 202 with a task id) while one WebSocket,
    subscribed to ``broker.tasks.*`` with the same credentials, receives every
    result; the clock stops when the last result arrived: completed tasks/s.
(b) the same number of synchronous POSTs of the same call: req/s.

Both use the same client: ``--connections`` keep-alive HTTP/1.1 connections in one
asyncio process, each sending its next request when the answer came.  Runs are
interleaved (a, b, a, b...); medians of ``--runs``; target a/b >= 0.5.

    python bench/tasks.py [--tasks 10000] [--runs 3] [--connections 50]
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from harness import ServerProcess, free_port, group_cpu_seconds, http_request  # noqa: E402


def start_broker(password):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROKER_BENCH_PASSWORD": password}
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            "broker", "--config", str(HERE / "tasks-bench.yaml"),
            "--listen", f"tcp:{port}:interface=127.0.0.1"]
    server = ServerProcess("broker", argv, env=env, cwd=str(ROOT)).start()
    server.wait_ready(lambda: http_request("127.0.0.1", port, "GET", "/broker/ping")[0] == 200)
    return server, port


async def http_worker(port, request, count, answers):
    """Send ``count`` requests one after another on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            answers.append((status, body))
    finally:
        writer.close()


def build_request(port, auth, body):
    data = json.dumps(body, separators=(",", ":")).encode()
    return (b"POST /broker/invoke HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (port, auth.encode(), len(data), data))


async def run_http(port, auth, body, total, connections):
    request = build_request(port, auth, body)
    answers = []
    per = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    await asyncio.gather(*(http_worker(port, request, n, answers) for n in per if n))
    return answers


async def run_sync(port, auth, total, connections):
    started = time.perf_counter()
    answers = await run_http(port, auth, {"service": "demo.echo", "data": {"text": "hello", "repeat": 2}},
                             total, connections)
    elapsed = time.perf_counter() - started
    bad = sum(1 for status, _ in answers if status != 200)
    return total / elapsed, bad


async def run_async(port, auth, total, connections):
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": auth},
                       max_size=None, max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "topic": "broker.tasks.*"}))
        reply = json.loads(await ws.recv())
        if reply.get("op") != "ok":
            raise RuntimeError(f"subscribe refused: {reply}")
        results = {"done": 0, "other": 0}

        async def receive():
            while results["done"] + results["other"] < total:
                frame = json.loads(await ws.recv())
                if frame.get("op") == "message":
                    if frame["data"]["status"] == "done" and frame["data"]["data"] == {"text": "hellohello"}:
                        results["done"] += 1
                    else:
                        results["other"] += 1

        started = time.perf_counter()
        receiver = asyncio.ensure_future(receive())
        answers = await run_http(port, auth, {"service": "demo.echo", "data": {"text": "hello", "repeat": 2},
                                              "async": True}, total, connections)
        accepted = sum(1 for status, _ in answers if status == 202)
        if accepted != total:
            receiver.cancel()
            raise RuntimeError(f"only {accepted} of {total} accepted: {answers[:1]}")
        await asyncio.wait_for(receiver, 120)
        elapsed = time.perf_counter() - started
    return total / elapsed, results["other"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    password = secrets.token_urlsafe(16)
    auth = "Basic " + base64.b64encode(f"bench:{password}".encode()).decode()
    figures = {"async": [], "sync": []}
    for run in range(1, args.runs + 1):
        for kind in ("async", "sync"):
            server, port = start_broker(password)
            try:
                fn = run_async if kind == "async" else run_sync
                server_before, client_before = group_cpu_seconds(server.proc.pid), time.process_time()
                rate, bad = asyncio.run(fn(port, auth, args.tasks, args.connections))
                server_cpu = group_cpu_seconds(server.proc.pid) - server_before
                client_cpu = time.process_time() - client_before
            finally:
                server.stop()
            figures[kind].append(rate)
            what = "completed tasks/s" if kind == "async" else "req/s            "
            print(f"run {run} {kind:5}: {rate:9.0f} {what}  server {server_cpu / args.tasks * 1e6:5.0f} µs "
                  f"and client {client_cpu / args.tasks * 1e6:5.0f} µs CPU per invocation"
                  + (f"  ({bad} not as expected)" if bad else ""), flush=True)
    a, s = statistics.median(figures["async"]), statistics.median(figures["sync"])
    ratio = a / s
    print(f"\n{args.tasks} invocations of demo.echo, {args.connections} connections, medians of {args.runs}:")
    print(f"  async (202 + result pushed over one WebSocket): {a:9.0f} completed tasks/s")
    print(f"  sync  (200 with the answer):                    {s:9.0f} req/s")
    print(f"  ratio async/sync: {ratio:.2f}  (target >= 0.5: {'PASS' if ratio >= 0.5 else 'MISS'})")


if __name__ == "__main__":
    main()
