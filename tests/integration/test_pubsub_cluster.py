"""Two broker processes sharing topics through the real Redis (backplane and Streams)."""

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.integration.broker_process import BrokerProcess
from tests.integration.ws_client import WSClient

CONFIG = Path(__file__).parent / "configs" / "pubsub.yaml"


def redis_cli(*args):
    return subprocess.run(["redis-cli", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def namespace():
    ns = f"test:pubsub:{secrets.token_hex(4)}"
    yield ns
    keys = redis_cli("--scan", "--pattern", f"{ns}:*").split()
    if keys:
        redis_cli("DEL", *keys)


@pytest.fixture(scope="module")
def nodes(namespace):
    env = {"PUBSUB_REDIS": "redis", "PUBSUB_NAMESPACE": namespace}
    a = BrokerProcess(config=CONFIG, env={**env, "BROKER_NAME": "node-a"}).start()
    b = BrokerProcess(config=CONFIG, env={**env, "BROKER_NAME": "node-b"}, ).start()
    for node in (a, b):
        assert node.wait_for_log("pub/sub backplane connected"), node.output
    yield a, b
    a.stop()
    b.stop()


def publish(node, topic, data):
    status, _, body = node.request("POST", f"/broker/publish/{topic}", json.dumps(data))
    assert status == 200, body
    return json.loads(body)["msg_id"]


def test_a_subscriber_on_one_node_gets_what_the_other_publishes_once_in_order(nodes):
    a, b = nodes
    with WSClient(b.port) as on_b, WSClient(a.port) as on_a:
        on_b.request("subscribe", topic="demo.cluster.#")
        on_a.request("subscribe", topic="demo.cluster.#")
        sent = []
        for n in range(30):
            node = a if n % 3 else b            # published on both nodes, interleaved
            sent.append(publish(node, "demo.cluster.t", n))
        for client in (on_b, on_a):
            got = client.messages(30)
            assert [m["data"] for m in got] == list(range(30))
            assert [m["msg_id"] for m in got] == sent
        assert on_b.request("ping")["op"] == "ok"
        assert not [f for f in on_b.frames if f["op"] == "message"]   # nothing twice


def test_resume_on_the_other_node_from_redis_streams(nodes):
    a, b = nodes
    with WSClient(a.port) as first:
        first.request("subscribe", topic="demo.failover")
        for n in range(4):
            publish(a, "demo.failover", n)
        last = first.messages(4)[1]["msg_id"]        # processed two, then node a went away
    for n in range(4, 6):
        publish(b, "demo.failover", n)
    with WSClient(b.port) as again:                  # the load balancer sends it to node b
        ok = again.request("subscribe", topic="demo.failover", since=last)
        assert ok["replayed"] == 4 and ok["gap"] is False
        assert [m["data"] for m in again.messages(4)] == [2, 3, 4, 5]


def test_redis_history_is_bounded_and_the_gap_is_told(nodes, namespace):
    a, b = nodes
    ids = [publish(a, "tiny.redis", n) for n in range(6)]
    assert redis_cli("XLEN", f"{namespace}:t:tiny.redis").strip() == "3"
    with WSClient(b.port) as client:
        ok = client.request("subscribe", topic="tiny.#", since=ids[0])
        assert ok["gap"] is True and ok["replayed"] == 3
        assert [m["data"] for m in client.messages(3)] == [3, 4, 5]
    with WSClient(b.port) as client:
        ok = client.request("subscribe", topic="tiny.redis", since=ids[3])
        assert ok["gap"] is False and ok["replayed"] == 2


def test_health_shows_the_backplane(nodes):
    status, _, body = nodes[0].request("GET", "/broker/health")
    checks = json.loads(body)["checks"]
    assert status == 200 and checks["pubsub"]["ok"] is True and checks["redis.redis"]["ok"] is True
