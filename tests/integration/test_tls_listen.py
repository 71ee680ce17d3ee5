"""A broker listening on ``ssl:``: HTTP and WebSocket answers reach a real TLS client encrypted.

The certificate is made for the test by a throwaway CA; the clients trust that CA and
check the name, as a real client would.
"""

import http.client
import json
import ssl

import pytest

from tests.integration.broker_process import BrokerProcess
from tests.integration.test_pubsub_ws import CONFIG
from tests.integration.ws_client import WSClient
from tests.tls_support import make_pki


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("tls"))
    listen = f"ssl:0:interface=127.0.0.1:privateKey={pki.server_pem}"
    process = BrokerProcess(config=CONFIG, env={"BROKER_LISTEN": listen}).start()
    context = ssl.create_default_context(cafile=pki.ca_file)
    yield process, context
    process.stop()


def test_http_answers_over_tls_on_one_kept_alive_connection(tls):
    process, context = tls
    conn = http.client.HTTPSConnection("localhost", process.port, context=context, timeout=10)
    try:
        conn.request("GET", "/broker/ping")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["status"]) == (200, "ok")
        conn.request("GET", "/openapi.json")
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["openapi"].startswith("3.")
    finally:
        conn.close()


def test_websocket_over_tls_receives_what_is_published(tls):
    process, context = tls
    with WSClient(process.port, host="localhost", ssl=context) as sub:
        assert sub.request("subscribe", topic="demo.#")["op"] == "ok"
        conn = http.client.HTTPSConnection("localhost", process.port, context=context, timeout=10)
        try:
            conn.request("POST", "/broker/publish/demo.tls", json.dumps({"n": 1}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
        finally:
            conn.close()
        message = sub.messages(1)[0]
        assert (message["topic"], message["data"]) == ("demo.tls", {"n": 1})
