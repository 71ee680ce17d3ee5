"""The seed's customer services: one answers a string, the other a dict.

From the Zato Django/Flask integration example: a customer's name is looked
up by id.  ``customer.get1`` produces its own JSON string (passed through as
is); ``customer.get2`` returns a dict (serialised by the broker).
"""

import json

from broker import Service

CUSTOMERS = {
    "123": "Cust-123",
    "456": "Cust-456",
}


def _lookup(request):
    data = request.input if isinstance(request.input, dict) else {}
    cust_id = str(data.get("cust_id", ""))
    return cust_id, CUSTOMERS.get(cust_id, f"Cust-{cust_id}" if cust_id else "")


class GetCustomer1(Service):
    """Look a customer up by ``cust_id``; the answer is a JSON string the service builds."""

    name = "customer.get1"

    def handle(self):
        cust_id, name = _lookup(self.request)
        self.response.payload = json.dumps({"cust_id": cust_id, "name": name})


class GetCustomer2(Service):
    """Look a customer up by ``cust_id``; the answer is a dict."""

    name = "customer.get2"

    def handle(self):
        cust_id, name = _lookup(self.request)
        self.response.payload = {"cust_id": cust_id, "name": name}
