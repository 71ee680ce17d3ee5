"""One authentication for every edge: the same credentials are accepted, or refused, alike by an
HTTP channel, a WSGI mount and the WebSocket handshake (a real broker process)."""

import base64
import json
import textwrap

import pytest
from websockets.exceptions import InvalidStatus

from broker.errors import Unauthorized
from tests.integration.broker_process import BrokerProcess
from tests.integration.ws_client import WSClient

SERVICE = '''
from broker import Service


class WhoAmI(Service):
    name = "test.whoami"

    def handle(self):
        self.response.payload = {"caller": self.request.caller}
'''

APP = '''
import json


def app(environ, start_response):
    seen = {"caller": environ.get("REMOTE_USER"),
            "credentials_passed_on": [k for k in ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY")
                                      if k in environ]}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
'''

CONFIG = '''
name: auth-edges
http: {listen: "tcp:0:interface=127.0.0.1"}
services: {paths: [whoami_service.py]}
security:
  - {name: admin, type: basic_auth, username: admin, password: s3cret}
  - {name: apps, type: apikey, key: k3y}
channels:
  - {name: who.admin, type: http, path: /http/admin, service: test.whoami, methods: [GET],
     security: admin}
  - {name: who.apps, type: http, path: /http/apps, service: test.whoami, methods: [GET],
     security: apps}
  - {name: wsgi.admin, type: wsgi, path: /wsgi/admin, app: "whoami_app:app", python_path: ["."],
     security: admin}
  - {name: wsgi.apps, type: wsgi, path: /wsgi/apps, app: "whoami_app:app", python_path: ["."],
     security: apps}
pubsub:
  permissions:
    admin: {invoke: ["test.*"]}
    apps: {invoke: ["test.*"]}
'''

BASIC = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth-edges")
    (folder / "whoami_service.py").write_text(textwrap.dedent(SERVICE))
    (folder / "whoami_app.py").write_text(textwrap.dedent(APP))
    (folder / "broker.yaml").write_text(textwrap.dedent(CONFIG))
    process = BrokerProcess(config=folder / "broker.yaml").start()
    yield process
    process.stop()


def _http(broker, definition, headers):
    status, _, body = broker.request("GET", f"/http/{definition}", headers=headers)
    return status, json.loads(body)


def _wsgi(broker, definition, headers):
    status, _, body = broker.request("GET", f"/wsgi/{definition}/", headers=headers)
    return status, json.loads(body)


def _ws(broker, headers, path="/ws"):
    """The caller the handshake identified, as a service invoked over the socket sees it."""
    try:
        with WSClient(broker.port, path=path, headers=headers) as client:
            return 101, client.request("invoke", service="test.whoami")["data"]
    except InvalidStatus as refused:
        return refused.response.status_code, None


@pytest.mark.parametrize("definition, headers, ws_path", [
    ("admin", BASIC, "/ws"),
    ("apps", {"X-API-Key": "k3y"}, "/ws"),
    ("apps", {"Authorization": "Bearer k3y"}, "/ws"),
    ("apps", {}, "/ws?token=k3y"),            # browsers: the WebSocket alone takes ?token=
])
def test_the_same_credentials_are_accepted_alike_everywhere(broker, definition, headers, ws_path):
    http_headers = headers or {"Authorization": "Bearer k3y"}
    assert _http(broker, definition, http_headers) == (200, {"caller": definition})
    assert _wsgi(broker, definition, http_headers) == (200, {"caller": definition,
                                                             "credentials_passed_on": []})
    assert _ws(broker, headers, ws_path) == (101, {"caller": definition})


@pytest.mark.parametrize("headers", [
    {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()},
    {"X-API-Key": "wrong"},
    {"Authorization": "Bearer wrong"},
])
def test_wrong_credentials_are_refused_alike_everywhere(broker, headers):
    for definition in ("admin", "apps"):
        status, error = _http(broker, definition, headers)
        assert (status, error["code"], error["details"]) == (401, "unauthorized",
                                                             Unauthorized.default_message)
        status, error = _wsgi(broker, definition, headers)
        assert (status, error["code"]) == (401, "unauthorized")
    assert _ws(broker, headers) == (401, None)


def test_no_credentials_are_refused_by_a_definition_and_anonymous_on_pubsub(broker):
    assert _http(broker, "apps", {})[0] == 401
    assert _wsgi(broker, "admin", {})[0] == 401
    with WSClient(broker.port) as client:        # no anonymous permissions: nothing to invoke
        assert client.request("invoke", service="test.whoami")["code"] == "forbidden"
