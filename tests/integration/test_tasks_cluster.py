"""Two broker processes sharing task records through the real Redis: any node answers a
task's status, results are pushed across nodes, a task whose node died is reported lost."""

import json
import secrets
import subprocess
from base64 import b64encode

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess, wait_for
from tests.integration.ws_client import WSClient

CONFIG = ROOT / "tests" / "integration" / "configs" / "tasks.yaml"


def redis_cli(*args):
    return subprocess.run(["redis-cli", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def namespace():
    ns = f"test:tasks:{secrets.token_hex(4)}"
    yield ns
    keys = redis_cli("--scan", "--pattern", f"{ns}*").split()
    if keys:
        redis_cli("DEL", *keys)


@pytest.fixture(scope="module")
def env(namespace):
    return {"TASKS_REDIS": "redis", "TASKS_NAMESPACE": namespace, "TASKS_HEARTBEAT": "200ms",
            "PUBSUB_REDIS": "redis", "PUBSUB_NAMESPACE": f"{namespace}:pubsub",
            "BROKER_ADMIN_PASSWORD": secrets.token_urlsafe(16)}


@pytest.fixture(scope="module")
def nodes(env):
    a = BrokerProcess(config=CONFIG, env={**env, "BROKER_NAME": "node-a"}).start()
    b = BrokerProcess(config=CONFIG, env={**env, "BROKER_NAME": "node-b"}).start()
    for node in (a, b):
        assert node.wait_for_log("pub/sub backplane connected"), node.output
    yield a, b
    a.stop()
    b.stop()


def auth(env):
    return {"Authorization": "Basic " + b64encode(f"admin:{env['BROKER_ADMIN_PASSWORD']}".encode()).decode()}


def start(node, env, service, data):
    status, headers, body = node.request("POST", "/broker/invoke", json.dumps(
        {"service": service, "data": data, "async": True}), {"Content-Type": "application/json", **auth(env)})
    assert status == 202, body
    return json.loads(body)["task_id"], headers["location"]


def view(node, env, location):
    status, _, body = node.request("GET", location, headers=auth(env))
    return status, json.loads(body)


def test_a_task_started_on_one_node_is_answered_by_the_other(nodes, env):
    a, b = nodes
    task_id, location = start(a, env, "tasks.slow", {"seconds": 0.3, "tag": "cluster"})
    status, seen = view(b, env, location)
    assert status == 200 and seen["status"] in ("pending", "running")
    done = wait_for(lambda: (lambda s, v: v if v["status"] == "done" else None)(*view(b, env, location)),
                    "the task done on node b")
    assert done["data"] == {"slept": 0.3, "tag": "cluster"} and done["task_id"] == task_id
    assert view(b, {**env, "BROKER_ADMIN_PASSWORD": "wrong"}, location)[0] == 401


def test_a_result_is_pushed_to_a_subscriber_on_the_other_node(nodes, env):
    a, b = nodes
    with WSClient(b.port, headers=auth(env)) as on_b:
        assert on_b.request("subscribe", topic="broker.tasks.*")["op"] == "ok"
        task_id, _ = start(a, env, "demo.echo", {"text": "across"})
        message, = on_b.messages(1)
    assert message["data"]["task_id"] == task_id and message["data"]["data"] == {"text": "across"}


def test_a_task_whose_node_died_is_reported_lost(env, namespace):
    doomed = BrokerProcess(config=CONFIG, env={**env, "BROKER_NAME": "node-doomed"}).start()
    other = BrokerProcess(config=CONFIG, env={**env, "BROKER_NAME": "node-other"}).start()
    try:
        _, location = start(doomed, env, "tasks.slow", {"seconds": 30})
        assert wait_for(lambda: view(other, env, location)[1]["status"] == "running", "running")
        doomed._proc.kill()           # no goodbye: its heartbeat simply stops
        doomed._proc.wait()
        lost = wait_for(lambda: (lambda s, v: v if v["status"] == "failed" else None)(
            *view(other, env, location)), "the task reported lost", timeout=10)
        assert lost["error"]["code"] == "lost"
    finally:
        doomed.stop()
        other.stop()
