"""Helpers for tests against the real RabbitMQ on 127.0.0.1:5672 (guest/guest)."""

import json
import secrets
import shutil
import socket
import subprocess
import threading
import time

import pytest
from tests.integration.broker_process import wait_until  # noqa: F401 (the tests import it from here)

HOST, PORT = "127.0.0.1", 5672


def rabbitmq_reachable():
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
        return True
    except OSError:
        return False


requires_rabbitmq = pytest.mark.skipif(
    not rabbitmq_reachable(),
    reason=f"RabbitMQ is not reachable on {HOST}:{PORT} (start it: rabbitmq-server -detached; "
           ".ci/run does)")


def suffix():
    return secrets.token_hex(4)


def blocking_connection(vhost="/"):
    import pika
    return pika.BlockingConnection(pika.ConnectionParameters(
        HOST, PORT, vhost, pika.PlainCredentials("guest", "guest"), heartbeat=0))


def get_one(channel, queue, timeout=15.0):
    """The next message on ``queue`` (acked), waiting up to ``timeout``; None if none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return properties, body
        channel.connection.sleep(0.05)
    return None


def until(predicate, timeout=20.0):
    """For tests running the broker in-process (trial drives the reactor): a Deferred firing
    True once ``predicate()`` is, polled every 50 ms, or False after ``timeout``."""
    from twisted.internet import defer, reactor, task

    @defer.inlineCallbacks
    def poll():
        for _ in range(int(timeout / 0.05)):
            if predicate():
                return True
            yield task.deferLater(reactor, 0.05)
        return False
    return poll()


def metrics(broker, name):
    status, _, body = broker.request("GET", "/broker/metrics")
    assert status == 200
    return json.loads(body)["counters"].get(name, {})


def health(broker):
    status, _, body = broker.request("GET", "/broker/health")
    return status, json.loads(body)


def rabbitmqctl(*args, timeout=60):
    """Run rabbitmqctl; skips the test when it is not installed."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH (needed to restart RabbitMQ)")
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout,
                          check=True).stdout


class Forwarder:
    """A TCP forwarder on a free local port to RabbitMQ, to start late or cut at will."""

    def __init__(self):
        probe = socket.socket()
        probe.bind((HOST, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server = None
        self._sockets = []
        self._lock = threading.Lock()

    def start(self):
        self._server = socket.create_server((HOST, self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection((HOST, PORT))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the recv() threads
                sock.close()
            except OSError:
                pass
