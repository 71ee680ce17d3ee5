"""Run ``twistd -n broker`` as a subprocess on a free port, for integration tests."""

import http.client
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# "broker NAME ready: http://127.0.0.1:PORT/docs ws://..." (the first URL gives the port)
_READY = re.compile(r"broker \S+ ready: [a-z]+://[\d.]+:(\d+)/")


def free_port():
    """A TCP port on 127.0.0.1 nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=30.0, interval=0.1):
    """Poll ``predicate()`` (another process is doing the work) until it returns something
    true; that value, or the last false one once ``timeout`` is over."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def accepts(port, host="127.0.0.1"):
    """Whether something accepts TCP connections on ``port``."""
    try:
        socket.create_connection((host, port), 1).close()
    except OSError:
        return False
    return True


def wait_for(predicate, what="condition", timeout=30.0):
    """:func:`wait_until`, failing the test when the wait runs out."""
    value = wait_until(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


def twistd_command(*args):
    """``twistd`` run by the Python running the tests."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args]


class BrokerProcess:
    """A broker subprocess; ``port`` is known once it is listening.

    It listens where ``BROKER_LISTEN`` says (default: a free port), passed as
    ``--listen`` unless ``args`` has one, so a config's own ``http.listen`` (the
    samples' 17010) never collides with a broker already running; no pidfile.

    :param config: the config file (default: the sample ``etc/broker.yaml``).
    :param env: extra environment variables.
    """

    def __init__(self, config=None, env=None, args=()):
        self.config = str(config or ROOT / "etc" / "broker.yaml")
        self.admin_password = secrets.token_urlsafe(16)
        self.api_key = secrets.token_urlsafe(16)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "BROKER_LISTEN": "tcp:0:interface=127.0.0.1",
                    "BROKER_ADMIN_PASSWORD": self.admin_password, "BROKER_API_KEY": self.api_key,
                    **(env or {})}
        self.args = list(args)
        if not any(arg.startswith("--listen") for arg in self.args):
            self.args += ["--listen", self.env["BROKER_LISTEN"]]
        self.lines = []
        self.port = None
        self._proc = None

    def start(self, timeout=30):
        self._proc = subprocess.Popen(
            twistd_command("-n", "--pidfile=", "broker", "--config", self.config, *self.args),
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or self.port is None:
            self.stop()
            raise RuntimeError("broker did not start:\n" + self.output)
        return self

    def _read(self, ready):
        for line in self._proc.stdout:
            self.lines.append(line)
            found = _READY.search(line)
            if found and self.port is None:
                self.port = int(found.group(1))
                ready.set()
        ready.set()

    @property
    def output(self):
        return "".join(self.lines)

    def stop(self, timeout=10):
        if self._proc is None or self._proc.poll() is not None:
            return self._proc.returncode if self._proc else None
        self._proc.terminate()
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()

    def request(self, method, path, body=None, headers=None):
        """One HTTP request; returns (status, headers dict lower-cased, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def wait_for_log(self, text, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            time.sleep(0.05)
        return False
