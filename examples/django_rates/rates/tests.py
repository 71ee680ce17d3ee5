"""The sample's tests, against a live broker at BROKER_ADDRESS (default http://127.0.0.1:17010).

Start one first (see README.md), with BROKER_ADMIN_PASSWORD set as for the broker.  Tests of a
page whose service the broker lacks are skipped, saying so: the customer page needs the sample
etc/broker.yaml, the rates page a config with rates.get (both the sample and the rates example).
"""

import re
import socket

from broker_client import BrokerClientError, Client, ServiceNotFound
from broker_client.django import BrokerMiddleware, reset_client
from django.conf import settings
from django.test import RequestFactory, SimpleTestCase, override_settings


def skip_unless_deployed(test, service):
    """Skip ``test`` when the broker has no ``service`` (its own errors are for the test to see)."""
    try:
        Client(settings.BROKER["address"], tuple(settings.BROKER["auth"])).invoke(service, {})
    except ServiceNotFound:
        test.skipTest(f"{service} is not deployed on the broker at {settings.BROKER['address']}")
    except BrokerClientError:
        pass            # any other trouble shows in the test itself


class BrokerPagesTest(SimpleTestCase):

    def setUp(self):
        reset_client()

    def tearDown(self):
        reset_client()

    def test_middleware_puts_the_configured_client_on_the_request(self):
        request = RequestFactory().get("/")
        seen = []
        BrokerMiddleware(lambda r: seen.append(r.broker) or "answer")(request)
        client, = seen
        self.assertIsInstance(client, Client)
        self.assertEqual(client.address, settings.BROKER["address"].rstrip("/"))

    def test_customer_lookup_through_each_client(self):
        skip_unless_deployed(self, "customer.get2")
        for kind in ("Client", "AnyServiceInvoker", "JSONClient"):
            with self.subTest(client=kind):
                response = self.client.get("/customer/", {"cust_id": "123", "client": kind})
                self.assertEqual(response.status_code, 200, response.content[:500])
                html = response.content.decode()
                self.assertIn('<dd id="name">Cust-123</dd>', html)
                self.assertRegex(html, r'<dd id="cid">[0-9a-f]{12,}</dd>')

    def test_rates_table_from_the_rates_service(self):
        skip_unless_deployed(self, settings.BROKER_RATES_SERVICE)
        response = self.client.get("/", {"currency": ["USD", "GBP"]})
        self.assertEqual(response.status_code, 200, response.content[:500])
        html = response.content.decode()
        self.assertIn('<table id="rates">', html)
        self.assertEqual(set(re.findall(r"<tr><td>([A-Z]{3})</td>", html)), {"USD", "GBP"})

    def test_every_offered_currency_has_a_rate(self):
        skip_unless_deployed(self, settings.BROKER_RATES_SERVICE)
        response = self.client.get("/", {"currency": settings.RATES_CURRENCIES})
        self.assertEqual(response.status_code, 200, response.content[:500])
        found = re.findall(r"<tr><td>([A-Z]{3})</td>", response.content.decode())
        self.assertEqual(sorted(found), sorted(settings.RATES_CURRENCIES))

    def test_a_currency_without_a_rate_is_not_a_missing_service(self):
        """The service's own 404 (no rate for a code) is said as such, not as a missing service."""
        skip_unless_deployed(self, settings.BROKER_RATES_SERVICE)
        with override_settings(RATES_CURRENCIES=["USD", "HRK"]):
            response = self.client.get("/", {"currency": ["USD", "HRK"]})
        html = response.content.decode()
        self.assertEqual(response.status_code, 200, html[:500])
        self.assertIn("No rate for HRK.", html)
        self.assertNotIn("has no", html)

    def test_a_missing_rates_service_is_explained(self):
        with override_settings(BROKER_RATES_SERVICE="rates.no-such-service"):
            response = self.client.get("/", {"currency": ["USD"]})
        self.assertEqual(response.status_code, 502)
        self.assertIn("The broker has no rates.no-such-service service", response.content.decode())

    def test_bad_form_input_makes_no_call(self):
        response = self.client.get("/", {"currency": ["US$"]})
        self.assertEqual(response.status_code, 200)
        self.assertIn("Select a valid choice", response.content.decode())
        self.assertNotIn('<table id="rates">', response.content.decode())

    def test_an_unreachable_broker_is_a_503_with_a_clear_message(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        broker = {**settings.BROKER, "address": f"http://127.0.0.1:{port}", "retries": 0}
        with override_settings(BROKER=broker):
            reset_client()
            response = self.client.get("/customer/", {"cust_id": "1", "client": "Client"})
        self.assertEqual(response.status_code, 503)
        self.assertIn("cannot connect", response.content.decode())

    def test_wrong_credentials_are_reported_not_crashed(self):
        broker = {**settings.BROKER, "auth": ("admin", "wrong-password")}
        with override_settings(BROKER=broker):
            reset_client()
            response = self.client.get("/customer/", {"cust_id": "1", "client": "Client"})
        self.assertEqual(response.status_code, 502)
        self.assertIn("401", response.content.decode())
