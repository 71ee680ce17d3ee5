"""Typed errors the client raises; each carries what the broker answered.

Errors from the broker (an HTTP answer that is not 2xx) are
:class:`BrokerHTTPError` subclasses chosen by status, made more precise by
the error body's ``code`` (a 404 ``service_not_found`` is a
:class:`ServiceNotFound`); trouble reaching the broker is
:class:`ConnectionFailed` or :class:`Timeout`.
"""

__all__ = [
    "BadRequest", "BrokerClientError", "BrokerHTTPError", "ConnectionFailed", "Forbidden",
    "MethodNotAllowed", "NotFound", "ResponseTooLarge", "ServiceError", "ServiceNotFound", "Timeout",
    "TooManyRequests", "Unauthorized", "Unavailable", "error_for",
]


class BrokerClientError(Exception):
    """Base of every error the client raises."""


class ConnectionFailed(BrokerClientError, ConnectionError):
    """The broker could not be reached, after the configured connection retries."""


class Timeout(BrokerClientError, TimeoutError):
    """The broker did not answer in time (not retried: the call may have run)."""


class ResponseTooLarge(BrokerClientError):
    """The answer is larger than the client's ``max_response_size``."""


class BrokerHTTPError(BrokerClientError):
    """The broker answered with an error status.

    :ivar response: the :class:`~broker.client.response.Response`.
    :ivar status: the HTTP status.
    :ivar code: the broker's neutral error code (``invalid_input``...), if given.
    :ivar details: the broker's message.
    :ivar errors: per-field problems, ``[{"field": ..., "problem": ...}]``.
    :ivar cid: the correlation id, to find the call in the broker's log.
    """

    def __init__(self, response):
        self.response = response
        self.status = response.status
        self.cid = response.cid
        body = response.data if isinstance(response.data, dict) else {}
        self.code = body.get("code")
        self.details = response.details
        self.errors = body.get("errors") or []
        super().__init__(f"{self.status} {self.code or 'error'}: {self.details} (cid {self.cid})")


class BadRequest(BrokerHTTPError):
    """400: the input was refused; ``errors`` names each bad field."""


class Unauthorized(BrokerHTTPError):
    """401: missing or wrong credentials."""


class Forbidden(BrokerHTTPError):
    """403."""


class NotFound(BrokerHTTPError):
    """404: something asked for does not exist (a route, a topic, or what the service looked for)."""


class ServiceNotFound(NotFound):
    """404 ``service_not_found``: the broker has no service of the name invoked."""


class MethodNotAllowed(BrokerHTTPError):
    """405."""


class TooManyRequests(BrokerHTTPError):
    """429: rate-limited (``response.headers["retry-after"]`` says when to retry)."""


class ServiceError(BrokerHTTPError):
    """500: the service failed (the broker's log has the details under ``cid``)."""


class Unavailable(BrokerHTTPError):
    """503: the broker is overloaded or a dependency is down."""


class GatewayTimeout(BrokerHTTPError):
    """504: the service took longer than the broker's service timeout."""


__all__.append("GatewayTimeout")

_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
              405: MethodNotAllowed, 413: BadRequest, 415: BadRequest, 422: BadRequest,
              429: TooManyRequests, 500: ServiceError, 503: Unavailable, 504: GatewayTimeout}


_BY_CODE = {"service_not_found": ServiceNotFound}


def error_for(response):
    """The exception for an error ``response``: by the body's ``code`` when it names one more
    precisely, else by status (4xx/5xx fall back to the base)."""
    body = response.data if isinstance(response.data, dict) else {}
    cls = _BY_CODE.get(body.get("code")) or _BY_STATUS.get(response.status, BrokerHTTPError)
    return cls(response)
