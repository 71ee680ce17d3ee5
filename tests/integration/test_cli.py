"""The ``broker`` command against a live broker: each command, its exit codes and --json,
run as a subprocess without Twisted on its import path."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.integration.amqp_support import blocking_connection, get_one, rabbitmq_reachable, suffix
from tests.integration.broker_process import ROOT, BrokerProcess, accepts, free_port, wait_for

requires_redis = pytest.mark.skipif(not accepts(6379), reason="Redis is not reachable on 6379")

CONFIG = """
name: cli
admin: {{security: ops}}
services: {{paths: ["{plugins}"]}}
security:
  - {{name: ops, type: basic_auth, username: ops, password: "${{BROKER_ADMIN_PASSWORD}}"}}
connections:
  - {{name: rabbit, type: amqp, username: guest, password: guest,
     queues: [{{name: "{queue}", durable: false}}]}}
outgoing:
  - {{name: rabbit-out, type: amqp, connection: rabbit}}
channels:
  - {{name: invoke, type: http, path: /broker/invoke, service: broker.service.invoke,
     security: ops}}
  - {{name: echo, type: http, path: /demo/echo, service: demo.echo}}
scheduler:
  jobs:
    - {{name: nightly, service: demo.echo, data: {{text: "hi"}}, cron: "0 3 * * *"}}
pubsub:
  {redis}
  permissions:
    ops: {{subscribe: ["#"], publish: ["#"]}}
"""

# The CLI imports only the client: it is run with a meta-path hook refusing Twisted.
_NO_TWISTED = ("import sys\n"
               "class _Refuse:\n"
               "    def find_spec(self, name, *args):\n"
               "        if name == 'twisted' or name.startswith('twisted.'):\n"
               "            raise ImportError('the CLI must not import Twisted')\n"
               "sys.meta_path.insert(0, _Refuse())\n"
               "from broker.client.cli import main\n"
               "sys.exit(main())\n")


def _config(tmp_path, queue, redis=""):
    config = tmp_path / "broker.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(plugins=ROOT / "plugins", queue=queue,
                                                    redis=redis)))
    return config


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not rabbitmq_reachable():
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")
    tmp_path = tmp_path_factory.mktemp("cli")
    pickup = tmp_path / "pickup"
    pickup.mkdir()
    queue = f"t.cli.{suffix()}"
    process = BrokerProcess(_config(tmp_path, queue), args=["--pickup", str(pickup)]).start()
    process.queue = queue
    yield process
    process.stop()
    blocking = blocking_connection()
    blocking.channel().queue_delete(queue)
    blocking.close()


def cli(broker, *args, stdin=None, env=None, address=True):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "BROKER_USER": "ops",
                   "BROKER_PASSWORD": broker.admin_password, **(env or {})}
    if address:
        environment["BROKER_ADDRESS"] = f"http://127.0.0.1:{broker.port}"
    result = subprocess.run([sys.executable, "-c", _NO_TWISTED, *args], input=stdin, env=environment,
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


def test_invoke_with_an_argument_and_from_stdin(broker):
    assert cli(broker, "invoke", "demo.echo", '{"text": "hi", "repeat": 2}') == (
        0, '{\n  "text": "hihi"\n}\n', "")
    code, out, _ = cli(broker, "invoke", "demo.echo", "-", "--compact", stdin='{"text": "yo"}')
    assert (code, out) == (0, '{"text": "yo"}\n')


def test_errors_say_why_with_exit_codes(broker):
    code, out, err = cli(broker, "invoke", "demo.echo", '{"repeat": "x"}')
    assert code == 1 and err.startswith("broker: 400 Invalid input: text: is required")
    code, out, err = cli(broker, "invoke", "demo.echo", "{not json")
    assert code == 2 and "data: not JSON" in err
    code, _, err = cli(broker, "invoke", "demo.echo", "{}", env={"BROKER_PASSWORD": "wrong"})
    assert code == 1 and "401" in err
    code, _, err = cli(broker, "status", env={"BROKER_ADDRESS": f"http://127.0.0.1:{free_port()}"},
                       address=False)
    assert code == 3 and "cannot connect" in err
    code, _, err = cli(broker, "frobnicate")
    assert code == 2 and "invalid choice" in err
    code, _, err = cli(broker, "invoke", "demo.echo", "{}", "--json", env={"BROKER_PASSWORD": "x"})
    assert code == 1


def test_help_on_each_command(broker):
    for command in (["invoke"], ["publish"], ["subscribe"], ["amqp-publish"], ["deploy"],
                    ["config", "export"], ["config", "import"], ["jobs", "list"], ["jobs", "run"],
                    ["jobs", "enable"], ["status"]):
        code, out, _ = cli(broker, *command, "--help")
        assert code == 0 and out.startswith("usage: broker") and "--address" in out, command


def test_address_and_credentials_from_flags(broker):
    code, out, err = cli(broker, "invoke", "demo.echo", '{"text": "a"}', "--address",
                       f"http://127.0.0.1:{broker.port}", "-u", "ops", "-p", broker.admin_password,
                       env={"BROKER_USER": "", "BROKER_PASSWORD": ""}, address=False)
    assert code == 0, err
    assert json.loads(out) == {"text": "a"}


def test_publish_and_subscribe(broker):
    subscriber = subprocess.Popen(
        [sys.executable, "-c", _NO_TWISTED, "subscribe", "cli.#", "--count", "2", "--json"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "BROKER_USER": "ops",
             "BROKER_PASSWORD": broker.admin_password,
             "BROKER_ADDRESS": f"http://127.0.0.1:{broker.port}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _subscribed(broker), "the subscription")
        code, out, _ = cli(broker, "publish", "cli.one", '{"n": 1}')
        assert code == 0 and out.strip()
        code, out, _ = cli(broker, "publish", "cli.two", "-", "--json", stdin='{"n": 2}')
        assert code == 0 and json.loads(out)["topic"] == "cli.two"
        out, err = subscriber.communicate(timeout=30)
    finally:
        subscriber.kill()
    messages = [json.loads(line) for line in out.splitlines()]
    assert [(m["topic"], m["data"]) for m in messages] == [("cli.one", {"n": 1}),
                                                           ("cli.two", {"n": 2})]
    assert subscriber.returncode == 0


def _metrics(broker):
    return json.loads(broker.request("GET", "/broker/metrics")[2])["counters"]


def _subscribed(broker):
    hub = _metrics(broker).get("pubsub", {})
    return hub.get("subscriptions", 0) >= 1


def test_amqp_publish(broker):
    code, out, err = cli(broker, "amqp-publish", "rabbit-out", '{"text": "hi"}', "--routing-key",
                         broker.queue, "-H", "x-origin=cli")
    assert code == 0 and out.startswith("confirmed "), err
    blocking = blocking_connection()
    try:
        properties, body = get_one(blocking.channel(), broker.queue)
        assert json.loads(body) == {"text": "hi"} and properties.headers["x-origin"] == "cli"
    finally:
        blocking.close()
    code, _, err = cli(broker, "amqp-publish", "nowhere", "{}")
    assert code == 1 and "outgoing" in err


def test_deploy(broker, tmp_path):
    module = tmp_path / "cli_hello.py"
    module.write_text("from broker import Service\n\nclass Hi(Service):\n    name = 'cli.hi'\n\n"
                      "    def handle(self):\n        self.response.payload = {'hi': True}\n")
    code, out, err = cli(broker, "deploy", str(module))
    assert (code, out) == (0, "deployed cli_hello.py: cli.hi\n"), err
    assert json.loads(cli(broker, "invoke", "cli.hi")[1]) == {"hi": True}
    module.write_text("import nowhere_to_be_found\n")
    code, _, err = cli(broker, "deploy", str(module))
    assert code == 1 and "ModuleNotFoundError" in err and "previous version keeps serving" in err
    code, _, err = cli(broker, "deploy", str(tmp_path / "missing.py"))
    assert code == 2 and "missing.py" in err


def test_config_export_and_import(broker, tmp_path):
    code, text, _ = cli(broker, "config", "export")
    assert code == 0 and broker.admin_password not in text
    exported = tmp_path / "running.yaml"
    assert cli(broker, "config", "export", "-o", str(exported))[0] == 0
    assert exported.read_text() == text
    assert cli(broker, "config", "import", str(exported)) == (
        0, "changed 0 item(s) (nothing to do)\n", "")
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace("path: /demo/echo", "path: /demo/echo2"))
    code, out, _ = cli(broker, "config", "import", str(changed), "--dry-run")
    assert (code, out) == (0, "would change 1 item(s):\n  updated  channels echo\n")
    assert broker.request("POST", "/demo/echo", '{"text": "x"}')[0] == 200
    code, out, _ = cli(broker, "config", "import", str(changed), "--json")
    assert code == 0 and json.loads(out)["changes"] == [
        {"kind": "channels", "id": "echo", "change": "updated"}]
    assert broker.request("POST", "/demo/echo2", '{"text": "x"}')[0] == 200
    assert cli(broker, "config", "import", str(exported))[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels:\n  - {name: echo, type: http, path: nope, service: demo.echo}\n")
    code, _, err = cli(broker, "config", "import", str(bad))
    assert code == 1 and "path" in err and "must match" in err
    assert broker.request("POST", "/demo/echo", '{"text": "x"}')[0] == 200


def test_jobs_list_and_run(broker):
    code, out, _ = cli(broker, "jobs", "list", "--json")
    assert code == 0 and [j["name"] for j in json.loads(out)["jobs"]] == ["nightly"]
    code, out, _ = cli(broker, "jobs", "list")
    assert code == 0 and out.startswith("nightly\tenabled")
    code, out, err = cli(broker, "jobs", "run", "nightly")
    assert code == 0, err
    code, _, err = cli(broker, "jobs", "run", "nope")
    assert code == 1 and "404" in err
    assert cli(broker, "jobs", "disable", "nightly") == (0, "disabled nightly\n", "")
    assert cli(broker, "jobs", "list")[1].startswith("nightly\tdisabled")
    assert cli(broker, "jobs", "enable", "nightly")[0] == 0
    assert cli(broker, "jobs", "list")[1].startswith("nightly\tenabled")


def test_status(broker):
    code, out, _ = cli(broker, "status")
    assert code == 0 and out.startswith(f"cli at http://127.0.0.1:{broker.port}: ok")
    assert "config: security 1, connections 1" in out
    code, out, _ = cli(broker, "status", "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "ok" and report["config"]["kinds"]["jobs"] == 1


@requires_redis
def test_subscribe_resumes_after_the_broker_restarts(tmp_path):
    if not rabbitmq_reachable():
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")
    namespace = f"t.cli.{suffix()}"
    config = _config(tmp_path, f"t.cli.{suffix()}",
                     redis=f"redis: redis://127.0.0.1:6379\n  namespace: {namespace}")
    port = free_port()
    listen = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    first = BrokerProcess(config, args=listen).start()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROKER_USER": "ops",
           "BROKER_PASSWORD": first.admin_password, "BROKER_ADDRESS": f"http://127.0.0.1:{port}"}
    subscriber = subprocess.Popen([sys.executable, "-c", _NO_TWISTED, "subscribe", "r.#",
                                   "--count", "3"], env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(subscriber.stdout), daemon=True)
    reader.start()
    second = None
    try:
        wait_for(lambda: _subscribed(first), "the subscription")
        cli(first, "publish", "r.one", '{"n": 1}')
        wait_for(lambda: lines, "the first message")
        first.stop()
        second = BrokerProcess(config, args=listen)
        second.admin_password = first.admin_password
        second.env["BROKER_ADMIN_PASSWORD"] = first.admin_password
        second.start()
        cli(second, "publish", "r.two", '{"n": 2}')
        cli(second, "publish", "r.three", '{"n": 3}')
        assert subscriber.wait(timeout=30) == 0
        reader.join(5)
    finally:
        subscriber.kill()
        first.stop()
        if second is not None:
            second.stop()
    assert lines == ['r.one {"n": 1}\n', 'r.two {"n": 2}\n', 'r.three {"n": 3}\n']


def test_run_and_check_are_handed_to_the_server_package(broker, tmp_path):
    code, out, _ = cli(broker, "check", "--config", str(ROOT / "etc" / "broker.yaml"))
    assert code == 0 and "etc/broker.yaml is valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: [{name: x, type: http, path: nope, service: demo.echo}]\n")
    code, _, err = cli(broker, "check", "--config", str(bad))
    assert code == 1 and "channels[0].path" in err
