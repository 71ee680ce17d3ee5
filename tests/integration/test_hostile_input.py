"""Hostile input gets a 4xx naming the problem, never a 500, a dropped socket or a huge answer
(issue 11, points 5-9): ``twistd -n broker`` with the sample config, raw HTTP and WebSocket."""

import base64
import json

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess
from tests.integration.ws_client import WSClient

JSON = {"Content-Type": "application/json"}
DEEP = "[" * 100000 + "]" * 100000
HUGE = "1" * 400


def _error(answer):
    status, headers, body = answer
    error = json.loads(body)
    assert error["result"] == "Error" and error["cid"] == headers["x-broker-cid"]
    return status, error


def _fields(error):
    return [(e["field"], e["problem"]) for e in error.get("errors", ())]


def _no_traceback(broker, since):
    assert "Traceback" not in "".join(broker.lines[since:])


def _basic(broker):
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{broker.admin_password}".encode()).decode()}


def _metrics(broker):
    return json.loads(broker.request("GET", "/broker/metrics")[2])["counters"]


# -- point 5: query strings and paths that are not UTF-8 ---------------------------------


@pytest.mark.parametrize("path, field", [("/demo/echo?text=%ff", "text"),
                                         ("/rates?currency=%ff", "currency"),
                                         ("/customer/get1?cust_id=%ff", "cust_id"),
                                         ("/demo/echo?text=a&x=%e9%80", "x")])
def test_query_not_utf8_is_a_400_naming_the_parameter(broker, path, field):
    since = len(broker.lines)
    status, error = _error(broker.request("GET", path))
    assert (status, error["code"]) == (400, "bad_request")
    assert _fields(error) == [(field, "is not valid UTF-8 once percent-decoded")]
    _no_traceback(broker, since)


def test_path_not_utf8_is_a_400_not_a_replacement_character(broker):
    status, error = _error(broker.request("GET", "/customer/%ff"))
    assert status == 400 and "path is not valid UTF-8" in error["details"]


# -- point 6: integers beyond any range ----------------------------------------------------


def test_a_huge_integer_is_a_400_naming_the_field_in_every_format(broker):
    since = len(broker.lines)
    answers = [
        broker.request("POST", "/demo/echo", '{"text": "a", "repeat": %s}' % HUGE, JSON),
        broker.request("POST", "/demo/echo/form", f"text=a&repeat={HUGE}",
                       {"Content-Type": "application/x-www-form-urlencoded"}),
        broker.request("GET", f"/demo/echo?text=a&repeat={HUGE}"),
        broker.request("GET", "/customer/get2?cust_id=1", ),  # a control: still 200
    ]
    for answer in answers[:3]:
        status, error = _error(answer)
        assert (status, error["code"]) == (400, "invalid_input")
        assert _fields(error) == [("repeat", "must be at most 1000")]
    assert answers[3][0] == 200
    with WSClient(broker.port) as client:
        reply = client.request("invoke", service="demo.echo", data={"text": "a", "repeat": int(HUGE)})
        assert reply["code"] == "invalid_input"
        assert reply["errors"] == [{"field": "repeat", "problem": "must be at most 1000"}]
        assert client.request("ping")["pong"] is True
    _no_traceback(broker, since)


def test_the_openapi_document_shows_integer_ranges(broker):
    document = json.loads(broker.request("GET", "/openapi.json")[2])
    schema = document["paths"]["/demo/echo"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["repeat"] == {"type": ["integer", "null"], "default": 1, "minimum": 0,
                                              "maximum": 1000}  # null: not given


# -- point 7: amplification ----------------------------------------------------------------


def test_the_sample_echo_cannot_amplify(broker):
    status, error = _error(broker.request("POST", "/demo/echo", '{"text":"ab","repeat":50000000}', JSON))
    assert (status, _fields(error)) == (400, [("repeat", "must be at most 1000")])
    status, error = _error(broker.request("POST", "/demo/echo", json.dumps({"text": "x" * 101,
                                                                             "repeat": 1000}), JSON))
    assert (status, _fields(error)) == (400, [("text", "must be at most 100 characters long")])
    status, _, body = broker.request("POST", "/demo/echo", json.dumps({"text": "x" * 100, "repeat": 1000}), JSON)
    assert (status, len(json.loads(body)["text"])) == (200, 100_000)  # the most it makes


LIMITED = """
name: limited
http: {{listen: "tcp:0:interface=127.0.0.1"}}
services: {{paths: ["{plugins}"]}}
limits: {{max_response_size: 1KiB}}
channels:
  - {{name: echo, type: http, path: /demo/echo, service: demo.echo, methods: [POST]}}
  - {{name: echo.xml, type: http, path: /demo/echo/xml, service: demo.echo, methods: [POST],
     data_format: xml}}
pubsub:
  permissions:
    anonymous: {{invoke: ["demo.#"]}}
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    config = tmp_path_factory.mktemp("limited") / "broker.yaml"
    config.write_text(LIMITED.format(plugins=ROOT / "plugins"))
    process = BrokerProcess(config=config).start()
    yield process
    process.stop()


def test_an_answer_over_max_response_size_is_a_typed_500_counted_and_logged(limited):
    big = {"text": "x" * 100, "repeat": 20}     # 2000 characters: over 1KiB
    assert limited.request("POST", "/demo/echo", '{"text": "x", "repeat": 900}', JSON)[0] == 200
    status, error = _error(limited.request("POST", "/demo/echo", json.dumps(big), JSON))
    assert (status, error["code"]) == (500, "response_too_large")
    xml = "<r><text>%s</text><repeat>20</repeat></r>" % ("x" * 100)
    status, error = _error(limited.request("POST", "/demo/echo/xml", xml, {"Content-Type": "application/xml"}))
    assert (status, error["code"]) == (500, "response_too_large")
    with WSClient(limited.port) as client:
        reply = client.request("invoke", service="demo.echo", data=big)
        assert (reply["op"], reply["code"]) == ("error", "response_too_large")
        assert client.request("ping")["pong"] is True
    assert _metrics(limited)["invoker"]["responses_too_large"] == 3
    assert limited.wait_for_log("service demo.echo answered more than limits.max_response_size "
                                "(1024 bytes): not sent (cid ")
    assert "Traceback" not in limited.output


# -- point 8: deeply nested JSON, everywhere JSON comes in ----------------------------------


def test_deeply_nested_json_is_a_400_on_every_http_route(broker):
    since = len(broker.lines)
    before = _metrics(broker)["json"]["too_deep"]
    zato = {"name": "demo.echo", "payload": base64.b64encode(DEEP.encode()).decode()}
    answers = {
        "channel": broker.request("POST", "/demo/echo", DEEP, JSON),
        "publish": broker.request("POST", "/broker/publish/demo.deep", DEEP, JSON),
        "dispatcher": broker.request("POST", "/broker/invoke", DEEP, {**JSON, **_basic(broker)}),
        "zato": broker.request("POST", "/zato/admin/invoke", json.dumps(zato), _basic(broker)),
    }
    for route, answer in answers.items():
        status, error = _error(answer)
        assert (route, status, error["code"]) == (route, 400, "bad_request")
        assert "nested more than 64 levels deep" in error["details"], route
    assert _metrics(broker)["json"]["too_deep"] == before + 4
    _no_traceback(broker, since)


def test_deeply_nested_json_on_the_websocket_is_an_error_frame_and_the_socket_stays_open(broker):
    since = len(broker.lines)
    with WSClient(broker.port) as client:
        client.send(DEEP)
        frame = client.recv()
        assert (frame["op"], frame["code"]) == ("error", "bad_json")
        assert "nested more than 64 levels deep" in frame["message"]
        client.send('{"op": "ping", "id": 1, "x": %s}' % ("[" * 70 + "]" * 70))
        assert client.recv()["code"] == "bad_json"
        assert client.request("ping")["pong"] is True
    _no_traceback(broker, since)


# -- point 9: repeated keys, lone surrogates, declared content types -------------------------


def test_repeated_keys_and_lone_surrogates_are_a_400(broker):
    dup = '{"text": "a", "text": "b"}'
    status, error = _error(broker.request("POST", "/demo/echo", dup, JSON))
    assert (status, _fields(error)) == (400, [("text", "is given twice")])
    status, error = _error(broker.request("POST", "/broker/publish/demo.dup", dup, JSON))
    assert (status, _fields(error)) == (400, [("text", "is given twice")])
    status, error = _error(broker.request("POST", "/demo/echo", '{"text": "\\ud800"}', JSON))
    assert status == 400 and "lone surrogate" in error["details"]
    status, error = _error(broker.request("POST", "/broker/publish/demo.s", '["\\udfff"]', JSON))
    assert status == 400 and "lone surrogate" in error["details"]
    with WSClient(broker.port) as client:
        client.send('{"op": "ping", "op": "publish", "id": 7}')
        frame = client.recv()
        assert (frame["code"], frame["field"]) == ("bad_json", "op")
        client.send('{"op": "publish", "id": 8, "topic": "demo.s", "data": "\\ud800"}')
        frame = client.recv()
        assert frame["code"] == "bad_json" and "lone surrogate" in frame["message"]
        assert client.request("ping")["pong"] is True
    # a colon in a string is no repeated key, nor is a surrogate pair
    status, _, body = broker.request("POST", "/demo/echo", '{"text": "10:00 \\ud83d\\ude00"}', JSON)
    assert (status, json.loads(body)) == (200, {"text": "10:00 \U0001F600"})


@pytest.mark.parametrize("path, content_type, body", [
    ("/demo/echo", "application/xml", "<r><text>hi</text></r>"),
    ("/demo/echo", "text/plain", '{"text": "hi"}'),
    ("/demo/echo/xml", "application/json", '{"text": "hi"}'),
    ("/demo/echo/form", "multipart/form-data; boundary=x", "--x--"),
    ("/broker/publish/demo.ct", "application/xml", "<a/>"),
])
def test_a_declared_content_type_the_channel_does_not_read_is_a_415(broker, path, content_type, body):
    status, error = _error(broker.request("POST", path, body, {"Content-Type": content_type}))
    assert (status, error["code"]) == (415, "unsupported_media_type")
    assert _fields(error)[0][0] == "Content-Type"


def test_a_soap_channel_answers_a_415_as_a_fault(broker):
    envelope = ('<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
                '<echo><text>hi</text></echo></soap:Body></soap:Envelope>')
    status, headers, body = broker.request("POST", "/demo/echo/soap", envelope,
                                           {"Content-Type": "application/soap+xml"})
    assert status == 415 and headers["content-type"].startswith("text/xml")
    assert b"soap:Client" in body and b"application/soap+xml is not accepted" in body


@pytest.mark.parametrize("path, headers, body", [
    ("/demo/echo", {}, '{"text": "hi"}'),                                          # none declared
    ("/demo/echo", {"Content-Type": "application/x-www-form-urlencoded"}, '{"text": "hi"}'),  # curl -d
    ("/demo/echo", {"Content-Type": "application/json; charset=UTF-8"}, '{"text": "hi"}'),
    ("/demo/echo", {"Content-Type": "application/vnd.example+json"}, '{"text": "hi"}'),
    ("/demo/echo", {"Content-Type": "text/json"}, '{"text": "hi"}'),
    ("/demo/echo/xml", {"Content-Type": "text/xml"}, "<r><text>hi</text></r>"),
])
def test_content_types_the_channel_reads_are_accepted(broker, path, headers, body):
    status, _, answer = broker.request("POST", path, body, headers)
    assert status == 200 and b"hi" in answer
