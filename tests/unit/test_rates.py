"""The exchange-rates example: each provider's parser, the merge, and both services
with fake outgoing connections, cache and publisher (no sockets)."""

import importlib.util
import json
from pathlib import Path

import pytest
from twisted.internet import defer

from broker.errors import NotFound, ServiceUnavailable, ValidationError
from broker.fixtures.rates import BASE_RATES, RateFixtures
from broker.http.content import parse_body
from broker.http.outgoing_errors import ConnectionFailed
from broker.runtime import Resources
from broker.testing import call_service_sync

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("rates_under_test", ROOT / "plugins" / "rates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rates = _load()

ECB_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
 xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <Cube><Cube time='2024-01-05'>
    <Cube currency='USD' rate='1.0921'/><Cube currency='GBP' rate='0.86038'/>
  </Cube></Cube>
</gesmes:Envelope>"""

SDMX_HEADER = ("KEY,FREQ,CURRENCY,CURRENCY_DENOM,EXR_TYPE,EXR_SUFFIX,TIME_PERIOD,OBS_VALUE,"
               "OBS_STATUS,TITLE_COMPL\r\n")


def xml(text):
    return parse_body("xml", text)


def csv_rows(text):
    return parse_body("csv", text.encode())


# -- parsers ---------------------------------------------------------------------------------


def test_ecb_daily_xml():
    assert rates.parse_ecb_daily(xml(ECB_XML)) == {
        "USD": {"rate": 1.0921, "as_of": "2024-01-05"}, "GBP": {"rate": 0.86038, "as_of": "2024-01-05"}}


@pytest.mark.parametrize("payload, problem", [
    (b"<rates/>", "no <Cube time=...> element"),
    (ECB_XML.replace(b"2024-01-05", b"yesterday"), "Cube time: 'yesterday' is not a date"),
    (ECB_XML.replace(b"rate='1.0921'", b"rate='1,09'"), "Cube USD: rate '1,09' is not a number"),
    (ECB_XML.replace(b"rate='1.0921'", b"rate='-1'"), "Cube USD: rate '-1' is not a positive number"),
    (ECB_XML.replace(b"currency='GBP'", b"currency='pound'"), "'pound' is not a currency code"),
    (ECB_XML.replace(b"rate='0.86038'", b""), "Cube GBP: rate None is not a number"),
])
def test_ecb_daily_xml_malformed(payload, problem):
    with pytest.raises(rates.ProviderError, match=problem.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*").replace(".", r"\.")):
        rates.parse_ecb_daily(xml(payload))


def test_ecb_daily_xml_empty_cube():
    payload = ECB_XML.split(b"<Cube currency")[0] + b"</Cube></Cube></gesmes:Envelope>"
    with pytest.raises(rates.ProviderError, match="no rates in the Cube of 2024-01-05"):
        rates.parse_ecb_daily(xml(payload))


def test_frankfurter_json():
    data = {"amount": 1.0, "base": "EUR", "date": "2024-01-05", "rates": {"USD": 1.0921, "JPY": 158}}
    assert rates.parse_frankfurter(data) == {"USD": {"rate": 1.0921, "as_of": "2024-01-05"},
                                             "JPY": {"rate": 158.0, "as_of": "2024-01-05"}}


def test_frankfurter_amount_scales_rates():
    data = {"amount": 10, "base": "EUR", "date": "2024-01-05", "rates": {"USD": 10.921}}
    assert rates.parse_frankfurter(data)["USD"]["rate"] == pytest.approx(1.0921)


@pytest.mark.parametrize("data, problem", [
    ([1, 2], "expected a JSON object"),
    ({"base": "USD", "date": "2024-01-05", "rates": {"EUR": 0.9}}, "base is 'USD', expected 'EUR'"),
    ({"base": "EUR", "date": "5 Jan", "rates": {"USD": 1}}, "date: '5 Jan' is not a date"),
    ({"base": "EUR", "date": "2024-01-05", "rates": {}}, "rates is missing or empty"),
    ({"base": "EUR", "date": "2024-01-05", "rates": {"USD": "1.09"}}, "rates.USD: '1.09' is not a number"),
    ({"base": "EUR", "date": "2024-01-05", "rates": {"USD": True}}, "rates.USD: True is not a number"),
    ({"base": "EUR", "date": "2024-01-05", "rates": {"USD": 0}}, "rates.USD: rate 0 is not a positive"),
    ({"base": "EUR", "date": "2024-01-05", "rates": {"usd": 1}}, "'usd' is not a currency code"),
    ({"amount": 0, "base": "EUR", "date": "2024-01-05", "rates": {"USD": 1}}, "amount 0 is not a positive"),
])
def test_frankfurter_malformed(data, problem):
    with pytest.raises(rates.ProviderError) as caught:
        rates.parse_frankfurter(data)
    assert problem in str(caught.value)


def test_sdmx_csv_latest_observation_wins_and_missing_ones_are_skipped():
    rows = csv_rows(SDMX_HEADER
                    + 'EXR.D.USD.EUR.SP00.A,D,USD,EUR,SP00,A,2024-01-04,1.0953,A,"x, y"\r\n'
                    + 'EXR.D.USD.EUR.SP00.A,D,USD,EUR,SP00,A,2024-01-05,1.0921,A,"x, y"\r\n'
                    + 'EXR.D.GBP.EUR.SP00.A,D,GBP,EUR,SP00,A,2024-01-05,0.86038,A,z\r\n'
                    + 'EXR.D.HRK.EUR.SP00.A,D,HRK,EUR,SP00,A,2022-12-30,NaN,A,z\r\n'
                    + 'EXR.D.RUB.EUR.SP00.A,D,RUB,EUR,SP00,A,2022-03-01,,A,z\r\n')
    assert rates.parse_sdmx_csv(rows) == {"USD": {"rate": 1.0921, "as_of": "2024-01-05"},
                                          "GBP": {"rate": 0.86038, "as_of": "2024-01-05"}}


@pytest.mark.parametrize("text, problem", [
    ("KEY,FREQ\r\nA,D\r\n", "missing column(s) CURRENCY, CURRENCY_DENOM, TIME_PERIOD, OBS_VALUE"),
    (SDMX_HEADER, "no data rows"),
    (SDMX_HEADER + "k,D,USD,USD,SP00,A,2024-01-05,1.0,A,t\r\n", "line 2: CURRENCY_DENOM is 'USD'"),
    (SDMX_HEADER + "k,D,USD,EUR,SP00,A,2024-01,1.0,A,t\r\n", "line 2 TIME_PERIOD: '2024-01' is not a date"),
    (SDMX_HEADER + "k,D,USD,EUR,SP00,A,2024-01-05,abc,A,t\r\n", "line 2: rate 'abc' is not a number"),
    (SDMX_HEADER + "k,D,US,EUR,SP00,A,2024-01-05,1.0,A,t\r\n", "line 2: 'US' is not a currency code"),
    (SDMX_HEADER + "k,D,USD,EUR,SP00,A,2024-01-05,NaN,A,t\r\n", "no observations"),
])
def test_sdmx_csv_malformed(text, problem):
    with pytest.raises(rates.ProviderError) as caught:
        rates.parse_sdmx_csv(csv_rows(text))
    assert problem in str(caught.value)


def test_sdmx_csv_ragged_rows_fail_in_the_csv_reader():
    with pytest.raises(ValueError, match="line 2 has 3 fields, the header has 10"):
        csv_rows(SDMX_HEADER + "a,b,c\r\n")


def test_parsers_read_the_fixture_providers_real_formats():
    fixtures = RateFixtures(clock=lambda: 1704412800)          # 2024-01-05
    ecb = rates.parse_ecb_daily(xml(fixtures.ecb_daily_xml()))
    frank = rates.parse_frankfurter(json.loads(fixtures.frankfurter_json({"from": "EUR"})))
    sdmx = rates.parse_sdmx_csv(csv_rows(fixtures.sdmx_csv("D..EUR.SP00.A").decode()))
    for parsed in (ecb, frank, sdmx):
        assert set(parsed) == set(BASE_RATES)
        assert parsed["USD"]["as_of"] == "2024-01-05"
        assert parsed["USD"]["rate"] == pytest.approx(1.0921, rel=0.002)


def test_fixture_rates_move_on_each_fetch():
    fixtures = RateFixtures()
    first = rates.parse_ecb_daily(xml(fixtures.ecb_daily_xml()))
    second = rates.parse_ecb_daily(xml(fixtures.ecb_daily_xml()))
    assert first != second


# -- merge -----------------------------------------------------------------------------------


def snap(ok, **entries):
    return {"ok": ok, "rates": {c: {"rate": r, "as_of": d} for c, (r, d) in entries.items()}}


def test_merge_prefers_fresh_then_newest_then_provider_order():
    merged = rates.merge({
        "ecb": snap(False, USD=(1.1, "2024-01-05"), NOK=(11.3, "2024-01-05")),       # failed: kept values
        "ecb-sdmx": snap(True, USD=(1.2, "2024-01-04"), GBP=(0.86, "2024-01-05")),
        "frankfurter": snap(True, USD=(1.3, "2024-01-05"), GBP=(0.87, "2024-01-05")),
    })
    assert list(merged) == ["GBP", "NOK", "USD"]
    assert merged["USD"] == {"currency": "USD", "rate": 1.3, "provider": "frankfurter",
                             "as_of": "2024-01-05", "is_stale": False}
    assert merged["GBP"]["provider"] == "ecb-sdmx"                 # same date: provider order
    assert merged["NOK"] == {"currency": "NOK", "rate": 11.3, "provider": "ecb",
                             "as_of": "2024-01-05", "is_stale": True}


def test_merge_of_nothing():
    assert rates.merge({}) == {}


def test_changes():
    old = {"USD": {"rate": 1.1}, "GBP": {"rate": 0.86}}
    new = {"USD": {"rate": 1.1}, "GBP": {"rate": 0.87}, "JPY": {"rate": 158.0}}
    assert rates.changes(old, new) == [(new["GBP"], 0.86), (new["JPY"], None)]


def test_requested_currencies():
    assert rates.requested_currencies(["usd, GBP", "JPY", "USD"]) == ["USD", "GBP", "JPY"]
    assert rates.requested_currencies(None) == []
    with pytest.raises(ValidationError) as caught:
        rates.requested_currencies(["USD,EURO,1"])
    assert caught.value.errors == [{"field": "currency", "problem": "not a currency code: EURO, 1"}]


def test_requested_currencies_is_bounded_and_linear():
    """A megabyte of distinct codes is refused at once (the repeat check was quadratic:
    about 20 s on the reactor thread for 1 MiB)."""
    codes = ",".join(f"{a}{b}{c}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    with pytest.raises(ValidationError) as caught:
        rates.requested_currencies([codes] * 14)
    assert caught.value.errors == [{"field": "currency", "problem": "at most 300 currencies at a time"}]
    assert len(rates.requested_currencies([codes[:4 * 300 - 1]])) == 300


# -- the services with fakes -------------------------------------------------------------------


class FakeCache:
    """The cache contract (Deferred-returning get/set) over a dict of JSON copies."""

    def __init__(self):
        self.data, self.ttls = {}, {}

    def get(self, key):
        value = self.data.get(key)
        return defer.succeed(None if value is None else json.loads(value))

    def get_many(self, keys):
        return defer.succeed({k: json.loads(self.data[k]) for k in keys if k in self.data})

    def set(self, key, value, ttl=None):
        self.data[key], self.ttls[key] = json.dumps(value), ttl
        return defer.succeed(None)


class FakeResult:
    def __init__(self, data):
        self.data = data


class FakeConnection:
    """Answers with a fixture payload parsed as the real connection would, or fails."""

    def __init__(self, name, make, fmt):
        self.name, self.make, self.fmt, self.down, self.calls = name, make, fmt, False, 0

    def request(self):
        self.calls += 1
        if self.down:
            return defer.fail(ConnectionFailed(self.name, "connection refused"))
        return defer.succeed(FakeResult(parse_body(self.fmt, self.make())))


class FakePubSub:
    def __init__(self):
        self.published = []

    def publish(self, topic, data, publisher=None):
        self.published.append((topic, data, publisher))
        return defer.succeed(f"msg-{len(self.published)}")


def node(pubsub=True, providers=("ECB", "ECB-SDMX", "Frankfurter")):
    fixtures = RateFixtures(clock=lambda: 1704412800)
    resources = Resources()
    resources.cache = FakeCache()
    if pubsub:
        resources.pubsub = FakePubSub()
    makers = {"ECB": (fixtures.ecb_daily_xml, "xml"),
              "ECB-SDMX": (lambda: fixtures.sdmx_csv("D..EUR.SP00.A"), "csv"),
              "Frankfurter": (lambda: fixtures.frankfurter_json({"from": "EUR"}), "json")}
    for name in providers:
        resources.out.http.add(name, FakeConnection(name, *makers[name]))
    return resources


def test_refresh_stores_one_entry_per_currency_and_publishes_changes():
    resources = node()
    response = call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert response.payload["currency_count"] == len(BASE_RATES)
    assert response.payload["providers_ok"] == ["ecb", "ecb-sdmx", "frankfurter"]
    assert response.payload["providers_failed"] == []
    stored = json.loads(resources.cache.data["rates:EUR"])
    assert stored["base"] == "EUR" and stored["currencies"] == sorted(BASE_RATES)
    assert json.loads(resources.cache.data["rates:EUR:USD"])["provider"] == "ecb"
    assert set(resources.cache.ttls.values()) == {rates.CACHE_TTL}
    topics = [topic for topic, _, _ in resources.pubsub.published]
    assert "rates.EUR.USD" in topics and len(topics) == len(BASE_RATES)
    _, message, publisher = resources.pubsub.published[topics.index("rates.EUR.USD")]
    assert message["previous"] is None and publisher == "rates.refresh"
    # The fixtures move: the next refresh publishes only what changed, with the previous rate.
    resources.pubsub.published.clear()
    again = call_service_sync(rates.RefreshRates, {}, resources=resources)
    republished = sorted(topic.split(".")[-1] for topic, _, _ in resources.pubsub.published)
    assert sorted(again.payload["changed"]) == republished and republished
    assert all(m["previous"] is not None for _, m, _ in resources.pubsub.published)


def test_refresh_tolerates_a_provider_down_and_keeps_its_last_rates_as_stale():
    resources = node()
    call_service_sync(rates.RefreshRates, {}, resources=resources)
    resources.out.http["ECB"].down = True
    response = call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert response.payload["providers_failed"] == ["ecb"]
    assert response.payload["currency_count"] == len(BASE_RATES)
    providers = json.loads(resources.cache.data["rates:EUR:state"])["providers"]
    assert providers["ecb"]["error"] == "connection refused"
    assert providers["ecb"]["rates"]["USD"]["as_of"] == "2024-01-05"        # kept from last time
    usd = json.loads(resources.cache.data["rates:EUR:USD"])
    assert usd["provider"] == "ecb-sdmx"                          # a fresh one beats a kept one
    assert not usd["is_stale"]


def test_refresh_with_a_malformed_provider_payload_serves_the_others():
    resources = node()
    resources.out.http["Frankfurter"].make = lambda: b'{"base": "USD", "date": "2024-01-05", "rates": {}}'
    response = call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert response.payload["providers_failed"] == ["frankfurter"]
    state = json.loads(resources.cache.data["rates:EUR:state"])
    assert state["providers"]["frankfurter"]["error"] == \
        "malformed payload: base is 'USD', expected 'EUR'"
    assert len(state["rates"]) == len(BASE_RATES)


def test_refresh_without_pubsub_carries_on():
    resources = node(pubsub=False)
    response = call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert response.payload["currency_count"] == len(BASE_RATES)
    assert len(response.payload["changed"]) == len(BASE_RATES)


def test_refresh_skips_providers_that_are_not_configured():
    response = call_service_sync(rates.RefreshRates, {}, resources=node(providers=("Frankfurter",)))
    assert response.payload["providers_ok"] == ["frankfurter"]


def test_get_fetches_on_a_miss_then_serves_from_the_cache():
    resources = node()
    response = call_service_sync(rates.GetRates, {"currency": "usd,GBP"}, resources=resources)
    assert [r["currency"] for r in response.payload] == ["USD", "GBP"]
    assert set(response.payload[0]) == {"currency", "rate", "provider", "as_of", "is_stale"}
    assert response.payload[0]["is_stale"] is False
    calls = resources.out.http["ECB"].calls
    call_service_sync(rates.GetRates, {"currency": ["JPY"]}, resources=resources)
    assert resources.out.http["ECB"].calls == calls                   # served from the cache


def test_get_refreshes_when_an_entry_is_gone_from_the_cache():
    resources = node()
    call_service_sync(rates.RefreshRates, {}, resources=resources)
    del resources.cache.data["rates:EUR:GBP"]                         # evicted, say
    calls = resources.out.http["ECB"].calls
    response = call_service_sync(rates.GetRates, {"currency": "USD,GBP"}, resources=resources)
    assert [r["currency"] for r in response.payload] == ["USD", "GBP"]
    assert resources.out.http["ECB"].calls == calls + 1


def test_without_a_cache_changes_and_kept_rates_come_from_the_node_itself():
    resources = node()
    resources.cache = None
    first = call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert len(first.payload["changed"]) == len(BASE_RATES)
    resources.out.http["ECB"].down = True
    resources.out.http["ECB-SDMX"].down = True
    resources.out.http["Frankfurter"].down = True
    response = call_service_sync(rates.GetRates, {"currency": "USD"}, resources=resources)
    assert response.payload[0]["provider"] == "ecb" and response.payload[0]["is_stale"] is True
    again = call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert again.payload["changed"] == []                     # nothing new: nothing republished


def test_get_without_a_cache_fetches_every_time():
    resources = node()
    resources.cache = None
    for _ in range(2):
        response = call_service_sync(rates.GetRates, {"currency": "USD"}, resources=resources)
        assert response.payload[0]["currency"] == "USD"
    assert resources.out.http["ECB"].calls == 2


def test_get_takes_currencies_or_currency():
    resources = node()
    response = call_service_sync(rates.GetRates, {"currencies": "USD,GBP", "currency": ["JPY"]},
                                 resources=resources)
    assert [r["currency"] for r in response.payload] == ["USD", "GBP", "JPY"]


def test_get_without_currency_answers_all():
    resources = node()
    for _ in range(2):                                                  # a miss, then the cache
        response = call_service_sync(rates.GetRates, {}, resources=resources)
        assert [r["currency"] for r in response.payload] == sorted(BASE_RATES)
    assert resources.out.http["ECB"].calls == 1


def test_get_refreshes_a_snapshot_older_than_max_age(monkeypatch):
    resources = node()
    call_service_sync(rates.RefreshRates, {}, resources=resources)
    calls = resources.out.http["ECB"].calls
    monkeypatch.setattr(rates, "clock", lambda: 10 ** 10)
    response = call_service_sync(rates.GetRates, {"currency": "USD", "max_age": 60}, resources=resources)
    assert resources.out.http["ECB"].calls == calls + 1
    assert response.payload[0]["is_stale"] is False


def test_get_says_which_rates_are_stale_when_their_provider_is_down(monkeypatch):
    resources = node(providers=("ECB", "Frankfurter"))
    resources.out.http["Frankfurter"].make = lambda: json.dumps(
        {"base": "EUR", "date": "2024-01-05", "rates": {"USD": 1.09}}).encode()
    call_service_sync(rates.RefreshRates, {}, resources=resources)
    resources.out.http["ECB"].down = True
    monkeypatch.setattr(rates, "clock", lambda: 10 ** 10)         # too old: refreshed on the call
    response = call_service_sync(rates.GetRates, {"currency": "USD,GBP"}, resources=resources)
    assert [(r["currency"], r["provider"], r["is_stale"]) for r in response.payload] == [
        ("USD", "frankfurter", False), ("GBP", "ecb", True)]


def test_get_unknown_currency_is_404_naming_it():
    with pytest.raises(NotFound) as caught:
        call_service_sync(rates.GetRates, {"currency": "USD,XAU"}, resources=node())
    assert caught.value.errors == [{"field": "currency", "problem": "no rate for XAU"}]


def test_get_bad_currency_code_is_400():
    with pytest.raises(ValidationError):
        call_service_sync(rates.GetRates, {"currency": "dollars"}, resources=node())


def test_get_when_every_provider_is_down_and_nothing_is_cached():
    resources = node()
    for name in ("ECB", "ECB-SDMX", "Frankfurter"):
        resources.out.http[name].down = True
    with pytest.raises(ServiceUnavailable):
        call_service_sync(rates.GetRates, {"currency": "USD"}, resources=resources)


class PendingConnection:
    """Answers only when the test says so."""

    def __init__(self, make, fmt):
        self.make, self.fmt, self.pending = make, fmt, []

    def request(self):
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def answer(self):
        for d in self.pending:
            d.callback(FakeResult(parse_body(self.fmt, self.make())))


def test_concurrent_misses_share_one_refresh():
    resources = node(providers=())
    fixtures = RateFixtures()
    slow = PendingConnection(fixtures.ecb_daily_xml, "xml")
    resources.out.http.add("ECB", slow)
    from broker.testing import call_service
    first = call_service(rates.GetRates, {"currency": "USD"}, resources=resources)
    second = call_service(rates.GetRates, {"currency": "GBP"}, resources=resources)
    assert len(slow.pending) == 1                                    # one fetch for both callers
    slow.answer()
    assert [r["currency"] for r in first.result.payload] == ["USD"]
    assert [r["currency"] for r in second.result.payload] == ["GBP"]


def test_failed_publications_are_logged_not_raised():
    from twisted.logger import formatEvent, globalLogPublisher
    resources = node()
    resources.pubsub.publish = lambda topic, data, publisher=None: defer.fail(RuntimeError("hub full"))
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        response = call_service_sync(rates.RefreshRates, {}, resources=resources)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len(response.payload["changed"]) == len(BASE_RATES)
    logged = [formatEvent(e) for e in events]
    assert "rates: 30 of 30 publications failed, first: hub full" in logged


class FakeAMQP:
    def __init__(self):
        self.sent = []

    def publish(self, data, routing_key=None):
        self.sent.append((routing_key, data))
        return defer.succeed(None)


def test_changes_go_to_the_amqp_outgoing_named_rates_when_there_is_one():
    resources = node()
    amqp = FakeAMQP()
    resources.out.amqp.add("rates", amqp)
    call_service_sync(rates.RefreshRates, {}, resources=resources)
    assert len(amqp.sent) == len(BASE_RATES)
    routing_key, message = amqp.sent[0]
    assert routing_key == f"rates.EUR.{message['currency']}" and message["base"] == "EUR"
