"""The offline fixture providers: their routes and answers, without sockets."""

import json
from base64 import b64encode

from broker.http.protocol import HTTPRequest
from broker.http.router import Router
from broker.config.schema import Schema
from broker.errors import NotFound, Unauthorized
from broker.fixtures import FIXTURES
from broker.fixtures.rates import BASE_RATES, RateFixtures
from broker.security.auth import BasicAuth

import pytest

ADMIN = {"authorization": "Basic " + b64encode(b"admin:s3cret").decode()}


def request(method, path, query="", headers=None):
    return HTTPRequest(method=method, path=path, query=query, version="1.1", headers=headers or {},
                       body=b"", keep_alive=True, peer="127.0.0.1", raw_head=b"")


def serve(security=None):
    fixtures = RateFixtures(clock=lambda: 1704412800)
    router = Router()
    for route in fixtures.routes("/fixtures/rates", security):
        router.add(route)

    def call(method, path, query="", headers=ADMIN):
        route, params = router.match(method, path)
        return route.target(request(method, path, query, headers), "cid", params)
    return fixtures, call


@pytest.fixture
def served():
    return serve(BasicAuth("admin", "admin", "s3cret"))


def test_the_three_providers_answer_in_their_formats(served):
    _, call = served
    xml = call("GET", "/fixtures/rates/ecb/stats/eurofxref/eurofxref-daily.xml")
    assert xml.status == 200 and b"<Cube time='2024-01-05'>" in xml.body
    frank = call("GET", "/fixtures/rates/frankfurter/latest", "from=EUR&to=USD,GBP")
    assert json.loads(frank.body)["rates"].keys() == {"USD", "GBP"}
    csv = call("GET", "/fixtures/rates/ecb-sdmx/service/data/EXR/D.USD+GBP.EUR.SP00.A")
    assert csv.status == 200 and csv.body.count(b"\r\n") == 3
    assert ("Content-Type", "text/csv; charset=utf-8") in csv.headers


def test_unknown_series_and_bases_are_404(served):
    _, call = served
    assert call("GET", "/fixtures/rates/ecb-sdmx/service/data/EXR/M.USD.EUR.SP00.A").status == 404
    assert call("GET", "/fixtures/rates/ecb-sdmx/service/data/EXR/D.XAU.EUR.SP00.A").status == 404
    assert call("GET", "/fixtures/rates/frankfurter/latest", "from=USD").status == 404


def test_a_provider_can_be_switched_down_and_up(served):
    fixtures, call = served
    call("POST", "/fixtures/rates/frankfurter/down")
    assert call("GET", "/fixtures/rates/frankfurter/latest").status == 503
    assert json.loads(call("GET", "/fixtures/rates").body)["providers"]["frankfurter"]["down"] is True
    call("POST", "/fixtures/rates/frankfurter/up")
    assert call("GET", "/fixtures/rates/frankfurter/latest").status == 200
    assert fixtures.served["frankfurter"] == 1
    with pytest.raises(NotFound):
        call("POST", "/fixtures/rates/yahoo/down")


def test_the_switch_needs_the_configured_definition(served):
    _, call = served
    for headers in ({}, {"authorization": "Basic " + b64encode(b"admin:guess").decode()}):
        with pytest.raises(Unauthorized):
            call("POST", "/fixtures/rates/ecb/down", headers=headers)
    assert call("GET", "/fixtures/rates/ecb/stats/eurofxref/eurofxref-daily.xml", headers={}).status == 200


def test_without_a_definition_there_is_no_switch():
    _, call = serve()
    with pytest.raises(NotFound):
        call("POST", "/fixtures/rates/ecb/down")
    assert call("GET", "/fixtures/rates", headers={}).status == 200


def test_every_currency_moves_within_a_tenth_of_a_percent():
    fixtures = RateFixtures()
    for _ in range(10):
        _, rates = fixtures.rates("ecb")
        for currency, (base, _name) in BASE_RATES.items():
            assert abs(rates[currency] / base - 1) <= 0.0011


def test_fixtures_section_defaults_off():
    assert isinstance(FIXTURES, Schema)
    section = FIXTURES.check({})
    assert (section.rates, section.prefix, section.security) == (False, "/fixtures", None)
