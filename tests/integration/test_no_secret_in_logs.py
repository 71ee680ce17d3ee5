"""No configured secret, and no token issued, appears in any line a broker logs: the whole
output of a broker process is grepped after logins that pass and fail on every edge (HTTP,
the token endpoints, the WebSocket handshake with ?token=), a config error and a revocation."""

import base64
import json
import subprocess
import textwrap

from websockets.exceptions import InvalidStatus

from tests.integration.broker_process import BrokerProcess, twistd_command
from tests.integration.ws_client import WSClient

SECRETS = {"password": "pw-7d1f0c5a-secret", "key": "key-93ab51e2-secret",
           "jwt": "jwt-secret-0b4f8f9e7c2a41d6a5e3b1c9d8e7f6a5",
           "file": "file-secret-5e6f7a8b"}

CONFIG = '''
name: no-secrets
http: {{access_log: true}}
services: {{paths: [echo_service.py]}}
auth:
  tokens: {{secret: "{jwt}", refresh_ttl: 1h}}
security:
  - {{name: people, type: basic_auth, username: alice, password: "{password}"}}
  - {{name: apps, type: apikey, key: "{key}"}}
  - {{name: ops, type: basic_auth, username: ops, password: "${{file:{file_path}}}"}}
  - {{name: tokens, type: jwt}}
channels:
  - {{name: echo, type: http, path: /echo, service: test.echo, security: tokens}}
  - {{name: echo.people, type: http, path: /people, service: test.echo, security: people}}
pubsub:
  permissions:
    tokens: {{invoke: ["test.*"]}}
'''

SERVICE = '''
from broker import Service


class Echo(Service):
    name = "test.echo"

    def handle(self):
        self.response.payload = {"ok": True}
'''


def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_no_secret_or_token_in_the_logs(tmp_path):
    (tmp_path / "echo_service.py").write_text(textwrap.dedent(SERVICE))
    (tmp_path / "ops.secret").write_text(SECRETS["file"] + "\n")
    config = CONFIG.format(file_path=tmp_path / "ops.secret", **SECRETS)
    (tmp_path / "broker.yaml").write_text(config)
    process = BrokerProcess(config=tmp_path / "broker.yaml").start()
    issued = []
    try:
        for headers in (_basic("alice", SECRETS["password"]), {"X-API-Key": SECRETS["key"]},
                        _basic("ops", SECRETS["file"]), _basic("alice", SECRETS["password"][:-1]),
                        {"X-API-Key": SECRETS["key"] + "x"}):
            status, _, body = process.request("POST", "/broker/auth/token", headers=headers)
            if status == 200:
                answer = json.loads(body)
                issued += [answer["access_token"], answer["refresh_token"]]
        assert len(issued) == 6
        token = issued[0]
        assert process.request("POST", "/echo", "{}", {"Authorization": f"Bearer {token}",
                                                       "Content-Type": "application/json"})[0] == 200
        assert process.request("POST", "/echo", "{}", {"Authorization": f"Bearer {token}x"})[0] == 401
        assert process.request("POST", "/people", "{}",
                               _basic("alice", SECRETS["password"] + "!"))[0] == 401
        with WSClient(process.port, path=f"/ws?token={token}") as client:
            assert client.request("invoke", service="test.echo")["op"] == "ok"
        try:
            WSClient(process.port, path=f"/ws?token={token}x").close()
        except InvalidStatus:
            pass
        status, _, _ = process.request("POST", "/broker/auth/refresh",
                                       json.dumps({"refresh_token": issued[1]}))
        assert status == 200
        assert process.request("POST", "/broker/auth/revoke", json.dumps({"token": token}))[0] == 200
        assert process.request("POST", "/echo", "{}", {"Authorization": f"Bearer {token}"})[0] == 401
        assert process.wait_for_log("revoked")
    finally:
        process.stop()
    # a config mistake next to a secret names the key, not the secret
    (tmp_path / "bad.yaml").write_text(config.replace("refresh_ttl: 1h", "refresh_ttl: soon"))
    bad = subprocess.run(twistd_command("-n", "--pidfile=", "broker", "--config",
                                        str(tmp_path / "bad.yaml")),
                         capture_output=True, text=True, timeout=60)
    assert "refresh_ttl" in bad.stdout + bad.stderr
    output = process.output + bad.stdout + bad.stderr
    assert "token" in output and "alice" in output  # the log did record what happened
    for name, secret in SECRETS.items():
        assert secret not in output, f"the {name} secret is in the log"
    for token in issued:
        for piece in token.split("."):
            assert piece not in output, "an issued token is in the log"
