"""Two nodes sharing live configuration through the real Redis: a change made on one is applied
by the other; a node started later applies what was changed before it came."""

import base64
import json
import subprocess
import textwrap
import uuid

import pytest

from tests.integration.broker_process import BrokerProcess, accepts, wait_for

pytestmark = pytest.mark.skipif(not accepts(6379), reason="Redis is not reachable on 6379")

CONFIG = """
name: node
admin: {{security: ops}}
live: {{redis: "redis://127.0.0.1:6379", prefix: "{prefix}", poll_interval: 0.2s}}
security:
  - {{name: ops, type: basic_auth, username: ops, password: "${{BROKER_ADMIN_PASSWORD}}"}}
scheduler:
  jobs:
    - {{name: ping, service: broker.service.invoke, interval: 1h,
       data: {{service: broker.service.invoke}}}}
"""

CHANNEL = {"name": "hello", "type": "http", "path": "/hello", "service": "broker.service.invoke",
           "methods": ["POST"]}


def _admin(broker, method, path, body=None):
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"ops:{broker.admin_password}".encode()).decode()}
    status, _, answer = broker.request(method, path, json.dumps(body) if body else None, auth)
    return status, json.loads(answer)


def _routed(broker, path):
    return broker.request("POST", path, "{}")[0] != 404


@pytest.fixture
def prefix():
    prefix = f"test:live:{uuid.uuid4().hex[:12]}:"
    yield prefix
    subprocess.run(["redis-cli", "DEL", prefix + "entries", prefix + "version"],
                   capture_output=True, check=False)


def test_a_change_on_one_node_is_applied_by_the_other(tmp_path, prefix):
    config = tmp_path / "broker.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(prefix=prefix)))
    one = BrokerProcess(config).start()
    two = BrokerProcess(config, env={"BROKER_ADMIN_PASSWORD": one.admin_password})
    two.admin_password = one.admin_password
    two.start()
    try:
        status, answer = _admin(one, "POST", "/broker/admin/config/channels", CHANNEL)
        assert status == 201, answer
        wait_for(lambda: _routed(two, "/hello"), "the channel on the other node")
        assert "config created: channels hello by ops:ops (stored)" in two.output

        status, answer = _admin(two, "PUT", "/broker/admin/config/jobs/ping",
                                {"service": "broker.service.invoke", "interval": "2h",
                                 "data": {"service": "broker.service.invoke"}})
        assert status == 200, answer
        wait_for(lambda: _admin(one, "GET", "/broker/admin/config/jobs/ping")[1]["interval"] == "2h",
                 "the job changed on the first node")

        status, _ = _admin(two, "DELETE", "/broker/admin/config/channels/hello")
        assert status == 200
        wait_for(lambda: not _routed(one, "/hello"), "the channel gone from the first node")
        assert not any(node_line for node_line in one.lines + two.lines if "Traceback" in node_line)
    finally:
        one.stop()
        two.stop()


def test_a_node_started_later_applies_the_stored_changes(tmp_path, prefix):
    config = tmp_path / "broker.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(prefix=prefix)))
    one = BrokerProcess(config).start()
    try:
        assert _admin(one, "POST", "/broker/admin/config/channels", CHANNEL)[0] == 201
    finally:
        one.stop()
    again = BrokerProcess(config).start()
    try:
        wait_for(lambda: _routed(again, "/hello"), "the stored channel")
        assert not (tmp_path / "broker.state.json").exists()
    finally:
        again.stop()
