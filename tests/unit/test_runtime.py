"""Resources services reach: outgoing connections by name, health, publishing."""

import pytest

from broker.runtime import NoSuchConnection, Resources
from broker.services.base import Service
from broker.testing import call_service_sync


def test_unknown_outgoing_names_kind_and_known_names():
    resources = Resources()
    resources.out.kind("amqp").add("demo", object())
    with pytest.raises(NoSuchConnection) as info:
        resources.out.amqp["nope"]
    assert str(info.value) == 'no outgoing amqp connection "nope" (configured: demo)'


def test_outgoing_name_defined_twice_is_refused():
    resources = Resources()
    resources.out.kind("zmq").add("a", 1)
    with pytest.raises(ValueError, match='"a" is defined twice'):
        resources.out.kind("zmq").add("a", 2)


def test_health_report_is_degraded_when_any_check_fails_or_raises():
    resources = Resources()
    resources.health["a"] = lambda: {"ok": True}
    assert resources.health_report() == (True, {"a": {"ok": True}})
    resources.health["b"] = lambda: 1 / 0
    ok, reports = resources.health_report()
    assert not ok and reports["b"] == {"ok": False, "error": "division by zero"}


def test_publish_without_pubsub_fails_clearly():
    failures = []
    Resources().publish("t", {}).addErrback(failures.append)
    assert "pub/sub is not configured" in str(failures[0].value)


def test_service_reaches_fake_outgoing_through_resources():
    sent = []

    class Fake:
        def send(self, data):
            sent.append(data)

    class Sender(Service):
        def handle(self):
            self.out.zmq["peer"].send(self.request.input)
            self.response.payload = {"sent": len(sent)}

    resources = Resources()
    resources.out.kind("zmq").add("peer", Fake())
    response = call_service_sync(Sender, {"x": 1}, resources=resources)
    assert sent == [{"x": 1}] and response.payload == {"sent": 1}


def test_service_without_cache_configured_says_so():
    class Reader(Service):
        def handle(self):
            self.cache.get("k")

    with pytest.raises(Exception):
        call_service_sync(Reader, resources=Resources())


def test_membership_and_get_work_on_outgoing_kinds():
    resources = Resources()
    resources.out.kind("amqp").add("demo", 1)
    assert "demo" in resources.out.amqp and "nope" not in resources.out.amqp
    assert resources.out.amqp.get("nope") is None
