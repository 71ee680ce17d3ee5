"""The broker's Python client: call services in plain dicts, from any Python program.

It imports no Twisted, so Django, Flask and scripts can use it; install it on
its own with ``pip install ./client`` (package ``broker_client``, same code)
or as part of the broker (``broker.client``)::

    from broker.client import Client
    client = Client("http://127.0.0.1:17010", auth=("admin", password))
    client.invoke("customer.get2", {"cust_id": "123"}).data   # {"cust_id": "123", "name": ...}

Zato's ``AnyServiceInvoker`` and ``JSONClient`` keep their names and call
shapes (see :mod:`.zato`).  Django: :mod:`.django`; Flask: :mod:`.flask`.
"""

from .core import Client
from .errors import (BadRequest, BrokerClientError, BrokerHTTPError, ConnectionFailed, Forbidden,
                     GatewayTimeout, MethodNotAllowed, NotFound, ResponseTooLarge, ServiceError,
                     ServiceNotFound, Timeout, TooManyRequests, Unauthorized, Unavailable)
from .response import Response
from .zato import AnyServiceInvoker, JSONClient

__version__ = "0.1.0"

__all__ = [
    "AnyServiceInvoker", "BadRequest", "BrokerClientError", "BrokerHTTPError", "Client",
    "ConnectionFailed", "Forbidden", "GatewayTimeout", "JSONClient", "MethodNotAllowed",
    "NotFound", "Response", "ResponseTooLarge", "ServiceError", "ServiceNotFound", "Timeout",
    "TooManyRequests", "Unauthorized", "Unavailable", "client_from_settings",
]


def client_from_settings(config):
    """A :class:`Client` from a dict (Django's ``settings.BROKER``, Flask's ``BROKER``).

    Keys: ``address`` (required), ``auth`` (``(user, password)``), and any
    :class:`Client` keyword (``timeout``, ``retries``, ``pool_size``...).
    """
    if not isinstance(config, dict) or not config.get("address"):
        raise ValueError("BROKER: expected a dict with at least an 'address' "
                         "(e.g. {'address': 'http://127.0.0.1:17010', 'auth': ('admin', '...')})")
    options = dict(config)
    address = options.pop("address")
    auth = options.pop("auth", None)
    if auth is not None:
        auth = tuple(auth)
    return Client(address, auth, **options)
