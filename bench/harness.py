"""Plumbing shared by the HTTP benches: server subprocesses, the quiet-box guard, CPU accounting and one-shot checks.

Nothing here knows about a particular server or about wrk; ``http_invoke.py`` composes these pieces.
Linux only (reads /proc).
"""

import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time

__all__ = [
    "CLK_TCK", "ServerProcess", "StartError", "box_cpu", "free_port", "group_cpu_seconds", "http_request", "quiet_guard",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(Exception):
    """A server did not come up; the message says why (with the tail of its output)."""


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_request(host, port, method, path, body=None, headers=None, timeout=5.0):
    """One HTTP request on a fresh connection: ``(status, body bytes)``. Raises ``OSError`` on connection trouble."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class ServerProcess:
    """A server under test, run as its own process group so that stopping it also stops anything it forked.

    Output goes to a temporary log file, shown (tail only) when the server fails to start; the file is removed on stop.
    """

    def __init__(self, name, argv, env=None, cwd=None):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.proc = None
        self._log = None

    def start(self):
        """Spawn the process; returns self."""
        self._log = tempfile.NamedTemporaryFile(prefix=f"bench-{self.name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, lines=15):
        """The last lines of the server's output, for error messages."""
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def wait_ready(self, probe, timeout=20.0, interval=0.1):
        """Call ``probe()`` until it returns True; raise :class:`StartError` if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited with code {self.proc.returncode} before it was ready:\n"
                                 + _indent(self.log_tail()))
            try:
                if probe():
                    return
                last_error = "probe not satisfied"
            except OSError as error:
                last_error = str(error) or type(error).__name__
            time.sleep(interval)
        raise StartError(f"{self.name} not ready after {timeout:.0f} s ({last_error}); output:\n"
                         + _indent(self.log_tail()))

    def stop(self, grace=5.0):
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; remove the log file."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(grace)
        if self._log is not None:
            self._log.close()
            try:
                os.unlink(self._log.name)
            except OSError:
                pass
            self._log = None

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)  # the group we created with start_new_session
        except ProcessLookupError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _indent(text):
    return "\n".join("    | " + line for line in text.splitlines()) or "    | (no output)"


def box_cpu():
    """``(busy_seconds, total_seconds)`` summed over all CPUs since boot, from /proc/stat (iowait counts as idle)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already inside user/nice
    return (total - idle) / CLK_TCK, total / CLK_TCK


def group_cpu_seconds(pgid):
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "; fields[0] is field 3 (state)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def quiet_guard(min_idle=0.80, max_wait=10.0, window=1.0):
    """Wait until one ``window`` of the box is at least ``min_idle`` idle, for at most about ``max_wait`` seconds.

    Returns a dict: ``met`` (bool), ``idle`` (the last window's idle fraction), ``waited_s``.
    """
    started = time.monotonic()
    idle = 0.0
    while True:
        busy0, total0 = box_cpu()
        time.sleep(window)
        busy1, total1 = box_cpu()
        span = total1 - total0
        idle = 1.0 - (busy1 - busy0) / span if span > 0 else 1.0
        waited = time.monotonic() - started
        if idle >= min_idle:
            return {"met": True, "idle": round(idle, 3), "waited_s": round(waited, 1)}
        if waited + window > max_wait:
            return {"met": False, "idle": round(idle, 3), "waited_s": round(waited, 1)}
