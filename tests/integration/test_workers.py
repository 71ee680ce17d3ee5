"""A node of two real worker processes behaves as one process.

Each test runs ``twistd -n broker --workers 2`` on a free port and checks what a client sees:
requests reach both workers; pub/sub, resume and the cache are the node's, not a worker's; a
job runs once per node; a killed worker comes back; reload (SIGHUP) and stop (SIGTERM) lose
no request.
"""

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess, twistd_command, wait_for
from tests.integration.amqp_support import blocking_connection, requires_rabbitmq, suffix
from tests.integration.broker_process import wait_until
from tests.integration.ws_client import WSClient

CONFIG = Path(__file__).with_name("configs") / "workers.yaml"


def start(*args, config=CONFIG, env=None):
    return BrokerProcess(config, env=env, args=["--workers", "2", *args]).start(timeout=60)


@pytest.fixture
def node():
    process = start()
    yield process
    process.stop(timeout=30)


def call(node, method, path, body=None):
    """One request on a new connection: (status, worker, decoded JSON body)."""
    status, headers, raw = node.request(method, path, json.dumps(body) if body is not None else None)
    return status, headers.get("x-broker-worker"), json.loads(raw) if raw else None


def both_workers(node, method="GET", path="/probe/where", body=None, tries=400):
    """Requests until each worker has answered one; {worker: [answers]}."""
    seen = {}
    for _ in range(tries):
        status, worker, answer = call(node, method, path, body)
        assert status == 200, answer
        seen.setdefault(worker, []).append(answer)
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered in {tries} requests")


def health(node):
    status, _, body = call(node, "GET", "/broker/health")
    return status, body


def test_requests_reach_both_workers_and_health_names_them(node):
    seen = both_workers(node)
    assert set(seen) == {"0", "1"}
    pids = {int(answers[0]["pid"]) for answers in seen.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    status, body = health(node)
    assert status == 200 and body["status"] == "ok"
    assert [w["id"] for w in body["workers"]] == [0, 1]
    assert {w["pid"] for w in body["workers"]} == pids
    assert [w["primary"] for w in body["workers"]] == [True, False]


def test_metrics_are_summed_over_the_workers(node):
    before = call(node, "GET", "/broker/metrics")[2]
    both_workers(node)
    after = call(node, "GET", "/broker/metrics")[2]
    per_worker = [w["counters"]["invoker"]["invocations"] for w in after["workers"]]
    assert all(n > 0 for n in per_worker)
    assert after["counters"]["invoker"]["invocations"] == sum(per_worker)
    assert after["counters"]["invoker"]["invocations"] > before["counters"]["invoker"]["invocations"]


def test_a_publish_taken_by_either_worker_reaches_a_subscriber_once_in_order(node):
    with WSClient(node.port) as ws:
        subscribed_on = ws.ws.response.headers["X-Broker-Worker"]
        assert ws.request("subscribe", topic="work.#")["op"] == "ok"
        takers = []
        for n in range(60):
            status, worker, _ = call(node, "POST", "/broker/publish/work.items", {"n": n})
            assert status in (200, 202)
            takers.append(worker)
        assert set(takers) == {"0", "1"}, "every publish reached the same worker"
        messages = ws.messages(60)
        assert [m["data"]["n"] for m in messages] == list(range(60))
        ids = [m["msg_id"] for m in messages]
        assert len(set(ids)) == 60
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # nothing twice
    assert subscribed_on in ("0", "1")


def connect_to_the_other_worker(node, previous, tries=100):
    """A WebSocket that reached another worker than ``previous`` (any, when it is None)."""
    for _ in range(tries):
        ws = WSClient(node.port)
        worker = ws.ws.response.headers["X-Broker-Worker"]
        if worker != previous:
            return ws, worker
        ws.close()
    raise AssertionError(f"every connection reached worker {previous}")


def test_resume_with_since_works_whichever_worker_a_client_comes_back_to(node):
    last = worker = None
    received, workers = [], []
    for round_ in range(6):
        ws, worker = connect_to_the_other_worker(node, worker)
        workers.append(worker)
        with ws:
            fields = {"topic": "work.resume"} if last is None else {"topic": "work.resume",
                                                                     "since": last}
            assert ws.request("subscribe", **fields)["op"] == "ok"
            for n in range(3):
                call(node, "POST", "/broker/publish/work.resume", {"round": round_, "n": n})
            got = ws.messages(3 if last is None else 6)
            received += got
            last = got[-1]["msg_id"]
            for n in range(3, 6):  # published while nobody listens: resumed next round
                call(node, "POST", "/broker/publish/work.resume", {"round": round_, "n": n})
    assert workers[:2] in (["0", "1"], ["1", "0"]) and workers[::2] == [workers[0]] * 3
    data = [(m["data"]["round"], m["data"]["n"]) for m in received]
    assert data == sorted(set(data)), "a message was lost, repeated or out of order"
    assert data[-1] == (5, 2) and len(data) == 6 * 3 + 5 * 3


def test_a_cache_value_set_through_one_worker_is_read_through_the_other(node):
    for attempt in range(50):
        key = f"k{attempt}"
        status, setter, _ = call(node, "POST", "/probe/cache/set", {"key": key, "value": "v" * 5})
        assert status == 200
        for _ in range(100):
            status, getter, answer = call(node, "POST", "/probe/cache/get", {"key": key})
            if getter != setter:
                assert answer["value"] == "vvvvv"
                return
    raise AssertionError("never read through the other worker")


def test_a_one_second_job_runs_once_per_node_not_once_per_worker(node):
    first = int(call(node, "GET", "/probe/ticks")[2]["ticks"])
    time.sleep(10)
    ticks = int(call(node, "GET", "/probe/ticks")[2]["ticks"]) - first
    assert 8 <= ticks <= 12, ticks  # one worker alone would be ~10, two ~20


def test_a_killed_worker_is_restarted_and_serves_again(node):
    _, body = health(node)
    victim = body["workers"][1]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert node.wait_for_log("worker 1 (pid", timeout=10)

    def back():
        status, body = health(node)
        return status == 200 and len(body["workers"]) == 2 and victim not in \
            {w["pid"] for w in body["workers"]} and body
    body = wait_for(back, "worker 1 restarted", timeout=15)
    assert body["workers"][1]["restarts"] == 1
    assert set(both_workers(node)) == {"0", "1"}


class Load:
    """A client loop: requests on new connections until stopped, every result kept."""

    def __init__(self, node, path="/probe/slow", body=None, threads=4):
        self.node, self.path, self.body = node, path, body or {"ms": 20}
        self.results, self.errors = [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=30)
                conn.request("POST", self.path, json.dumps(self.body))
                response = conn.getresponse()
                response.read()
                self.results.append(response.status)
                conn.close()
            except OSError as error:
                self.errors.append(repr(error))

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


VERSIONED = """
from broker import Service


class Version(Service):
    name = "probe.version"

    class SimpleIO:
        output_required = ("version",)

    def handle(self):
        self.response.payload = {"version": "%s"}
"""


def versioned_node(tmp_path, workers):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "version.py").write_text(VERSIONED % "1")
    text = CONFIG.read_text().replace(
        "paths: [../workers_plugins]", f"paths: [{CONFIG.parent.parent / 'workers_plugins'}, plugins]")
    text = text.replace("channels:\n", "channels:\n  - {name: version, type: http, path: /probe/version,"
                                        " service: probe.version, methods: [GET]}\n", 1)
    config = tmp_path / "workers.yaml"
    config.write_text(text)
    return config, BrokerProcess(config, args=["--workers", workers]).start(timeout=60)


@pytest.mark.parametrize("workers", ["2", "1"])
def test_sighup_restarts_the_workers_one_at_a_time_with_new_code_and_no_failed_request(
        tmp_path, workers):
    config, node = versioned_node(tmp_path, workers)
    try:
        _, before = health(node)
        assert call(node, "GET", "/probe/version")[2] == {"version": "1"}
        (tmp_path / "plugins" / "version.py").write_text(VERSIONED % "2")
        load = Load(node)
        try:
            time.sleep(0.5)
            node._proc.send_signal(signal.SIGHUP)
            assert node.wait_for_log("reload: done", timeout=90), node.output[-3000:]
            time.sleep(0.5)
        finally:
            load.stop()
        assert load.errors == [] and set(load.results) == {200}, (load.errors[:3], set(load.results))
        assert len(load.results) > 20
        _, after = health(node)
        assert {w["pid"] for w in after["workers"]}.isdisjoint({w["pid"] for w in before["workers"]})
        versions = {call(node, "GET", "/probe/version")[2]["version"] for _ in range(20)}
        assert versions == {"2"}

        config.write_text(config.read_text() + "\nlimits: {threads: many}\n")  # a broken config
        node._proc.send_signal(signal.SIGHUP)
        assert node.wait_for_log("reload refused", timeout=30), node.output[-2000:]
        status, refused = health(node)
        assert status == 200
        assert [w["pid"] for w in refused["workers"]] == [w["pid"] for w in after["workers"]]
    finally:
        node.stop(timeout=30)


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0():
    node = start()
    load = Load(node, body={"ms": 300}, threads=6)
    time.sleep(1.0)
    node._proc.send_signal(signal.SIGTERM)
    code = node._proc.wait(60)
    load.stop()
    assert code == 0, node.output[-3000:]
    assert set(load.results) <= {200}, set(load.results)
    # After the port closed, new connections are refused (never accepted and dropped).
    assert all("ConnectionRefused" in e for e in load.errors), load.errors[:3]
    assert "every worker stopped" in node.output


def test_a_worker_that_keeps_dying_stops_the_node_non_zero_with_the_reason(tmp_path):
    plugin = tmp_path / "crash.py"  # loads in the main process, dies in a worker
    plugin.write_text("import os, sys\n"
                      "if sys.argv[0].endswith(os.path.join('workers', 'child.py')):\n"
                      "    os._exit(7)\n")
    config = tmp_path / "crash.yaml"
    config.write_text(f"services: {{paths: [{plugin}]}}\n")
    proc = subprocess.run(twistd_command("-n", "--pidfile=", "broker", "--config", str(config),
                                         "--listen", "tcp:0:interface=127.0.0.1", "--workers", "1"),
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "giving up: worker 0 died 5 times" in output, output[-2000:]
    assert "worker 0 (pid" in output and "died (exit code 7)" in output


@requires_rabbitmq
def test_sigterm_with_amqp_deliveries_in_flight_loses_none_and_leaves_none_unacked(tmp_path):
    import pika
    queue, replies = f"workers.work.{suffix()}", f"workers.replies.{suffix()}"
    config = tmp_path / "amqp.yaml"
    text = CONFIG.read_text().replace("../workers_plugins",
                                      str(CONFIG.parent.parent / "workers_plugins"))
    text = text.replace("channels:\n", f"""channels:
  - {{name: work, type: amqp, connection: rabbit, queue: {queue}, service: probe.work,
     prefetch: 20}}
""", 1)
    config.write_text(text + """
connections:
  - {name: rabbit, type: amqp, host: 127.0.0.1, username: guest, password: guest}
""")
    connection = blocking_connection()
    channel = connection.channel()
    channel.queue_declare(queue, durable=False, auto_delete=False)
    channel.queue_declare(replies, durable=False, auto_delete=False)
    try:
        total = 500
        for n in range(total):
            channel.basic_publish("", queue, json.dumps({"n": n, "ms": 200}).encode(),
                                  pika.BasicProperties(reply_to=replies, correlation_id=str(n)))
        node = start(config=config)
        assert wait_until(lambda: channel.queue_declare(replies, passive=True).method.message_count
                          > 20, timeout=30)
        node._proc.send_signal(signal.SIGTERM)
        assert node._proc.wait(60) == 0, node.output[-3000:]
        answered = set()
        while True:
            method, _, body = channel.basic_get(replies, auto_ack=True)
            if method is None:
                break
            answered.add(int(json.loads(body)["n"]))
        left = set()
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            left.add(json.loads(body)["n"])
        assert answered, "nothing was worked on before the stop"
        assert left, "everything was worked on: the stop came too late to show anything"
        assert answered | left == set(range(total)), sorted(set(range(total)) - answered - left)[:10]
        declared = channel.queue_declare(queue, passive=True).method
        assert declared.message_count == 0 and declared.consumer_count == 0
    finally:
        channel.queue_delete(queue)
        channel.queue_delete(replies)
        connection.close()


@pytest.mark.parametrize("workers", [None, "1"], ids=["one process", "one worker"])
def test_sigterm_finishes_a_slow_request_closes_websockets_with_1001_and_exits_0(workers):
    from websockets.exceptions import ConnectionClosed
    node = BrokerProcess(CONFIG, args=["--workers", workers] if workers else []).start(timeout=60)
    try:
        ws = WSClient(node.port)
        assert ws.request("subscribe", topic="work.#")["op"] == "ok"
        answer = {}

        def slow():
            answer["result"] = call(node, "POST", "/probe/slow", {"ms": 1500})
        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.5)
        node._proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1001
        thread.join(20)
        assert answer["result"][0] == 200, answer
        assert node._proc.wait(30) == 0, node.output[-3000:]
    finally:
        node.stop()


def test_live_changes_and_task_status_are_the_node_s_whichever_worker_is_asked(tmp_path):
    import base64
    sample = (ROOT / "etc" / "broker.yaml").read_text().replace("../plugins", str(ROOT / "plugins"))
    config = tmp_path / "broker.yaml"
    config.write_text(sample)
    node = BrokerProcess(config, args=["--workers", "2"]).start(timeout=60)
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"admin:{node.admin_password}".encode()).decode()}
    try:
        status, _, body = node.request("POST", "/broker/admin/config/channels", json.dumps(
            {"name": "w.echo", "type": "http", "path": "/w/echo", "service": "demo.echo"}), auth)
        assert status in (200, 201), body

        def served_by_both():
            seen = set()
            for _ in range(40):
                status, headers, _ = node.request("POST", "/w/echo", '{"text": "x"}')
                if status != 200:
                    return False
                seen.add(headers["x-broker-worker"])
            return seen == {"0", "1"}
        assert wait_for(served_by_both, "the new channel served by both workers", timeout=20)

        status, headers, body = node.request("POST", "/broker/invoke", json.dumps(
            {"service": "demo.echo", "data": {"text": "hi"}, "async": True}), auth)
        assert status == 202, body
        location = headers["location"]
        answered = {}
        for _ in range(200):
            status, headers, body = node.request("GET", location, None, auth)
            assert status == 200, body
            if json.loads(body)["status"] == "done":
                answered[headers["x-broker-worker"]] = json.loads(body)["data"]
            if len(answered) == 2:
                break
        assert answered == {"0": {"text": "hi"}, "1": {"text": "hi"}}
    finally:
        node.stop(timeout=30)
