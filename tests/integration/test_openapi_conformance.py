"""The node answers as its ``/openapi.json`` says (issue 11, point 11): ``twistd -n broker`` with the
sample config, each request checked as a fuzzer checks it.

Every answer's status must be documented for its operation, its media type documented for that
status, a JSON body valid against the documented schema and the documented required headers
present; a request the document calls valid must not be refused as bad input (400, 415), one it
calls invalid must be refused (4xx). The requests are the ones schemathesis found answered
otherwise, and the protocol's and SOAP's own refusals.
"""

import base64
import json
import socket

import jsonschema
import pytest

ADMIN = object()  # stands for the admin's Basic credentials
JSON = {"Content-Type": "application/json"}
XML = {"Content-Type": "application/xml"}
SOAP11 = {"Content-Type": "text/xml"}
SOAP12 = {"Content-Type": "application/soap+xml"}
ENVELOPE = '<s:Envelope xmlns:s="{ns}"><s:Body>{body}</s:Body></s:Envelope>'
NS11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS12 = "http://www.w3.org/2003/05/soap-envelope"


@pytest.fixture(scope="module")
def document(broker):
    status, _, body = broker.request("GET", "/openapi.json")
    assert status == 200
    return json.loads(body)


def _resolve(document, item):
    while "$ref" in item:
        kind, name = item["$ref"].removeprefix("#/components/").split("/")
        item = document["components"][kind][name]
    return item


def _valid(document, schema, instance):
    """Whether ``instance`` is valid against ``schema``, its references taken from ``document``."""
    root = {**schema, "components": document["components"]}  # "#/components/..." resolves here
    return jsonschema.Draft202012Validator(root).is_valid(instance)


def _check(document, method, template, status, headers, body, valid_input=None, json_input=None):
    """Assert the answer conforms; ``valid_input`` says what the document makes of the request
    (None: the JSON body ``json_input`` decides)."""
    where = f"{method} {template} -> {status}"
    op = document["paths"][template][method.lower()]
    assert str(status) in op["responses"], f"{where}: status not documented: {body[:300]!r}"
    response = _resolve(document, op["responses"][str(status)])
    media = headers.get("content-type", "").partition(";")[0].strip()
    assert media in response.get("content", {}), f"{where}: {media} not documented"
    for name, header in response.get("headers", {}).items():
        if header.get("required"):
            assert name.lower() in headers, f"{where}: no {name} header"
    if media == "application/json":
        schema = response["content"][media].get("schema", {})
        assert _valid(document, schema, json.loads(body)), f"{where}: body not as documented: {body!r}"
    if valid_input is None and json_input is not None:
        request_schema = op["requestBody"]["content"]["application/json"]["schema"]
        valid_input = _valid(document, request_schema, json_input)
    if valid_input is True:
        assert status not in (400, 415, 422), f"{where}: valid input refused: {body!r}"
    elif valid_input is False:
        assert 400 <= status < 500, f"{where}: invalid input accepted: {body!r}"


def _headers(broker, headers):
    headers = dict(headers or {})
    if headers.pop("auth", None) is ADMIN:
        token = base64.b64encode(f"admin:{broker.admin_password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


# (method, path, operation's path, headers, body, what the document makes of the input)
CASES = [
    # schemathesis' findings: a dispatcher's 404, JSON nulls and text given as a boolean
    ("POST", "/broker/invoke", "/broker/invoke", {**JSON, "auth": ADMIN}, {"service": "no.such"}, None),
    ("POST", "/demo/echo", "/demo/echo", JSON, {"text": "a", "repeat": None}, None),
    ("POST", "/demo/echo", "/demo/echo", JSON, {"text": False}, None),
    ("POST", "/demo/echo", "/demo/echo", JSON, {"text": "x" * 101}, None),
    ("POST", "/demo/echo", "/demo/echo", JSON, {"text": "a", "repeat": 1001}, None),
    ("GET", "/demo/echo?text=" + "x" * 101, "/demo/echo", {}, None, False),
    ("POST", "/zato/admin/invoke", "/zato/admin/invoke", {**JSON, "auth": ADMIN}, {}, None),
    ("POST", "/zato/admin/invoke", "/zato/admin/invoke", {**JSON, "auth": ADMIN},
     {"name": "no.such", "payload": "not base64!"}, None),
    ("POST", "/zato/admin/invoke", "/zato/admin/invoke", {**JSON, "auth": ADMIN}, {"name": ""}, None),
    ("GET", "/rates?currency=&currency=", "/rates", {}, None, True),
    ("GET", "/rates?currency=usd,%20gbp", "/rates", {}, None, True),
    ("GET", "/rates?currencies=null", "/rates", {}, None, False),
    ("GET", "/rates?currency=XYZ", "/rates", {}, None, True),  # no such rate: a 404
    # an empty XML element is an empty string
    ("POST", "/demo/echo/xml", "/demo/echo/xml", XML, "<request><text></text></request>", True),
    ("POST", "/demo/echo/xml", "/demo/echo/xml", XML, "<request><text/><repeat></repeat></request>", False),
    ("POST", "/demo/echo/xml", "/demo/echo/xml", XML, "<request><repeat>2</repeat></request>", False),
    # SOAP: an Envelope in, XML or a fault out
    ("POST", "/demo/echo/soap", "/demo/echo/soap", SOAP11,
     ENVELOPE.format(ns=NS11, body="<request><text>hi</text></request>"), True),
    ("POST", "/demo/echo/soap12", "/demo/echo/soap12", SOAP12,
     ENVELOPE.format(ns=NS12, body="<request><text></text><repeat>3</repeat></request>"), True),
    ("POST", "/demo/echo/soap12", "/demo/echo/soap12", SOAP12, "<data><text>a</text></data>", False),
    ("POST", "/demo/echo/soap", "/demo/echo/soap", SOAP11,
     ENVELOPE.format(ns=NS11, body="<a><text>1</text></a><b><text>2</text></b>"), False),
    ("POST", "/demo/echo/soap", "/demo/echo/soap", SOAP11, ENVELOPE.format(ns=NS11, body=""), False),
    ("POST", "/demo/echo/soap", "/demo/echo/soap", JSON, '{"text": "a"}', False),  # 415, a fault
    ("POST", "/demo/echo", "/demo/echo", XML, "<request><text>a</text></request>", False),  # 415
    # built-in routes
    ("GET", "/broker/ping", "/broker/ping", {}, None, True),
    ("GET", "/broker/health", "/broker/health", {}, None, True),
    ("GET", "/broker/metrics", "/broker/metrics", {}, None, True),
    ("GET", "/docs/static/nothing.js", "/docs/static/{name}", {}, None, False),
    ("POST", "/broker/publish/demo.conformance", "/broker/publish/{topic}", JSON, {"a": 1}, None),
    ("POST", "/broker/publish/secret.x", "/broker/publish/{topic}", JSON, {"a": 1}, True),  # 401
    ("POST", "/broker/publish/demo..x", "/broker/publish/{topic}", JSON, {"a": 1}, False),
    ("POST", "/broker/publish/demo.x", "/broker/publish/{topic}", {"Content-Type": "text/plain"}, "1", False),
    ("POST", "/fixtures/rates/ecb/sideways", "/fixtures/rates/{provider}/{state}", {"auth": ADMIN}, None,
     False),
    ("POST", "/fixtures/rates/ecb/up", "/fixtures/rates/{provider}/{state}", {}, None, True),  # 401
    ("GET", "/fixtures/rates/frankfurter/latest?from=USD", "/fixtures/rates/frankfurter/latest", {}, None,
     True),
    ("GET", "/fixtures/rates/ecb-sdmx/service/data/EXR/D.USD.EUR.SP00.A",
     "/fixtures/rates/ecb-sdmx/service/data/EXR/{key}", {}, None, True),
]


@pytest.mark.parametrize("method, path, template, headers, body, valid", CASES,
                         ids=[f"{c[0]} {c[1][:50]}" for c in CASES])
def test_the_answer_is_as_documented(broker, document, method, path, template, headers, body, valid):
    since = len(broker.lines)
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    status, answer_headers, answer = broker.request(method, path, data, _headers(broker, headers))
    _check(document, method, template, status, answer_headers, answer, valid,
           body if isinstance(body, dict) else None)
    assert "Traceback" not in "".join(broker.lines[since:])


def _raw(broker, data):
    """Send raw bytes; the status, headers and body of the answer, read until the broker closes."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


PROTOCOL = [
    (b"POST /demo/echo/soap HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),             # no Host
    (b"POST /demo/echo/soap12 HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"POST /demo/echo/soap HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST /demo/echo/soap HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 20000 + b"\r\n\r\n", 431),
    (b"POST /broker/publish/demo.x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"GET /broker/ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
]


@pytest.mark.parametrize("data, expected", PROTOCOL, ids=[f"{s} {d[:30]!r}" for d, s in PROTOCOL])
def test_the_protocols_refusals_are_documented_json_on_every_path(broker, document, data, expected):
    """SOAP paths included: what the protocol refuses is refused before any channel is involved."""
    status, headers, body = _raw(broker, data)
    method, target = data.split(b" ", 2)[:2]
    template = {"/broker/publish/demo.x": "/broker/publish/{topic}"}.get(target.decode(), target.decode())
    assert status == expected
    _check(document, method.decode(), template, status, headers, body)


def test_a_failed_async_zato_call_is_one_log_line_not_a_traceback(broker):
    since = len(broker.lines)
    request = {"name": "demo.echo", "is_async": True}  # no payload: demo.echo's text is missing
    status, headers, _ = broker.request("POST", "/zato/admin/invoke", json.dumps(request),
                                        _headers(broker, {"auth": ADMIN}))
    assert status == 202
    task_id = headers["location"].rpartition("/")[2]
    assert broker.wait_for_log(f"task {task_id} of demo.echo failed: 400 invalid_input: Invalid input: "
                               f"text: is required")
    assert "Traceback" not in "".join(broker.lines[since:])
