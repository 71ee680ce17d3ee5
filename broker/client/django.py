"""Django: a middleware that puts a broker client on ``request.broker``.

settings.py::

    MIDDLEWARE = [..., "broker.client.django.BrokerMiddleware"]   # or broker_client.django
    BROKER = {"address": "http://127.0.0.1:17010", "auth": ("admin", os.environ["BROKER_PASSWORD"])}

a view::

    def rates(request):
        return render(request, "rates.html", {"rates": request.broker.invoke("rates.get", {...}).data})

One client per process, built on first use and shared by every request
thread (its connection pool is thread-safe).
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import client_from_settings

__all__ = ["BrokerMiddleware", "get_client"]

_lock = threading.Lock()
_client = None


def get_client():
    """The process's client, from ``settings.BROKER`` (built once)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                config = getattr(settings, "BROKER", None)
                try:
                    _client = client_from_settings(config)
                except (TypeError, ValueError) as error:
                    raise ImproperlyConfigured(f"settings.BROKER: {error}") from None
    return _client


def reset_client():
    """Forget the client (tests that change ``settings.BROKER``)."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
        _client = None


class BrokerMiddleware:
    """New-style middleware: ``request.broker`` is the configured :class:`~broker.client.Client`."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        get_client()  # a configuration mistake shows at startup, not on the first request

    def __call__(self, request):
        request.broker = get_client()
        return self.get_response(request)
