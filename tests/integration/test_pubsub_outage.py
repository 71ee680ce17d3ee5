"""The Redis backplane goes away and comes back (a private redis-server, so others are not hit)."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.broker_process import BrokerProcess, free_port, wait_for
from tests.integration.ws_client import WSClient

CONFIG = Path(__file__).parent / "configs" / "pubsub.yaml"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")





class PrivateRedis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pubsub-redis-")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG")
        return self

    def cli(self, *args):
        done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return done.stdout.strip()

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None





def counters(node):
    return json.loads(node.request("GET", "/broker/metrics")[2])["counters"]["pubsub"]


@pytest.fixture
def redis():
    server = PrivateRedis().start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def node(redis):
    process = BrokerProcess(config=CONFIG, env={"PUBSUB_REDIS": "redis", "REDIS_PORT": str(redis.port),
                                                "PUBSUB_NAMESPACE": "outage"}).start()
    assert process.wait_for_log("pub/sub backplane connected"), process.output
    yield process
    process.stop()


def publish(node, topic, data):
    return node.request("POST", f"/broker/publish/{topic}", json.dumps(data))


def test_bus_reconnect_resyncs_without_loss_or_duplicates(redis, node):
    with WSClient(node.port) as client:
        client.request("subscribe", topic="demo.outage")
        assert publish(node, "demo.outage", 0)[0] == 200
        assert client.messages(1)[0]["data"] == 0
        redis.cli("CLIENT", "KILL", "TYPE", "pubsub")      # the backplane drops; Redis keeps the data
        for n in range(1, 21):                             # published around the reconnect
            assert publish(node, "demo.outage", n)[0] == 200
        wait_for(lambda: counters(node)["bus_reconnects"] >= 1)
        assert publish(node, "demo.outage", 21)[0] == 200
        got = [m["data"] for m in client.messages(21)]
        assert got == list(range(1, 22))
        assert client.request("ping")["op"] == "ok"
        assert not [f for f in client.frames if f["op"] in ("message", "gap")]


def test_redis_lost_publishers_get_503_and_subscribers_are_told_of_the_gap(redis, node):
    with WSClient(node.port) as client:
        client.request("subscribe", topic="demo.lost")
        publish(node, "demo.lost", "before")
        assert client.messages(1)[0]["data"] == "before"
        redis.stop()                                       # its data is gone with it
        status, _, body = publish(node, "demo.lost", "during")
        assert status == 503 and json.loads(body)["code"] == "unavailable"
        status, _, body = node.request("GET", "/broker/health")
        assert status == 503
        refused = client.request("subscribe", topic="demo.other", since="1-1")
        assert refused["code"] == "unavailable"      # history cannot be read: said, not hidden
        redis.start()
        wait_for(lambda: counters(node)["bus_reconnects"] >= 1)
        gap = client.recv()
        assert gap["op"] == "gap"
        wait_for(lambda: publish(node, "demo.lost", "after")[0] == 200)
        assert client.messages(1)[0]["data"] == "after"
