"""Typed errors of outgoing HTTP calls.

Every failure of ``self.out.http[name].get(...)`` is an :class:`OutgoingError`;
a service catches the base class to tolerate any of them, or one subclass.
A service that lets one escape answers its caller 502 (504 for a timeout)
with a message naming the connection and the problem — never the address,
the headers or a secret.
"""

from broker.errors import BrokerError

__all__ = ["BadStatus", "ConnectionFailed", "OutgoingError", "OutgoingTimeout",
           "ResponseTooLarge", "UnparseableResponse"]


class OutgoingError(BrokerError):
    """An outgoing call failed.

    :ivar connection: the outgoing connection's name.
    :ivar attempts: how many attempts were made.
    """

    code = "bad_gateway"
    status = 502
    default_message = "An upstream system failed"

    def __init__(self, connection, problem, attempts=1):
        self.connection = connection
        self.problem = problem
        self.attempts = attempts
        super().__init__(f'outgoing http "{connection}": {problem}')


class ConnectionFailed(OutgoingError):
    """No answer: connection refused, DNS failure, TLS failure, connection lost."""

    code = "upstream_unreachable"


class OutgoingTimeout(OutgoingError):
    """The whole call (connect, send, headers and body) took longer than its timeout."""

    code = "gateway_timeout"
    status = 504


class ResponseTooLarge(OutgoingError):
    """The answer's body is larger than the connection's ``max_response_size``."""

    code = "upstream_response_too_large"


class BadStatus(OutgoingError):
    """The answer's status is not 2xx.

    :ivar response: the :class:`~broker.http.outgoing.HTTPResult` (its
        ``data`` is None; ``body`` holds the raw bytes).
    """

    code = "upstream_bad_status"

    def __init__(self, connection, problem, response, attempts=1):
        super().__init__(connection, problem, attempts)
        self.response = response

    @property
    def status_code(self):
        return self.response.status


class UnparseableResponse(OutgoingError):
    """The body does not parse in the connection's data format.

    :ivar response: the :class:`~broker.http.outgoing.HTTPResult` (``data`` is None).
    """

    code = "upstream_unparseable"

    def __init__(self, connection, problem, response, attempts=1):
        super().__init__(connection, problem, attempts)
        self.response = response
