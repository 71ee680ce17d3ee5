"""etc/examples/cluster: two nodes behind the sample nginx config, on the real Redis."""

import json
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess, accepts, free_port, wait_until
from tests.integration.ws_client import WSClient

EXAMPLE = ROOT / "etc" / "examples" / "cluster"

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx (apt-get install nginx)")





@pytest.fixture(scope="module")
def cluster():
    namespace = f"test:cluster:{secrets.token_hex(4)}"
    nodes = [BrokerProcess(config=EXAMPLE / "broker.yaml",
                           env={"BROKER_NAME": name, "PUBSUB_NAMESPACE": namespace}).start()
             for name in ("node-a", "node-b")]
    prefix = Path(tempfile.mkdtemp(prefix="cluster-nginx-"))
    (prefix / "tmp").mkdir()
    port = free_port()
    conf = (EXAMPLE / "nginx.conf").read_text()
    conf = conf.replace("127.0.0.1:17011", f"127.0.0.1:{nodes[0].port}")
    conf = conf.replace("127.0.0.1:17012", f"127.0.0.1:{nodes[1].port}")
    conf = conf.replace("127.0.0.1:18080", f"127.0.0.1:{port}")
    (prefix / "nginx.conf").write_text(conf)
    nginx = subprocess.Popen(["nginx", "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not wait_until(lambda: accepts(port) or nginx.poll() is not None, 20) or nginx.poll():
        pytest.fail(f"nginx did not start: {nginx.stderr.read()}")
    for node in nodes:
        assert node.wait_for_log("pub/sub backplane connected"), node.output
    yield nodes, port
    nginx.terminate()
    nginx.wait(10)
    for node in nodes:
        node.stop()
    shutil.rmtree(prefix, ignore_errors=True)
    keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"{namespace}:*"],
                          capture_output=True, text=True).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "DEL", *keys], capture_output=True)


def test_clients_through_nginx_get_messages_published_on_either_node(cluster):
    (a, b), port = cluster
    clients = [WSClient(port, origin=f"http://127.0.0.1:{port}") for _ in range(4)]
    try:
        for client in clients:
            assert client.request("subscribe", topic="demo.#")["op"] == "ok"
        for client in clients:
            assert client.request("invoke", service="demo.echo", data={"text": "x"})["data"] == {"text": "x"}
        sent = []
        for n, node in enumerate((a, b, a, b)):
            status, _, body = node.request("POST", "/broker/publish/demo.cluster", json.dumps(n))
            assert status == 200
            sent.append(json.loads(body)["msg_id"])
        for client in clients:
            assert [m["msg_id"] for m in client.messages(4)] == sent
    finally:
        for client in clients:
            client.close()
    opened = [json.loads(n.request("GET", "/broker/metrics")[2])["counters"]["websocket"]["opened"]
              for n in (a, b)]
    assert sum(opened) == 4 and min(opened) >= 1, opened   # nginx spread them over both nodes
