"""Clients that stop reading are cut off after ``limits.write_timeout``: HTTP and WebSocket.

A broker with a short write_timeout; raw sockets with a small receive buffer ask for a
large answer (or subscribe and get flooded) and then never read again.  The broker must
abort them and count it, instead of holding the connection for ever.
"""

import json
import socket

import pytest

from tests.integration.broker_process import BrokerProcess, wait_for
from tests.integration.test_pubsub_slow import CONFIG, counters, flood, stuck_subscriber


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG, env={"WRITE_TIMEOUT": "1s", "WS_PING": "0"}).start()
    yield process
    process.stop()


def stuck_reader(port, request):
    """A socket that sends ``request`` and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request.encode())
    return sock


def drain(sock):
    """Everything left to read until the broker ends the connection."""
    sock.settimeout(10)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


@pytest.mark.parametrize("last", ["keep-alive", "close"])
def test_large_answers_left_unread_are_aborted_and_counted(broker, last):
    """More than the kernel's socket buffers take (they grow to megabytes on loopback)."""
    path = "/docs/static/swagger-ui-bundle.js"
    status, headers, body = broker.request("GET", path)
    assert status == 200 and len(body) > 1_000_000
    before = counters(broker)["http"]["write_timeouts"]
    get = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    sock = stuck_reader(broker.port, (get + "\r\n") * 7 + get + f"Connection: {last}\r\n\r\n")
    with sock:
        wait_for(lambda: counters(broker)["http"]["write_timeouts"] > before, "write timeout")
        received = drain(sock)
    assert len(received) < 8 * len(body), "the answers were cut off, not delivered"


def test_a_websocket_client_that_stops_reading_is_dropped_and_counted(broker):
    sock = stuck_subscriber(broker.port, broker.api_key, "slow.#")
    with sock:
        wait_for(lambda: counters(broker)["pubsub"]["subscriptions"] >= 1, "subscription")
        flood(broker, "slow.t", 200, 16 * 1024)  # far more than the socket buffers hold
        wait_for(lambda: counters(broker)["websocket"]["write_timeouts"] >= 1, "write timeout")
        drain(sock)
    wait_for(lambda: counters(broker)["pubsub"]["subscriptions"] == 0, "the session to end")
    assert json.loads(broker.request("GET", "/broker/health")[2])["status"] == "ok"
