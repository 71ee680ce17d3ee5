"""The /demo/live page in real headless Chromium (driven by chromedriver over W3C WebDriver)."""

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.integration.broker_process import BrokerProcess, free_port, wait_for

CONFIG = Path(__file__).parent / "configs" / "pubsub.yaml"
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")





class WebDriver:
    """The few W3C WebDriver calls the test needs, over plain HTTP."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait(lambda: self._call("GET", "/status")["value"]["ready"])
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}}}}
        self.session = self._call("POST", "/session", caps)["value"]["sessionId"]

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    @staticmethod
    def _wait(predicate, deadline=60):
        wait_for(lambda: _quietly(predicate), "the browser", deadline)

    def get(self, url):
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def script(self, source):
        return self._call("POST", f"/session/{self.session}/execute/sync",
                          {"script": source, "args": []})["value"]

    def wait_for(self, source):
        self._wait(lambda: self.script(source))

    def quit(self):
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG).start()
    yield process
    process.stop()


def test_the_live_page_shows_a_published_message(broker):
    driver = WebDriver()
    try:
        driver.get(f"http://127.0.0.1:{broker.port}/demo/live?topic=demo.browser.%23")
        driver.wait_for("return document.getElementById('status').textContent === 'subscribed'")
        status, _, body = broker.request("POST", "/broker/publish/demo.browser.hello",
                                         json.dumps({"greeting": "hello from the test"}))
        assert status == 200
        assert json.loads(body)["msg_id"]
        driver.wait_for("return document.querySelectorAll('#log li.message').length > 0")
        shown = driver.script("return document.querySelector('#log li.message').textContent")
        assert "demo.browser.hello" in shown and "hello from the test" in shown
    finally:
        driver.quit()


def _quietly(predicate):
    """``predicate()``, or False while the browser does not answer yet."""
    try:
        return predicate()
    except OSError:
        return False
