"""The dashboard at /broker/admin/ui in real headless Chromium (chromedriver, W3C WebDriver):
it loads with no console errors, a service's count goes up after requests, a job runs from its
button, the live tail shows a published message, the invoke form answers; screenshots of the
laptop and phone layouts are saved under tests/artifacts/ (not committed)."""

import base64
import json
import secrets
from pathlib import Path

import pytest

from tests.integration.amqp_support import requires_rabbitmq
from tests.integration.broker_process import BrokerProcess, free_port, wait_until
from tests.integration.test_pubsub_browser import CHROMEDRIVER, CHROMIUM, WebDriver
from tests.integration.ws_client import WSClient

pytestmark = [requires_rabbitmq, pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")]

CONFIG = Path(__file__).parent / "configs" / "observe.yaml"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


class LoggingDriver(WebDriver):
    """The suite's WebDriver, asking Chromium to keep its console log."""

    def __init__(self):
        original = self._call

        def call(method, path, body=None):
            if path == "/session" and body is not None:
                body["capabilities"]["alwaysMatch"]["goog:loggingPrefs"] = {"browser": "ALL"}
            return original(method, path, body)

        self._call = call
        super().__init__()

    def console_errors(self):
        entries = self._call("POST", f"/session/{self.session}/se/log", {"type": "browser"})["value"]
        return [entry for entry in entries if entry.get("level") == "SEVERE"]

    def size(self, width, height):
        self._call("POST", f"/session/{self.session}/window/rect", {"width": width, "height": height})

    def screenshot(self, path):
        png = self._call("GET", f"/session/{self.session}/screenshot")["value"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(png))


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG, env={"SUFFIX": secrets.token_hex(4),
                                                "ZMQ_PORT": str(free_port()), "LOG_FORMAT": "text"}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def driver():
    browser = LoggingDriver()
    yield browser
    browser.quit()


def _auth(broker):
    token = base64.b64encode(f"admin:{broker.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _runs(broker, job):
    status, _, body = broker.request("GET", "/broker/admin/jobs", headers=_auth(broker))
    assert status == 200
    return {j["name"]: j for j in json.loads(body)["jobs"]}[job]["runs"]


def _calls(driver, service):
    return driver.script(f"var c = document.querySelector('tr[data-service=\"{service}\"] .calls');"
                         " return c ? Number(c.textContent) : -1")


def test_the_page_needs_the_admin_definition(broker):
    assert broker.request("GET", "/broker/admin/ui")[0] == 401
    assert broker.request("GET", "/broker/admin/ui/static/dashboard.js")[0] == 401
    status, headers, body = broker.request("GET", "/broker/admin/ui", headers=_auth(broker))
    assert status == 200 and b"/broker/admin/ui/static/dashboard.js" in body
    assert "script-src 'self'" in headers["content-security-policy"]


def test_the_socket_needs_the_admin_definition_and_the_pages_own_origin(broker):
    with WSClient(broker.port, path="/broker/admin/ws", headers=_auth(broker)) as ws:
        catalog = ws.recv()
        assert catalog["op"] == "catalog" and "demo.echo" in {s["name"] for s in catalog["services"]}
        snapshot = ws.recv()
        assert snapshot["op"] == "snapshot" and {j["name"] for j in snapshot["jobs"]} >= {"observe.manual"}
        ws.send({"op": "invoke", "id": 7, "service": "demo.echo", "data": {"text": "x", "repeat": 2}})
        while (frame := ws.recv())["op"] == "snapshot":
            pass
        assert frame == {"op": "ok", "id": 7, "service": "demo.echo", "data": {"text": "xx"}}
        ws.send({"op": "tail", "pattern": "bad..pattern"})
        while (frame := ws.recv())["op"] == "snapshot":
            pass
        assert frame["op"] == "error" and frame["field"] == "pattern"
    refused = [{}, {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}]
    for headers in refused:
        with pytest.raises(Exception, match="401"):
            WSClient(broker.port, path="/broker/admin/ws", headers=headers)
    with pytest.raises(Exception, match="403"):
        WSClient(broker.port, path="/broker/admin/ws", headers=_auth(broker), origin="http://evil.example")


def test_the_dashboard_shows_services_runs_jobs_tails_and_invokes(broker, driver):
    driver.size(1366, 1000)
    driver.get(f"http://admin:{broker.admin_password}@127.0.0.1:{broker.port}/broker/admin/ui")
    driver.wait_for("return document.getElementById('status').textContent === 'live'")
    driver.wait_for("return document.querySelector('tr[data-service=\"demo.echo\"]') !== null")

    before = _calls(driver, "demo.echo")
    assert before >= 0
    for n in range(5):
        status, _, _ = broker.request("POST", "/observe/echo", json.dumps({"text": str(n)}),
                                      {"Content-Type": "application/json"})
        assert status == 200
    driver.wait_for(f"var c = document.querySelector('tr[data-service=\"demo.echo\"] .calls');"
                    f" return c && Number(c.textContent) >= {before + 5}")

    runs = _runs(broker, "observe.manual")
    driver.script("document.querySelector('button[data-job=\"observe.manual\"][data-action=\"run\"]').click()")
    assert wait_until(lambda: _runs(broker, "observe.manual") == runs + 1, timeout=20)
    driver.wait_for("return /observe.manual: run done/.test(document.getElementById('jobs-message').textContent)")
    driver.wait_for(f"var c = document.querySelector('tr[data-job=\"observe.manual\"] .runs');"
                    f" return c && Number(c.textContent) === {runs + 1}")

    driver.script("document.getElementById('tail-pattern').value = 'observe.#';"
                  "document.querySelector('#tail-form button[type=submit]').click()")
    driver.wait_for("return /tailing observe/.test(document.getElementById('tail-state').textContent)")
    status, _, _ = broker.request("POST", "/observe/traffic", b"{}", {"Content-Type": "application/json"})
    assert status == 200
    driver.wait_for("return /observe.tick/.test(document.getElementById('tail-log').textContent)")

    driver.script("var s = document.getElementById('invoke-service'); s.value = 'demo.echo';"
                  "s.dispatchEvent(new Event('change'))")
    driver.wait_for("return document.querySelector('#invoke-fields [name=text]') !== null")
    driver.script("document.querySelector('#invoke-fields [name=text]').value = 'ab';"
                  "document.querySelector('#invoke-fields [name=repeat]').value = '3';"
                  "document.querySelector('#invoke-form button[type=submit]').click()")
    driver.wait_for("return /ababab/.test(document.getElementById('invoke-result').textContent)")

    # the next snapshot shows the traffic call answered, with its latency
    driver.wait_for("var c = document.querySelector('tr[data-service=\"observe.traffic\"] td:nth-child(5)');"
                    " return c && c.textContent !== '\u2014'")
    driver.size(1366, 2000)  # the whole page
    driver.wait_for("return window.innerHeight > 1500")
    driver.screenshot(ARTIFACTS / "dashboard-laptop.png")
    driver.size(390, 844)
    driver.wait_for("return document.documentElement.clientWidth <= 400")
    assert driver.script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    driver.screenshot(ARTIFACTS / "dashboard-phone.png")
    assert driver.console_errors() == []
