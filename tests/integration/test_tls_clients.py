"""A TLS listener asking for client certificates: a real TLS client presenting one signed by
the configured CA is the caller its certificate names; answers carry HSTS and the security
headers; secrets come from ``${file:PATH}``."""

import http.client
import json
import ssl
import textwrap

import pytest

from tests.integration.broker_process import BrokerProcess
from tests.tls_support import make_pki_with_clients

SERVICE = '''
from broker import Service


class WhoAmI(Service):
    name = "test.whoami"

    def handle(self):
        self.response.payload = {"caller": self.request.caller}
'''

CONFIG = '''
name: tls-clients
http:
  client_ca: "{ca}"
  hsts: 1d
services: {{paths: [whoami_service.py]}}
security:
  - {{name: certs, type: tls_client, subjects: {{billing-client: billing}}}}
  - {{name: people, type: basic_auth, username: ops, password: "${{file:{secret}}}"}}
channels:
  - {{name: who, type: http, path: /who, service: test.whoami, methods: [GET], security: certs}}
  - {{name: ops, type: http, path: /ops, service: test.whoami, methods: [GET], security: people}}
'''


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls-clients")
    pki, clients = make_pki_with_clients(folder, "billing-client", "stranger")
    (folder / "ops.secret").write_text("file-borne-secret-81f3\n")
    (folder / "whoami_service.py").write_text(textwrap.dedent(SERVICE))
    (folder / "broker.yaml").write_text(CONFIG.format(ca=pki.ca_file,
                                                      secret=folder / "ops.secret"))
    listen = f"ssl:0:interface=127.0.0.1:privateKey={pki.server_pem}"
    process = BrokerProcess(config=folder / "broker.yaml", env={"BROKER_LISTEN": listen}).start()
    yield process, pki, clients
    process.stop()


def _get(process, pki, path, client=None, headers=None):
    context = ssl.create_default_context(cafile=pki.ca_file)
    if client is not None:
        context.load_cert_chain(client)
    conn = http.client.HTTPSConnection("localhost", process.port, context=context, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def test_a_client_certificate_names_the_caller(tls):
    process, pki, clients = tls
    status, headers, body = _get(process, pki, "/who", clients["billing-client"])
    assert (status, body) == (200, {"caller": "billing"})
    assert headers["Strict-Transport-Security"] == "max-age=86400; includeSubDomains"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert _get(process, pki, "/who", clients["stranger"])[0] == 401     # signed, not listed
    assert _get(process, pki, "/who")[0] == 401                          # none presented
    # a header cannot stand in for the certificate
    assert _get(process, pki, "/who", headers={"X-Client-Cert": "billing-client"})[0] == 401


def test_a_secret_read_from_a_file(tls):
    process, pki, _ = tls
    import base64
    good = "Basic " + base64.b64encode(b"ops:file-borne-secret-81f3").decode()
    assert _get(process, pki, "/ops", headers={"Authorization": good})[:3:2] == \
        (200, {"caller": "ops"})
