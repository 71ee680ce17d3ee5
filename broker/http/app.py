"""The HTTP channel: turns parsed HTTP requests into invocations and back.

This is the handler the :mod:`broker.http.protocol` calls.  It
routes, builds the neutral :class:`~broker.services.context.Request`, calls
the invoker and maps the neutral answer or error to HTTP exactly once.
"""

import json

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from broker.http.protocol import HTTPResponse
from broker.errors import BrokerError, error_body
from broker.ids import new_cid
from broker.services.context import Request
from broker.simpleio import PLAIN_MEDIA_TYPES, check_content_type, parse_query, soap_fault

__all__ = ["HTTPApp", "json_response"]

log = Logger()
access = Logger(namespace="broker.access")

_JSON = "application/json"


def json_response(status, payload, cid, extra_headers=()):
    """A JSON answer with the correlation id header."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return HTTPResponse(status, [("Content-Type", _JSON), ("X-Broker-CID", cid), *extra_headers], body)


class HTTPApp:
    """Answers HTTP requests from the routing table.

    :param router: the :class:`~broker.http.router.Router`.
    :param invoker: the :class:`~broker.services.invoker.Invoker`.
    :param access_log: log one line per request when true.
    """

    def __init__(self, router, invoker, access_log=False):
        self.router = router
        self.invoker = invoker
        self.access_log = self._log_access if access_log else None
        self.upgrade_handlers = {}

    # -- the protocol's handler interface -----------------------------------

    def handle(self, http_request):
        """Answer one request: an HTTPResponse, or a Deferred of one."""
        cid = new_cid()
        try:
            route, params = self.router.match(http_request.method, http_request.path)
        except BrokerError as error:
            return self._error(error, cid, http_request)
        if route.kind == "builtin":
            try:
                return route.target(http_request, cid, params)
            except BrokerError as error:
                return self._error(error, cid, http_request)
        channel = route.channel
        body = http_request.body
        content_type = http_request.headers.get("content-type", "")
        try:
            if content_type and body and content_type not in PLAIN_MEDIA_TYPES[channel.data_format]:
                check_content_type(channel.data_format, content_type)
            request = Request.from_channel(
                body, http_request.headers, params,
                parse_query(http_request.query) if http_request.query else {},
                http_request.method, http_request.path, channel, cid, http_request.peer, content_type)
            result = self.invoker.invoke(route.target, request)
        except BrokerError as error:
            return self._error(error, cid, http_request, route)
        if isinstance(result, Deferred):
            return result.addCallbacks(self._answer, self._failed, (cid, route), None,
                                       (cid, http_request, route))
        return self._answer(result, cid, route)

    def error(self, status, message):
        """Render a protocol-level error (malformed request, 413, 408, ...)."""
        cid = new_cid()
        error = BrokerError(message)
        error.status, error.code = status, _PROTOCOL_CODES.get(status, "bad_request")
        return HTTPResponse(status, [("Content-Type", _JSON), ("X-Broker-CID", cid)], error_body(error, cid))

    def upgrade(self, http_request):
        """Hand a connection asking for ``Upgrade`` to a registered protocol, if any."""
        handler = self.upgrade_handlers.get(http_request.path)
        return handler(http_request) if handler is not None else None

    # -- answers ------------------------------------------------------------

    def _answer(self, response, cid, route):
        headers = [("Content-Type", response.content_type or _JSON), ("X-Broker-CID", cid)]
        if route.cid_header:
            headers.append((route.cid_header, cid))
        if response.headers:
            headers.extend(response.headers.items())
        return HTTPResponse(response.status, headers, response.body)

    def _failed(self, failure, cid, http_request, route):
        if failure.check(BrokerError):
            return self._error(failure.value, cid, http_request, route)
        log.failure("unexpected failure answering {path} (cid {cid})", failure, path=route.path, cid=cid)
        return self._error(BrokerError(), cid, http_request, route)

    def _error(self, error, cid, http_request, route=None):
        if error.status < 500:      # the caller's mistake: one line to find it by its cid
            log.info("{method} {path}: {status} {code} (cid {cid})", method=http_request.method,
                     path=http_request.path, status=error.status, code=error.code, cid=cid)
        headers = [("X-Broker-CID", cid)]
        if route is not None and route.cid_header:
            headers.append((route.cid_header, cid))
        headers.extend(error.headers.items())
        fmt = route.channel.data_format if route is not None and route.channel is not None else "json"
        if fmt in ("soap11", "soap12"):
            version = fmt[-2:]
            body = soap_fault(version, "client" if error.status < 500 else "server", error.message, cid)
            content_type = "text/xml; charset=utf-8" if version == "11" else "application/soap+xml; charset=utf-8"
            headers.append(("Content-Type", content_type))
        else:
            body = error_body(error, cid)
            headers.append(("Content-Type", _JSON))
        return HTTPResponse(error.status, headers, body)

    def _log_access(self, http_request, response, duration):
        cid = next((value for name, value in response.headers if name == "X-Broker-CID"), None)
        access.info('{peer} "{method} {path}" {status} {size} {ms:.1f}ms (cid {cid})',
                    peer=http_request.peer, method=http_request.method, path=http_request.path,
                    status=response.status, size=len(response.body), ms=duration * 1000, cid=cid)


_PROTOCOL_CODES = {400: "bad_request", 408: "request_timeout", 413: "payload_too_large",
                   431: "headers_too_large", 501: "not_implemented", 503: "unavailable",
                   505: "http_version_not_supported"}
