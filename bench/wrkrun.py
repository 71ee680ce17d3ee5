"""Run wrk once and turn its text report into numbers.

Parses the summary of ``wrk --latency``: requests, duration, Requests/sec, the latency distribution (p50/p75/p90/p99),
"Non-2xx or 3xx responses" and "Socket errors". Latencies come out in milliseconds.
"""

import os
import re
import resource
import shutil
import subprocess

__all__ = ["WrkError", "parse_wrk", "run_wrk", "wrk_version"]

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
_SIZE = r"([\d.]+)([a-z]+)"


class WrkError(Exception):
    """wrk is missing, failed, or printed something we cannot read."""


def wrk_version():
    """wrk's version line, or raise :class:`WrkError` if wrk is not on PATH."""
    if shutil.which("wrk") is None:
        raise WrkError("wrk not found on PATH (Debian/Ubuntu: apt-get install wrk)")
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else "wrk (unknown version)"
    return first.split(" Copyright")[0].strip()


def _ms(value, unit):
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text):
    """Numbers from one wrk report; raises :class:`WrkError` when the essentials are missing."""
    out = {"non_2xx_3xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    n = re.search(r"(\d+) requests in ([\d.]+)([a-z]+)", text)
    if not m or not n:
        raise WrkError("could not find 'Requests/sec' in wrk output:\n" + text)
    out["req_s"] = float(m.group(1))
    out["requests"] = int(n.group(1))
    out["duration_s"] = _ms(n.group(2), n.group(3)) / 1000.0
    avg = re.search(r"Latency\s+" + _SIZE, text)
    if avg:
        out["latency_avg_ms"] = round(_ms(*avg.groups()), 3)
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+" + _SIZE, text, re.M):
        out[f"p{pct}_ms"] = round(_ms(value, unit), 3)
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non:
        out["non_2xx_3xx"] = int(non.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
    return out


def run_wrk(url, duration, connections, threads, script, env_extra=None):
    """Run ``wrk -t -c -d --latency -s script url``; returns ``(parsed dict, raw text, wrk CPU seconds)``."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url]
    env = dict(os.environ, **(env_extra or {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + 60)
    except subprocess.TimeoutExpired as error:
        raise WrkError(f"wrk did not finish within {duration + 60} s") from error
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return parse_wrk(proc.stdout), proc.stdout, cpu
