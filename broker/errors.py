"""Typed, transport-neutral errors.

Services, SimpleIO and the invoker raise these; each channel maps them to its
own answer exactly once (an HTTP status and JSON body, a SOAP fault, a WS
error frame, an AMQP dead-letter).  ``code`` is the neutral name of the
problem; ``status`` is the HTTP status most channels use for it.
"""

import json

__all__ = [
    "BrokerError", "BadRequest", "ValidationError", "Unauthorized", "Forbidden",
    "NotFound", "ServiceNotFound", "MethodNotAllowed", "PayloadTooLarge", "UnsupportedMediaType",
    "ResponseTooLarge", "ServiceError", "ServiceUnavailable", "Timeout", "TooManyRequests",
    "error_body",
]


class BrokerError(Exception):
    """Base of every error the broker answers to a caller.

    :ivar message: a short text safe to show the caller (never a traceback).
    :ivar errors: per-field problems, a list of ``{"field": ..., "problem": ...}``.
    """

    code = "internal_error"
    status = 500
    default_message = "Internal error"

    def __init__(self, message=None, errors=None, headers=None):
        self.message = message or self.default_message
        self.errors = list(errors or ())
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r}, errors={self.errors!r})"


class BadRequest(BrokerError):
    """The caller sent something we cannot parse or accept."""

    code = "bad_request"
    status = 400
    default_message = "Bad request"


class ValidationError(BadRequest):
    """Input does not match the service's SimpleIO declaration."""

    code = "invalid_input"
    default_message = "Invalid input"

    @classmethod
    def of(cls, errors):
        """Build one error naming every bad field."""
        fields = ", ".join(f"{e['field']}: {e['problem']}" for e in errors)
        return cls(f"Invalid input: {fields}", errors=errors)


class Unauthorized(BrokerError):
    code = "unauthorized"
    status = 401
    default_message = "You are not allowed to access this resource"


class Forbidden(BrokerError):
    code = "forbidden"
    status = 403
    default_message = "You are not allowed to access this resource"


class NotFound(BrokerError):
    code = "not_found"
    status = 404
    default_message = "Not found"


class ServiceNotFound(NotFound):
    """No service of that name is deployed (a service's own 404 is a plain :class:`NotFound`)."""

    code = "service_not_found"

    def __init__(self, service):
        self.service = service
        super().__init__(f"No such service: {service}")


class MethodNotAllowed(BrokerError):
    code = "method_not_allowed"
    status = 405
    default_message = "Method not allowed"

    def __init__(self, allowed, message=None):
        self.allowed = tuple(allowed)
        super().__init__(message, headers={"Allow": ", ".join(self.allowed)})


class PayloadTooLarge(BrokerError):
    code = "payload_too_large"
    status = 413
    default_message = "Request body too large"


class UnsupportedMediaType(BrokerError):
    code = "unsupported_media_type"
    status = 415
    default_message = "Unsupported media type"


class TooManyRequests(BrokerError):
    code = "too_many_requests"
    status = 429
    default_message = "Too many requests"


class ServiceError(BrokerError):
    """A service failed; details go to the log, never to the caller."""

    code = "service_error"
    status = 500
    default_message = "Internal error"


class ResponseTooLarge(ServiceError):
    """A service's answer is over ``limits.max_response_size``; it is not sent."""

    code = "response_too_large"
    default_message = "The answer is too large to send"


class ServiceUnavailable(BrokerError):
    code = "unavailable"
    status = 503
    default_message = "Service unavailable"


class Timeout(BrokerError):
    code = "timeout"
    status = 504
    default_message = "Service timed out"


def error_body(error, cid):
    """The JSON body of every error answer: Zato's shape plus a code and the field list."""
    body = {"result": "Error", "cid": cid, "code": error.code, "details": error.message}
    if error.errors:
        body["errors"] = error.errors
    return json.dumps(body, separators=(",", ":")).encode()
