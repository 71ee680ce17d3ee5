"""The OpenAPI document: valid OpenAPI 3.1, and every route, input and answer of the sample node
in it as the server handles them (issue 11, point 11)."""

import json
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate

from broker.admin.openapi import ERROR_SCHEMA, build_openapi, markdown
from broker.errors import error_body
from broker.errors import MethodNotAllowed, ValidationError
from broker.node import build_node
from broker.simpleio import SOAP11_NS, SOAP12_NS

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "broker.yaml"
JSON = "application/json"
PROTOCOL_ERRORS = (400, 408, 413, 431, 501, 503)  # refused before a route is involved
SERVICE_ERRORS = (404, 415, 500, 504)             # the channel's, the invoker's, the service's


@pytest.fixture(scope="module")
def document():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BROKER_ADMIN_PASSWORD", "pw")
        node = build_node(SAMPLE, listen="tcp:0:interface=127.0.0.1")
    return build_openapi(node.router.routes, node.store, "broker", "1")


def _operations(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield path, method, op


def _response(document, op, status):
    response = op["responses"][str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rpartition("/")[2]]
    return response


def _media(document, op, status):
    return set(_response(document, op, status)["content"])


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_rst_literals_and_roles_become_markdown_code():
    text = ("Input ``currency`` (:class:`~broker.errors.NotFound` when unknown, see "
            ":meth:`Client.invoke` and :ref:`the guide <rates-guide>`).")
    assert markdown(text) == ("Input `currency` (`NotFound` when unknown, see `Client.invoke` "
                              "and `the guide`).")


def test_plain_markdown_is_left_alone():
    assert markdown("Echo `text` back, *repeated*.") == "Echo `text` back, *repeated*."


# -- errors ---------------------------------------------------------------------------------


def test_every_operation_documents_what_the_protocol_refuses_as_a_json_error(document):
    for path, method, op in _operations(document):
        for status in PROTOCOL_ERRORS:
            assert JSON in _media(document, op, status), (path, method, status)
            assert "X-Broker-CID" in _response(document, op, status)["headers"]


def test_every_service_operation_documents_the_invokers_and_the_services_errors(document):
    services = [(path, op) for path, _, op in _operations(document)
                if "Service `" in op.get("description", "")]
    assert len(services) == 14
    for path, op in services:
        assert {str(s) for s in (*PROTOCOL_ERRORS, *SERVICE_ERRORS)} <= set(op["responses"]), path
    dispatcher = document["paths"]["/broker/invoke"]["post"]
    assert _media(document, dispatcher, 404) == {JSON}  # no service of that name
    assert "WWW-Authenticate" in _response(document, dispatcher, 401)["headers"]
    assert "401" not in document["paths"]["/demo/echo"]["post"]["responses"]


def test_the_error_schema_is_the_error_body(document):
    error = ValidationError.of([{"field": "text", "problem": "is required"}])
    jsonschema.validate(json.loads(error_body(error, "cid1")), ERROR_SCHEMA)
    allow = document["components"]["responses"]["MethodNotAllowed"]
    assert allow["headers"]["Allow"]["required"] is True
    assert error_body(MethodNotAllowed(["GET"]), "c").startswith(b'{"result":"Error","cid":"c"')


# -- SOAP, XML, JSON and form bodies --------------------------------------------------------


@pytest.mark.parametrize("path, media, namespace", [("/demo/echo/soap", "text/xml", SOAP11_NS),
                                                    ("/demo/echo/soap12", "application/soap+xml", SOAP12_NS)])
def test_soap_operations_take_an_envelope_and_answer_xml_and_faults(document, path, media, namespace):
    op = document["paths"][path]["post"]
    envelope = op["requestBody"]["content"][media]["schema"]
    assert envelope["xml"] == {"name": "Envelope", "prefix": "soap", "namespace": namespace}
    request = envelope["properties"]["Body"]["properties"]["request"]
    assert request["required"] == ["text"] and envelope["required"] == ["Body"]
    answer = op["responses"]["200"]["content"][media]["schema"]
    assert answer["xml"]["namespace"] == namespace
    assert "response" in answer["properties"]["Body"]["properties"]
    version = "11" if media == "text/xml" else "12"
    assert _response(document, op, 400)["content"] == {  # a fault, or the protocol's JSON error
        media: {"schema": {"$ref": f"#/components/schemas/SoapFault{version}"}},
        JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}
    assert _media(document, op, 404) == _media(document, op, 504) == {media}
    assert _media(document, op, 413) == _media(document, op, 431) == {JSON}


def test_xml_operations_name_their_documents(document):
    op = document["paths"]["/demo/echo/xml"]["post"]
    assert op["requestBody"]["content"]["application/xml"]["schema"]["xml"] == {"name": "request"}
    assert op["responses"]["200"]["content"]["application/xml"]["schema"]["xml"] == {"name": "response"}


def test_a_json_body_is_described_as_the_server_takes_it(document):
    """null for an optional field is taken as missing; a number or boolean as text; not in a query."""
    body = document["paths"]["/demo/echo"]["post"]["requestBody"]["content"][JSON]["schema"]
    assert body["properties"]["repeat"]["type"] == ["integer", "null"]
    assert body["properties"]["text"] == {"type": ["string", "number", "boolean"], "maxLength": 100}
    query = {p["name"]: p for p in document["paths"]["/demo/echo"]["get"]["parameters"]}
    assert query["repeat"]["schema"]["type"] == "integer" and query["text"]["required"] is True
    form = document["paths"]["/demo/echo/form"]["post"]["requestBody"]["content"]
    assert form["application/x-www-form-urlencoded"]["schema"]["properties"]["repeat"]["type"] == "integer"
    assert set(document["paths"]["/demo/echo/form"]["post"]["responses"]["200"]["content"]) == {JSON}


def test_zato_invoke_requires_a_service_name(document):
    schema = document["paths"]["/zato/admin/invoke"]["post"]["requestBody"]["content"][JSON]["schema"]
    assert schema["required"] == ["name"]
    assert schema["properties"]["name"] == {"type": ["string", "number", "boolean"], "minLength": 1}
    assert "additionalProperties" not in schema  # Zato's clients send channel, transport, ...
    assert "X-Zato-CID" in document["paths"]["/zato/admin/invoke"]["post"]["responses"]["200"]["headers"]


def test_rates_currencies_are_codes(document):
    params = {p["name"]: p["schema"] for p in document["paths"]["/rates"]["get"]["parameters"]}
    assert params["currency"]["items"]["pattern"] == r"^\s*([A-Za-z]{3}\s*)?(,\s*([A-Za-z]{3}\s*)?)*$"


# -- built-in routes --------------------------------------------------------------------------


def test_builtin_routes_are_documented(document):
    paths = document["paths"]
    for path in ("/broker/ping", "/broker/health", "/broker/metrics", "/openapi.json", "/docs",
                 "/docs/static/{name}", "/demo/live", "/demo/live.js", "/fixtures/rates",
                 "/fixtures/rates/frankfurter/latest"):
        assert "200" in paths[path]["get"]["responses"], path
    health = paths["/broker/health"]["get"]["responses"]["503"]["content"][JSON]["schema"]
    assert health["anyOf"][1] == {"$ref": "#/components/schemas/Error"}  # degraded, or the protocol's
    assert paths["/docs/static/{name}"]["get"]["parameters"][0]["schema"]["enum"][0] == "docs-init.js"


def test_publish_is_documented_with_its_callers_and_topic_rule(document):
    publish = document["paths"]["/broker/publish/{topic}"]["post"]
    assert publish["security"] == [{}, {"admin": []}, {"apps": []}]  # anonymous may publish demo.#
    assert publish["parameters"][0]["schema"]["pattern"] == r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$"
    assert {"200", "400", "401", "403", "413", "415"} <= set(publish["responses"])
    assert publish["requestBody"]["content"] == {JSON: {"schema": {}}}


def test_the_fixture_switch_is_guarded_and_names_its_values(document):
    switch = document["paths"]["/fixtures/rates/{provider}/{state}"]["post"]
    assert switch["security"] == [{"admin": []}]
    assert {p["name"]: p["schema"]["enum"] for p in switch["parameters"]} == {
        "provider": ["ecb", "frankfurter", "ecb-sdmx"], "state": ["down", "up"]}
    assert {"200", "401", "404"} <= set(switch["responses"])
    assert document["components"]["securitySchemes"]["admin"] == {"type": "http", "scheme": "basic"}
