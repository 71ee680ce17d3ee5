"""A subscriber that never reads: the broker's memory stays flat, counters show the policy."""

import base64
import json
import os
import socket
import struct
from pathlib import Path

import pytest

from tests.integration.broker_process import BrokerProcess, wait_for
from tests.integration.ws_client import WSClient

CONFIG = Path(__file__).parent / "configs" / "pubsub.yaml"


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG, env={"WS_QUEUE_SIZE": "32"}).start()
    yield process
    process.stop()


def stuck_subscriber(port, api_key, topic):
    """A raw socket that subscribes to ``topic`` and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"X-API-Key: {api_key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"op": "subscribe", "id": 1, "topic": topic}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    return sock


def frames(data):
    """Parse unmasked server frames: [(opcode, payload)]; a partial tail is ignored."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length, pos = struct.unpack("!H", data[pos:pos + 2])[0], pos + 2
        elif length == 127:
            length, pos = struct.unpack("!Q", data[pos:pos + 8])[0], pos + 8
        if pos + length > len(data):
            break
        out.append((opcode, data[pos:pos + length]))
        pos += length
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def counters(broker):
    return json.loads(broker.request("GET", "/broker/metrics")[2])["counters"]


def flood(broker, topic, count, size):
    """Publish ``count`` messages of ``size`` characters over one WebSocket, then read the acks."""
    token = base64.b64encode(f"admin:{broker.admin_password}".encode()).decode()
    with WSClient(broker.port, headers={"Authorization": f"Basic {token}"}) as pub:
        pad = "x" * size
        for n in range(count):
            pub.send({"op": "publish", "id": n, "topic": topic, "data": {"n": n, "pad": pad}})
        acks = sum(pub.recv()["op"] == "ok" for _ in range(count))
    assert acks == count





def test_drop_oldest_keeps_memory_flat_and_counts_drops(broker):
    sock = stuck_subscriber(broker.port, broker.api_key, "slow.#")
    wait_for(lambda: counters(broker)["pubsub"]["subscriptions"] >= 1)
    flood(broker, "slow.t", 200, 16 * 1024)          # warm up: buffers fill, RSS settles
    before = rss_kib(broker._proc.pid)
    flood(broker, "slow.t", 2000, 16 * 1024)         # ~32 MiB more to a client that never reads
    after = rss_kib(broker._proc.pid)
    stats = counters(broker)
    assert stats["pubsub"]["dropped"] > 1500
    assert stats["websocket"]["paused"] >= 1
    assert after - before < 16 * 1024, f"RSS grew {after - before} KiB"
    # It still gets a gap notice and the newest messages once it reads again.
    sock.settimeout(10)
    received = b""
    while b'"op":"gap"' not in received:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        received += chunk
    notices = [json.loads(p) for op, p in frames(received) if op == 1 and b'"op":"gap"' in p]
    assert notices[0]["reason"] == "slow_consumer" and notices[0]["dropped"] > 0
    sock.close()


def test_close_policy_disconnects_a_slow_consumer_with_4008(broker):
    sock = stuck_subscriber(broker.port, broker.api_key, "strict.#")
    wait_for(lambda: counters(broker)["pubsub"]["subscriptions"] >= 1)
    flood(broker, "strict.t", 800, 16 * 1024)
    wait_for(lambda: counters(broker)["pubsub"]["slow_consumer_closes"] >= 1)
    sock.settimeout(10)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    # The connection ended.  The close frame (4008) sits behind the unread data, so a client
    # this stuck may never see it before the close handshake timeout drops the connection.
    closes = [payload for opcode, payload in frames(received) if opcode == 8]
    for close in closes:
        assert struct.unpack("!H", close[:2])[0] == 4008 and b"slow consumer" in close
    assert counters(broker)["websocket"]["closed"] >= 1
    sock.close()
