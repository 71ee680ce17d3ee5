"""Django: a middleware that puts a broker client on ``request.broker``, and one that trusts
the broker's tokens (``request.broker_user``).

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

__all__ = ["BrokerMiddleware", "BrokerTokenMiddleware", "get_client", "token_verifier"]

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


_verifier = None


def token_verifier():
    """The process's :class:`~broker.client.tokens.TokenVerifier`, from
    ``settings.BROKER_TOKENS`` (``secret`` or ``public_key``, ``issuer``, ``audience``,
    ``algorithms``, ``leeway``)."""
    global _verifier
    if _verifier is None:
        from .tokens import TokenVerifier
        config = getattr(settings, "BROKER_TOKENS", None)
        try:
            _verifier = TokenVerifier(**dict(config or {}))
        except (TypeError, ValueError) as error:
            raise ImproperlyConfigured(f"settings.BROKER_TOKENS: {error}") from None
    return _verifier


class BrokerTokenMiddleware:
    """Trust the broker's tokens: ``Authorization: Bearer <token>`` from the broker's
    ``POST /broker/auth/token`` makes ``request.broker_user`` a
    :class:`~broker.client.tokens.TokenUser` (its name, ``roles``, ``claims``); no token:
    None; a bad token: a 401 JSON answer (the reason goes to the ``broker.client`` log)::

        MIDDLEWARE = [..., "broker.client.django.BrokerTokenMiddleware"]
        BROKER_TOKENS = {"secret": os.environ["BROKER_TOKEN_SECRET"], "issuer": "broker"}
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        self.verifier = token_verifier()

    def __call__(self, request):
        from .tokens import InvalidToken, bearer_token
        token = bearer_token(request.headers.get("Authorization"))
        request.broker_user = None
        if token is not None:
            try:
                request.broker_user = self.verifier.verify(token)
            except InvalidToken as error:
                import logging

                from django.http import JsonResponse
                logging.getLogger("broker.client").info("broker token refused: %s", error)
                response = JsonResponse({"code": "unauthorized", "details": "invalid token"},
                                        status=401)
                response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response
        return self.get_response(request)
