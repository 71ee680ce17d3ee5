"""The Django and Flask samples against a live broker (the sample config)."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess

DJANGO_SAMPLE = ROOT / "examples" / "django_rates"
FLASK_SAMPLE = ROOT / "examples" / "flask_customer" / "app.py"


def django_sample_tests(broker):
    """``python manage.py test`` in examples/django_rates against ``broker``, as its README says:
    the exit status and the verbose output."""
    pytest.importorskip("django")
    env = {**os.environ, "BROKER_ADDRESS": f"http://127.0.0.1:{broker.port}",
           "BROKER_ADMIN_PASSWORD": broker.admin_password, "PYTHONPATH": str(ROOT / "client")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run([sys.executable, "manage.py", "test", "-v", "2"], cwd=DJANGO_SAMPLE,
                            env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_django_sample_tests_pass_against_the_broker(broker):
    status, output = django_sample_tests(broker)
    assert status == 0, output
    assert "test_customer_lookup_through_each_client" in output and "ok" in output
    assert "Ran 9 tests" in output and "skipped" not in output


def test_django_sample_against_the_rates_example():
    """etc/examples/rates.yaml serves the Django rates page through /broker/invoke (the customer
    page's services are not in it: that test says so and is skipped)."""
    process = BrokerProcess(config=ROOT / "etc" / "examples" / "rates.yaml",
                            env={"BROKER_REDIS_URL": ""}).start()
    try:
        status, output = django_sample_tests(process)
    finally:
        process.stop()
    assert status == 0, output
    for test in ("test_rates_table_from_the_rates_service", "test_every_offered_currency_has_a_rate",
                 "test_a_currency_without_a_rate_is_not_a_missing_service"):
        assert re.search(rf"{test} \([^)]*\)(\n[^\n]*)? \.\.\. ok", output), output
    assert re.search(r"test_customer_lookup_through_each_client \([^)]*\) \.\.\. skipped "
                     r"'customer.get2 is not deployed", output), output
    assert "Ran 9 tests" in output and "skipped=1" in output


@pytest.fixture
def flask_sample(broker, monkeypatch):
    pytest.importorskip("flask")
    monkeypatch.syspath_prepend(str(ROOT / "client"))
    monkeypatch.setenv("BROKER_ADDRESS", f"http://127.0.0.1:{broker.port}")
    monkeypatch.setenv("BROKER_ADMIN_PASSWORD", broker.admin_password)
    spec = importlib.util.spec_from_file_location("flask_customer_sample", FLASK_SAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flask_sample_calls_the_broker(flask_sample):
    response = flask_sample.app.test_client().get("/customer/123")
    assert response.status_code == 200
    assert response.json["name"] == "Cust-123" and response.json["cid"]


def test_flask_extension_with_an_app_factory_and_bad_config(flask_sample, broker):
    other = flask_sample.create_app({"BROKER": {"address": f"http://127.0.0.1:{broker.port}",
                                                "auth": ("admin", "wrong")}})
    response = other.test_client().get("/customer/1")
    assert response.status_code == 502 and "401" in response.json["error"]
    # the first app keeps its own client
    assert flask_sample.app.test_client().get("/customer/1").status_code == 200
    with pytest.raises(RuntimeError, match="address"):
        flask_sample.create_app({"BROKER": {"auth": ("a", "b")}})


def test_the_wsgi_example_config_hosts_both_samples(tmp_path):
    """etc/examples/wsgi.yaml: Django and Flask samples inside the broker, calling it back."""
    pytest.importorskip("django")
    pytest.importorskip("flask")
    from base64 import b64encode

    import socket

    with socket.socket() as sock:  # the hosted apps must know the broker's address up front
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = BrokerProcess(config=ROOT / "etc" / "examples" / "wsgi.yaml", env={
        "BROKER_LISTEN": f"tcp:{port}:interface=127.0.0.1",
        "BROKER_ADDRESS": f"http://127.0.0.1:{port}"})
    process.start()
    try:
        auth = {"Authorization": "Basic " + b64encode(f"admin:{process.admin_password}".encode()).decode()}
        status, _, body = process.request("GET", "/django/customer/?cust_id=123&client=Client", headers=auth)
        assert status == 200 and b'<dd id="name">Cust-123</dd>' in body
        status, _, body = process.request("GET", "/flask/customer/456", headers=auth)
        assert status == 200 and b"Cust-456" in body
        assert process.request("GET", "/flask/customer/456")[0] == 401
    finally:
        process.stop()
