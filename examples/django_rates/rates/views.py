"""Two pages, each a couple of lines of broker calls.

* ``/``: EUR exchange rates for the chosen currencies, from the ``rates.get`` service.
* ``/customer/``: the Zato sample's customer lookup (``customer.get2``), through
  ``Client``, Zato's ``AnyServiceInvoker`` or ``JSONClient`` (same data, three wire formats).
"""

import time

from broker_client import (AnyServiceInvoker, BrokerClientError, ConnectionFailed, JSONClient, NotFound,
                           ServiceNotFound)
from django.conf import settings
from django.template.response import TemplateResponse

from .forms import CustomerForm, RatesForm


def rates(request):
    form = RatesForm(request.GET or None)
    context = {"form": form, "rows": None, "error": None, "service": settings.BROKER_RATES_SERVICE}
    status = 200
    if form.is_valid():
        currencies = form.cleaned_data["currency"]
        try:
            response = request.broker.invoke(settings.BROKER_RATES_SERVICE,
                                             {"currencies": ",".join(currencies)})
            context.update(rows=_rows(response.data), cid=response.cid)
        except ServiceNotFound as error:
            context["error"] = (f"The broker has no {settings.BROKER_RATES_SERVICE} service: start it "
                                f"with the rates example config ({error.details}).")
            status = 502
        except NotFound as error:           # the service's own answer: no rate for a currency
            context["error"] = f"{error.details}."
        except ConnectionFailed:
            context["error"] = f"Cannot reach the broker at {request.broker.address}."
            status = 503
        except BrokerClientError as error:
            context["error"] = f"The broker answered: {error}"
            status = 502
    return TemplateResponse(request, "rates/home.html", context, status=status)


def _rows(data):
    """The service's repeated output as a list of dicts, however it is wrapped."""
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        data = lists[0] if len(lists) == 1 else [data]
    return [row for row in data or () if isinstance(row, dict)]


_zato_clients = {}


def _zato_client(kind):
    """Module-level Zato-style clients, as in Zato's own Django sample (built once)."""
    client = _zato_clients.get(kind)
    if client is None:
        broker = settings.BROKER
        if kind == "AnyServiceInvoker":
            client = AnyServiceInvoker(broker["address"], settings.BROKER_ZATO_INVOKE_PATH, broker["auth"])
        else:
            client = JSONClient(broker["address"], settings.BROKER_CUSTOMER_PATH)
        _zato_clients[kind] = client
    return client


def customer(request):
    form = CustomerForm(request.GET or None)
    context = {"form": form, "response": None, "error": None}
    status = 200
    if form.is_valid():
        cust_id, kind = form.cleaned_data["cust_id"], form.cleaned_data["client"]
        started = time.perf_counter()
        try:
            if kind == "Client":
                response = request.broker.invoke("customer.get2", {"cust_id": cust_id})
            elif kind == "AnyServiceInvoker":
                response = _zato_client(kind).invoke("customer.get2", {"cust_id": cust_id})
            else:
                response = _zato_client(kind).invoke({"cust_id": cust_id})
        except BrokerClientError as error:
            context["error"] = str(error)
            status = 503 if isinstance(error, ConnectionFailed) else 502
        else:
            context.update(response=response, client=kind,
                           elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
            if not response.ok:
                context["error"] = response.details
                status = 502
    return TemplateResponse(request, "rates/customer.html", context, status=status)
