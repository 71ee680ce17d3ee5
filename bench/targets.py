"""The four servers that ``http_invoke.py`` compares, and how to start, probe and call each one.

(a) the broker's ``demo.echo`` through its full pipeline (twistd, basic auth, config ``bench/broker-bench.yaml``);
(b) a bare twisted.web Resource; (c) FastAPI + uvicorn (1 worker, uvloop, httptools); (d) an httptools Protocol on
Twisted, the Python ceiling. Every server runs from the repository root with this interpreter, on 127.0.0.1.
"""

import base64
import importlib.util
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field

from harness import http_request

__all__ = ["BODY", "EXPECTED", "HOST", "ROOT", "Target", "make_targets"]

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKER_CONFIG = os.path.join("bench", "broker-bench.yaml")  # written by the lead, relative to ROOT
BODY = b'{"text":"hello","repeat":2}'
EXPECTED = {"text": "hellohello"}
REQUIREMENTS_HINT = "pip install -r bench/requirements.txt"


@dataclass
class Target:
    """One server under test. ``argv(port)`` builds its command; ``ready(port)`` says it is serving."""

    key: str
    name: str
    description: str
    path: str
    argv: object
    command: str  # the argv for humans and the JSON file (no absolute paths)
    modules: tuple = ()
    env: dict = field(default_factory=dict)
    authorization: str = ""  # Authorization header value, if any
    ready_path: str = ""  # GET this until 200; empty: a TCP connect is enough
    start_timeout: float = 15.0

    def headers(self):
        """Headers of the correctness-check request (the same as post.lua sends)."""
        h = {"Content-Type": "application/json"}
        if self.authorization:
            h["Authorization"] = self.authorization
        return h

    def ready(self, port):
        if not self.ready_path:
            with socket.create_connection((HOST, port), timeout=1.0):
                return True
        auth = {"Authorization": self.authorization} if self.authorization else {}
        status, _ = http_request(HOST, port, "GET", self.ready_path, headers=auth, timeout=2.0)
        return status == 200

    def unavailable(self):
        """Why this target cannot run here (missing modules or files), or None."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            return f"missing Python modules: {', '.join(missing)} (install: {REQUIREMENTS_HINT})"
        if self.key in ("a", "e") and not os.path.exists(os.path.join(ROOT, BROKER_CONFIG)):
            return (f"{BROKER_CONFIG} not found: the broker's bench config has not landed yet "
                    "(needs `twistd broker` and that file)")
        return None


def _python_module(module, *args):
    return lambda port: [sys.executable, "-m", module, *[a.format(port=port, host=HOST) for a in args]]


def _script(path, *args):
    return lambda port: [sys.executable, path, *[a.format(port=port, host=HOST) for a in args]]


def _broker(password, token_secret, jwt=False):
    user = "bench"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    twistd = "from twisted.scripts.twistd import run; run()"  # `twistd`, but surely on this interpreter
    args = ["-n", "--pidfile=", "broker", "--config", BROKER_CONFIG, "--listen", "tcp:{port}:interface={host}"]
    pythonpath = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
    authorization = f"Basic {token}"
    if jwt:
        authorization = f"Bearer {_bench_token(token_secret)}"
    return Target(
        key="e" if jwt else "a", name="broker-jwt" if jwt else "broker",
        description=("broker demo.echo, full pipeline, a bearer JWT (HS256, verified once then "
                     "cached) and a per-address rate limit too high to trip" if jwt else
                     "broker demo.echo, full pipeline (twistd, bench/broker-bench.yaml, HTTP basic auth user 'bench')"),
        path="/bench/echo-jwt" if jwt else "/bench/echo",
        argv=lambda port: [sys.executable, "-c", twistd, *[a.format(port=port, host=HOST) for a in args]],
        command="twistd " + " ".join(args),
        modules=("twisted",),
        env={"PYTHONPATH": pythonpath, "BROKER_BENCH_PASSWORD": password,
             "BROKER_BENCH_TOKEN_SECRET": token_secret},
        authorization=authorization, ready_path="/broker/ping", start_timeout=30.0,
    )


def _bench_token(secret):
    """A token as the node's /broker/auth/token issues it (same secret and issuer), valid for
    a day: one distinct token, as one client would send."""
    import time
    import uuid

    import jwt
    now = int(time.time())
    return jwt.encode({"iss": "bench", "sub": "bench", "iat": now, "nbf": now, "exp": now + 86400,
                       "jti": uuid.uuid4().hex, "roles": []}, secret, algorithm="HS256")


def make_targets():
    """The five targets, keyed a-e; the broker gets a fresh random password each time."""
    password, token_secret = secrets.token_urlsafe(18), secrets.token_urlsafe(40)
    targets = [
        _broker(password, token_secret),
        Target(
            key="b", name="twisted.web",
            description="bare twisted.web Resource, json + type checks; Site(logPath=None), noisy=False and "
                        "Site.log() a no-op (logPath=None alone still formats each access-log line)",
            path="/echo",
            argv=_script(os.path.join("bench", "peers", "twisted_web.py"), "--host", "{host}", "--port", "{port}"),
            command="python bench/peers/twisted_web.py --port PORT",
            modules=("twisted",),
        ),
        Target(
            key="c", name="fastapi",
            description="FastAPI + pydantic model (text: str, repeat: int = 1, extra forbidden, strict) on uvicorn, "
                        "1 worker, --loop uvloop --http httptools --no-access-log",
            path="/echo",
            argv=_python_module("uvicorn", "fastapi_app:app", "--app-dir", os.path.join("bench", "peers"),
                                "--host", "{host}", "--port", "{port}", "--workers", "1", "--loop", "uvloop",
                                "--http", "httptools", "--no-access-log", "--log-level", "warning"),
            command="python -m uvicorn fastapi_app:app --app-dir bench/peers --workers 1 --loop uvloop "
                    "--http httptools --no-access-log",
            modules=("fastapi", "pydantic", "uvicorn", "uvloop", "httptools"),
        ),
        Target(
            key="d", name="httptools",
            description="bare httptools parser in a Twisted Protocol, keep-alive, json.loads only (Python ceiling)",
            path="/echo",
            argv=_script(os.path.join("bench", "peers", "httptools_echo.py"), "--host", "{host}", "--port", "{port}"),
            command="python bench/peers/httptools_echo.py --port PORT",
            modules=("twisted", "httptools"),
        ),
        _broker(password, token_secret, jwt=True),
    ]
    return {t.key: t for t in targets}
