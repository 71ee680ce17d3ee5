"""WebSocket limits from config: max connections, auto-ping eviction of dead peers."""

import base64
import json
import os
import socket
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.integration.broker_process import BrokerProcess
from tests.integration.ws_client import WSClient

CONFIG = Path(__file__).parent / "configs" / "pubsub.yaml"


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG, env={"WS_MAX_CONNECTIONS": "2", "WS_PING": "1s",
                                                "WS_PING_TIMEOUT": "2s"}).start()
    yield process
    process.stop()


def metrics(broker):
    return json.loads(broker.request("GET", "/broker/metrics")[2])["counters"]["websocket"]


def test_over_max_connections_the_handshake_gets_503(broker):
    with WSClient(broker.port) as one, WSClient(broker.port) as two:
        with pytest.raises(InvalidStatus) as refused:
            WSClient(broker.port)
        assert refused.value.response.status_code == 503
        assert one.request("ping")["op"] == two.request("ping")["op"] == "ok"
    with WSClient(broker.port) as again:                  # room again once they closed
        assert again.request("ping")["op"] == "ok"


def test_a_peer_that_never_answers_pings_is_dropped(broker):
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=20)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while True:             # read pings (never answered) until the server gives up on us
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 101")
    assert b"\x89" in data.split(b"\r\n\r\n", 1)[1]       # it was pinged (opcode 9) first
    assert metrics(broker)["opened"] >= 1
