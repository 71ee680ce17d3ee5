"""Hot deploy against a running broker: a module dropped into the pickup directory is deployed
(inotify on Linux), a changed one replaces the old under a request loop with no failed request,
a broken one is reported and the old keeps serving, a deleted one is undeployed."""

import base64
import json
import textwrap
import threading
import time

import pytest

from tests.integration.broker_process import BrokerProcess, wait_for

SERVICE = '''
from broker import Service


class Hello(Service):
    name = "hot.hello"

    class SimpleIO:
        output_required = ("version",)

    def handle(self):
        self.response.payload.version = "{version}"
'''

CONFIG = """
name: hot
admin: {security: ops}
security:
  - {name: ops, type: basic_auth, username: ops, password: "${BROKER_ADMIN_PASSWORD}"}
channels:
  - {name: invoke, type: http, path: /broker/invoke, service: broker.service.invoke,
     security: ops}
"""


@pytest.fixture
def broker(tmp_path):
    pickup = tmp_path / "pickup"
    pickup.mkdir()
    config = tmp_path / "broker.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    process = BrokerProcess(config, args=["--pickup", str(pickup)]).start()
    process.pickup = pickup
    process.auth = {"Authorization": "Basic " + base64.b64encode(
        f"ops:{process.admin_password}".encode()).decode()}
    yield process
    process.stop()


def _write(path, text):
    """Write as editors and deploy tools do: a temporary file renamed into place."""
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text)
    temporary.rename(path)


def _hello(broker):
    status, _, body = broker.request("GET", "/hot/hello")
    return status, json.loads(body)


def _add_channel(broker):
    status, _, body = broker.request("POST", "/broker/admin/config/channels", json.dumps(
        {"name": "hello", "type": "http", "path": "/hot/hello", "service": "hot.hello",
         "methods": ["GET"]}), broker.auth)
    assert status == 201, body


def test_a_dropped_module_is_deployed_and_served(broker):
    started = time.monotonic()
    _write(broker.pickup / "hello.py", SERVICE.format(version="v1"))
    wait_for(lambda: "hot deployed hello.py" in broker.output, "the deploy")
    took = time.monotonic() - started
    _add_channel(broker)
    assert _hello(broker) == (200, {"version": "v1"})
    assert "inotify" in broker.output
    print(f"deployed {took:.3f}s after the file was written")


def test_a_changed_module_replaces_the_old_under_a_request_loop_with_no_failure(broker):
    _write(broker.pickup / "hello.py", SERVICE.format(version="v1"))
    wait_for(lambda: "hot deployed hello.py" in broker.output, "the first deploy")
    _add_channel(broker)
    answers, failures, stop = [], [], threading.Event()

    def loop():
        while not stop.is_set():
            status, body = _hello(broker)
            (answers if status == 200 else failures).append(body)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for version in ("v2", "v3", "v4"):
            _write(broker.pickup / "hello.py", SERVICE.format(version=version))
            wait_for(lambda: any(a == {"version": version} for a in answers[-50:]),
                     f"{version} served")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(answers) > 10 and answers[-1] == {"version": "v4"}
    print(f"{len(answers)} requests across 3 redeploys, {len(failures)} failed")


def test_a_broken_module_is_reported_and_the_old_version_keeps_serving(broker):
    _write(broker.pickup / "hello.py", SERVICE.format(version="v1"))
    wait_for(lambda: "hot deployed hello.py" in broker.output, "the deploy")
    _add_channel(broker)
    _write(broker.pickup / "hello.py", "from broker import Service\nclass Broken(Service:\n")
    wait_for(lambda: "hot deploy of hello.py failed" in broker.output, "the failure")
    line = next(line for line in broker.lines if "hot deploy of hello.py failed" in line)
    assert "SyntaxError" in line and "(line 2)" in line and "Traceback" not in broker.output
    status, _, body = broker.request("GET", "/broker/admin/deploy", headers=broker.auth)
    assert status == 200 and "SyntaxError" in json.loads(body)["modules"]["hello.py"]["error"]
    assert _hello(broker) == (200, {"version": "v1"})
    bad_sio = SERVICE.format(version="v2").replace('output_required = ("version",)',
                                                     'output_required = ("version",)\n'
                                                     '        input_requird = ("x",)')
    _write(broker.pickup / "hello.py", bad_sio)
    wait_for(lambda: "unknown attribute(s) input_requird" in broker.output, "the SimpleIO error")
    assert _hello(broker) == (200, {"version": "v1"})


def test_a_deleted_module_is_undeployed_and_its_channel_says_so(broker):
    _write(broker.pickup / "hello.py", SERVICE.format(version="v1"))
    wait_for(lambda: "hot deployed hello.py" in broker.output, "the deploy")
    _add_channel(broker)
    (broker.pickup / "hello.py").unlink()
    wait_for(lambda: "undeployed hello.py" in broker.output, "the undeploy")
    status, body = _hello(broker)
    assert status == 404 and body["code"] == "service_not_found"
    assert body["details"] == "No such service: hot.hello"


def test_deploy_over_the_admin_api(broker):
    status, _, body = broker.request("POST", "/broker/admin/deploy?file=hello.py",
                                     SERVICE.format(version="api"), broker.auth)
    assert status == 200 and json.loads(body)["services"] == ["hot.hello"]
    _add_channel(broker)
    assert _hello(broker) == (200, {"version": "api"})
    status, _, body = broker.request("POST", "/broker/admin/deploy?file=hello.py",
                                     "import no_such_module\n", broker.auth)
    answer = json.loads(body)
    assert status == 400 and "ModuleNotFoundError" in answer["details"]
    assert (broker.pickup / "hello.py").read_text() == SERVICE.format(version="api")
    assert _hello(broker) == (200, {"version": "api"})
    status, _, body = broker.request("POST", "/broker/admin/deploy?file=../x.py", "x = 1",
                                     broker.auth)
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "file"
    status, _, _ = broker.request("POST", "/broker/admin/deploy?file=x.py", "x = 1")
    assert status == 401
