"""The broker end to end: ``twistd -n broker`` with the sample config, real HTTP."""

import json
import socket
from base64 import b64decode, b64encode

from lxml import etree


def _json(body):
    return json.loads(body)


def _basic(user, password):
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def test_ping(broker):
    """GET /broker/ping answers 200 JSON with a correlation id."""
    status, headers, body = broker.request("GET", "/broker/ping")
    assert status == 200
    assert _json(body)["status"] == "ok"
    assert headers["content-type"] == "application/json"
    assert headers["x-broker-cid"]


def test_health_and_metrics(broker):
    """/broker/health reports ok with no external service; /broker/metrics counts requests."""
    status, _, body = broker.request("GET", "/broker/health")
    assert status == 200 and _json(body)["status"] == "ok"
    broker.request("POST", "/demo/echo", '{"text": "a"}', {"Content-Type": "application/json"})
    counters = _json(broker.request("GET", "/broker/metrics")[2])["counters"]
    assert counters["invoker"]["invocations"] >= 1
    assert counters["http"]
    assert {"running": 0, "queued": 0, "rejected": 0}.items() <= counters["threads"].items()


def test_echo_json(broker):
    """demo.echo answers JSON with its declared output only."""
    status, headers, body = broker.request("POST", "/demo/echo", '{"text":"hi","repeat":3}',
                                           {"Content-Type": "application/json"})
    assert (status, _json(body)) == (200, {"text": "hihihi"})
    assert headers["x-broker-cid"]


def test_echo_query_string_input(broker):
    """GET input comes from the query string, converted by SimpleIO."""
    status, _, body = broker.request("GET", "/demo/echo?text=ab&repeat=2")
    assert (status, _json(body)) == (200, {"text": "abab"})


def test_missing_and_malformed_input_named(broker):
    """Bad input is a 400 whose JSON names every bad field and carries the cid."""
    status, headers, body = broker.request("POST", "/demo/echo", '{"repeat":"x","colour":"red"}')
    error = _json(body)
    assert status == 400
    assert error["cid"] == headers["x-broker-cid"]
    assert {e["field"] for e in error["errors"]} == {"text", "repeat", "colour"}
    assert "Traceback" not in body.decode()


def test_client_errors_are_logged_with_their_cid(broker):
    """The cid a 4xx answer carries finds its one log line: method, path, status, code; no body."""
    status, headers, _ = broker.request("POST", "/demo/echo?x=query-marker",
                                        '{"repeat":"x","colour":"body-marker"}')
    assert status == 400
    cid = headers["x-broker-cid"]
    assert broker.wait_for_log(f"POST /demo/echo: 400 invalid_input (cid {cid})"), broker.output
    status, headers, _ = broker.request("GET", "/no/such/path")
    assert status == 404
    assert broker.wait_for_log(f"GET /no/such/path: 404 not_found (cid {headers['x-broker-cid']})")
    assert "body-marker" not in broker.output and "query-marker" not in broker.output


def test_malformed_json(broker):
    """Malformed JSON is a 400 with a JSON body saying so."""
    status, _, body = broker.request("POST", "/demo/echo", '{"text": ')
    assert status == 400
    assert "Malformed JSON" in _json(body)["details"]


def test_echo_xml(broker):
    """The same service answers XML on the XML channel."""
    status, headers, body = broker.request(
        "POST", "/demo/echo/xml", "<request><text>hi</text><repeat>2</repeat></request>",
        {"Content-Type": "application/xml"})
    assert status == 200
    assert headers["content-type"].startswith("application/xml")
    assert etree.fromstring(body).findtext("text") == "hihi"


def test_malformed_xml(broker):
    """Malformed XML is a 400 with a JSON body."""
    status, _, body = broker.request("POST", "/demo/echo/xml", "<request><text>")
    assert status == 400
    assert "Malformed XML" in _json(body)["details"]


def test_xml_entities_are_not_expanded(broker, tmp_path):
    """An XXE payload is refused and never reads the file."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    payload = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
               "<request><text>&x;</text></request>")
    status, _, body = broker.request("POST", "/demo/echo/xml", payload)
    assert status == 400
    assert b"TOPSECRET" not in body


SOAP11 = ('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
          '<echo><text>hi</text><repeat>2</repeat></echo></soap:Body></soap:Envelope>')


def test_echo_soap11(broker):
    """SOAP 1.1 in, a SOAP 1.1 envelope out."""
    status, headers, body = broker.request("POST", "/demo/echo/soap", SOAP11,
                                           {"Content-Type": "text/xml", "SOAPAction": "echo"})
    assert status == 200
    assert headers["content-type"].startswith("text/xml")
    root = etree.fromstring(body)
    assert root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    assert root.xpath("string(//*[local-name()='text'])") == "hihi"


def test_soap_bad_input_is_a_fault(broker):
    """Bad input on a SOAP channel answers a SOAP Fault, not JSON."""
    bad = SOAP11.replace("<text>hi</text>", "")
    status, _, body = broker.request("POST", "/demo/echo/soap", bad, {"Content-Type": "text/xml"})
    assert status == 400
    root = etree.fromstring(body)
    assert root.xpath("string(//*[local-name()='faultcode'])").endswith("Client")
    assert "text" in root.xpath("string(//*[local-name()='faultstring'])")


def test_echo_soap12(broker):
    """SOAP 1.2 in, a SOAP 1.2 envelope out."""
    envelope = SOAP11.replace("http://schemas.xmlsoap.org/soap/envelope/",
                              "http://www.w3.org/2003/05/soap-envelope")
    status, headers, body = broker.request("POST", "/demo/echo/soap12", envelope,
                                           {"Content-Type": "application/soap+xml"})
    assert status == 200
    assert headers["content-type"].startswith("application/soap+xml")
    assert etree.fromstring(body).xpath("string(//*[local-name()='text'])") == "hihi"


def test_echo_form(broker):
    """Form data in, JSON out."""
    status, _, body = broker.request("POST", "/demo/echo/form", "text=yo&repeat=2",
                                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, _json(body)) == (200, {"text": "yoyo"})


def test_unknown_path_is_404_json(broker):
    """An unknown path is a 404 with a JSON body."""
    status, _, body = broker.request("GET", "/no/such/thing")
    assert status == 404
    assert _json(body)["result"] == "Error"


def test_trace_is_405_with_allow(broker):
    """TRACE (or any method not routed) is a 405 with Allow."""
    status, headers, body = broker.request("TRACE", "/demo/echo")
    assert status == 405
    assert headers["allow"] == "GET, HEAD, POST"
    assert _json(body)["code"] == "method_not_allowed"


def test_body_over_limit_is_413_before_reading(broker):
    """A Content-Length over the limit is refused at once, before the body is sent."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(b"POST /demo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def _raw(broker, data):
    """Send raw bytes; everything the broker answers until it closes."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_host_and_transfer_encoding_framing_refused_on_the_wire(broker):
    """HTTP/1.1 without Host or with two is 400; a coding before chunked is 501; JSON bodies."""
    cases = [(b"GET /broker/ping HTTP/1.1\r\n\r\n", b"400 "),
             (b"GET /broker/ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400 "),
             (b"POST /demo/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: gzip, chunked\r\n\r\nc\r\n{\"text\":\"a\"}\r\n0\r\n\r\n", b"501 ")]
    for data, status in cases:
        answer = _raw(broker, data)
        assert answer.startswith(b"HTTP/1.1 " + status), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["result"] == "Error"
    old = _raw(broker, b"GET /broker/ping HTTP/1.0\r\n\r\n")
    assert old.startswith(b"HTTP/1.1 200 "), old
    counters = _json(broker.request("GET", "/broker/metrics")[2])["counters"]["http"]
    assert counters["malformed"] >= 2 and counters["unsupported_transfer_coding"] >= 1


def test_head_has_no_body(broker):
    """HEAD answers the GET's headers with no body."""
    status, headers, body = broker.request("HEAD", "/broker/ping")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) > 0


def test_keep_alive_and_pipelining(broker):
    """Two pipelined requests on one connection come back in order."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        body = b'{"text":"a"}'
        one = (b"POST /demo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        sock.sendall(one + one.replace(b'"a"', b'"b"') + b"GET /broker/ping HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 ") == 3
    assert data.index(b'{"text":"a"}') < data.index(b'{"text":"b"}') < data.index(b'"status"')


def test_dispatcher_requires_credentials(broker):
    """The dispatcher is guarded: no credentials → 401 with a challenge and JSON."""
    status, headers, body = broker.request("POST", "/broker/invoke", '{"service":"demo.echo"}')
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic")
    assert _json(body)["details"] == "You are not allowed to access this resource"


def test_dispatcher_wrong_password_same_answer(broker):
    """A wrong password gets exactly the same answer as none."""
    status, _, body = broker.request("POST", "/broker/invoke", '{"service":"demo.echo"}',
                                     _basic("admin", "wrong"))
    assert status == 401
    assert _json(body)["details"] == "You are not allowed to access this resource"


def test_dispatcher_invokes_any_service(broker):
    """POST /broker/invoke runs the named service with the data given."""
    status, _, body = broker.request(
        "POST", "/broker/invoke", json.dumps({"service": "demo.echo", "data": {"text": "z", "repeat": 2}}),
        _basic("admin", broker.admin_password))
    assert (status, _json(body)) == (200, {"text": "zz"})


def test_dispatcher_passes_validation_errors(broker):
    """The invoked service's validation errors reach the caller as a 400."""
    status, _, body = broker.request("POST", "/broker/invoke", json.dumps({"service": "demo.echo", "data": {}}),
                                     _basic("admin", broker.admin_password))
    assert status == 400
    assert _json(body)["errors"] == [{"field": "text", "problem": "is required"}]


def test_dispatcher_unknown_service(broker):
    """An unknown service name is a 404 naming it."""
    status, _, body = broker.request("POST", "/broker/invoke", '{"service":"no.such"}',
                                     _basic("admin", broker.admin_password))
    assert status == 404
    assert "no.such" in _json(body)["details"]
    assert _json(body)["code"] == "service_not_found"


def test_zato_wire_format(broker):
    """/zato/admin/invoke speaks zato.service.invoke exactly as AnyServiceInvoker sends it."""
    request = {"name": "customer.get1", "payload": b64encode(b'{"cust_id": "123"}').decode(),
               "channel": "invoke", "data_format": "json", "transport": None, "is_async": False,
               "expiration": 15, "pid": None, "all_pids": False, "timeout": None,
               "skip_response_elem": True}
    # AnyServiceInvoker sends no Content-Type.
    status, headers, body = broker.request("POST", "/zato/admin/invoke", json.dumps(request),
                                           _basic("admin", broker.admin_password))
    answer = _json(body)
    assert status == 200
    assert answer["zato_env"]["result"] == "ZATO_OK"
    assert answer["zato_env"]["cid"] == headers["x-zato-cid"]
    assert json.loads(b64decode(answer["response"])) == {"cust_id": "123", "name": "Cust-123"}


def test_zato_async_returns_the_task_id(broker):
    """``is_async`` answers at once (202) with the task id as the response and a Location."""
    request = {"name": "demo.echo", "payload": b64encode(b'{"text": "a"}').decode(), "is_async": True}
    status, headers, body = broker.request("POST", "/zato/admin/invoke", json.dumps(request),
                                           _basic("admin", broker.admin_password))
    assert status == 202
    task_id = b64decode(_json(body)["response"]).decode()
    assert headers["location"] == f"/broker/tasks/{task_id}" and headers["x-zato-cid"]


def test_zato_errors_have_zato_shape(broker):
    """Errors on the Zato channel are non-2xx {"result": "Error", "cid", "details"} with X-Zato-CID."""
    request = {"name": "demo.echo", "payload": b64encode(b"{}").decode()}
    status, headers, body = broker.request("POST", "/zato/admin/invoke", json.dumps(request),
                                           _basic("admin", broker.admin_password))
    answer = _json(body)
    assert status == 400
    assert answer["result"] == "Error"
    assert answer["cid"] == headers["x-zato-cid"]
    assert "text" in answer["details"]


def test_customer_get1_string_passes_through(broker):
    """customer.get1 answers the JSON string it built itself."""
    status, _, body = broker.request("POST", "/customer/get1", '{"cust_id": "456"}')
    assert (status, _json(body)) == (200, {"cust_id": "456", "name": "Cust-456"})


def test_customer_get2_dict_and_path_param(broker):
    """customer.get2's dict is serialised; a path param becomes input."""
    status, _, body = broker.request("GET", "/customer/123")
    assert (status, _json(body)) == (200, {"cust_id": "123", "name": "Cust-123"})


def test_openapi_document(broker):
    """/openapi.json is OpenAPI 3.1 generated from channels and SimpleIO."""
    status, _, body = broker.request("GET", "/openapi.json")
    doc = _json(body)
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    echo = doc["paths"]["/demo/echo"]["post"]
    schema = echo["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"]
    assert schema["properties"]["repeat"]["type"] == ["integer", "null"]
    assert "/demo/echo/xml" in doc["paths"]
    assert doc["paths"]["/broker/invoke"]["post"]["security"] == [{"admin": []}]
    assert doc["components"]["securitySchemes"]["admin"] == {"type": "http", "scheme": "basic"}


def test_openapi_texts_are_markdown(broker):
    """Docstrings are reStructuredText; Swagger UI shows Markdown: ``x`` becomes `x`."""
    doc = _json(broker.request("GET", "/openapi.json")[2])
    rates = doc["paths"]["/rates"]["get"]
    assert "`currencies`" in rates["description"]
    texts = [op.get(key, "") for item in doc["paths"].values() for op in item.values()
             for key in ("summary", "description")]
    assert not [text for text in texts if "``" in text or ":class:" in text]


def test_docs_page_and_its_assets(broker):
    """/docs is served with its assets from the broker itself, no CDN."""
    status, _, page = broker.request("GET", "/docs")
    assert status == 200
    assert b"https://" not in page and b"http://" not in page
    for asset in (b"/docs/static/swagger-ui-bundle.js", b"/docs/static/swagger-ui.css",
                  b"/docs/static/docs-init.js"):
        assert asset in page
        status, headers, body = broker.request("GET", asset.decode())
        assert status == 200 and len(body) > 10


def test_secrets_never_logged(broker):
    """Neither the password nor the API key appears in the log."""
    broker.request("POST", "/broker/invoke", '{"service":"demo.echo"}', _basic("admin", "wrong-guess"))
    assert broker.admin_password not in broker.output
    assert broker.api_key not in broker.output
    assert "wrong-guess" not in broker.output
