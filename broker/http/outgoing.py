"""The ``http`` outgoing connection type: a named HTTP API a service calls (treq).

::

    outgoing:
      - name: ECB
        type: http
        address: https://www.ecb.europa.eu
        path: /stats/eurofxref/eurofxref-daily.xml
        data_format: xml

    result = await self.out.http["ECB"].get()
    result.status, result.headers, result.data      # data: the parsed body

``{name}`` segments of ``path`` are filled from ``params`` (URL-quoted);
the other params become the query string.  Every call has a deadline
covering connect, send, headers and body; idempotent methods are retried
with exponential backoff on connection failures, timeouts and the
``retry_on_status`` statuses, a bounded number of times; the body is capped
at ``max_response_size``.  Failures are the typed errors of
:mod:`broker.http.outgoing_errors`; each trip is counted in ``counters`` (shown at
``/broker/metrics`` as ``outgoing.http.<name>``).  Credentials live in the
``auth`` section and are sent as headers; they are never logged.
"""

import base64
import random
import re
from urllib.parse import quote, urlencode

from OpenSSL.crypto import Error as OpenSSLError
from treq.client import HTTPClient  # installs no reactor
from twisted.application.service import Service
from twisted.internet import defer, error as net_error, ssl, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (Agent, BrowserLikePolicyForHTTPS, BrowserLikeRedirectAgent,
                                HTTPConnectionPool, ResponseFailed, ResponseNeverReceived)
from twisted.web._newclient import RequestTransmissionFailed
from twisted.web.client import _HTTP11ClientFactory
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from broker.components import ComponentType
from broker.config.schema import (Bool, Choice, Duration, Field, Int, ListOf, MapOf, Name, Path,
                                  Schema, Size, Str, Tagged, config_error)
from broker.http.content import FORMATS, BodyTooLarge, encode_body, parse_body, read_body
from broker.services.tracing import outgoing_traceparent
from broker.http.outgoing_errors import (BadStatus, ConnectionFailed, OutgoingTimeout, ResponseTooLarge,
                                    UnparseableResponse)

__all__ = ["HTTP_OUTGOING", "OUTGOING", "HTTPConnection", "HTTPResult", "build_http_outgoing"]

log = Logger()

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: Methods safe to send twice (RFC 9110 9.2.2): only these are retried.
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))

_NAME = Field(Name(), required=True)
_HEADER = Str(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$", problem="expected an HTTP header name")
_TYPE = Field(Str(), required=True)

AUTH_TYPES = {
    "basic": Schema("basic auth", {"type": _TYPE, "username": Field(Str(min_length=1), required=True),
                                   "password": Field(Str(min_length=1), required=True)}),
    "apikey": Schema("API key auth", {"type": _TYPE, "header": Field(_HEADER, default="X-API-Key"),
                                      "key": Field(Str(min_length=1), required=True)}),
    "bearer": Schema("bearer auth", {"type": _TYPE, "token": Field(Str(min_length=1), required=True)}),
}

HTTP_OUTGOING = Schema("http outgoing", {
    "name": _NAME,
    "type": _TYPE,
    "address": Field(Str(pattern=r"^(self|https?://[^\s/?#@]+)(/[^\s?#]*)?$",
                         problem='expected an address such as https://api.example.com, '
                                 'http://host:8080/base or self/base (no credentials, query or '
                                 'fragment)'),
                     required=True, doc='scheme://host[:port][/base]; "self[/base]" = this broker'),
    "path": Field(Str(pattern=r"^/[^\s?#]*$", problem='expected a path starting with "/"'),
                  default="/", doc="appended to address; {name} segments are filled from params"),
    "method": Field(Choice(*METHODS), default="GET", doc="the method of request()"),
    "data_format": Field(Choice(*FORMATS), default="json"),
    "params": Field(MapOf(Str()), default={}, doc="default params; a call's own win"),
    "headers": Field(MapOf(Str()), default={}),
    "auth": Field(Tagged("type", AUTH_TYPES), default=None),
    "timeout": Field(Duration(min=0.001, max=3600), default="10s",
                     doc="per attempt: connect, send, headers and body"),
    "connect_timeout": Field(Duration(min=0.001, max=600), default="5s"),
    "retries": Field(Int(min=0, max=10), default=2, doc="extra attempts; idempotent methods only"),
    "retry_delay": Field(Duration(max=60), default="200ms", doc="doubles per retry"),
    "retry_max_delay": Field(Duration(max=600), default="5s"),
    "retry_on_status": Field(ListOf(Int(min=400, max=599)), default=[502, 503, 504]),
    "max_response_size": Field(Size(min=1), default="2MiB"),
    "max_redirects": Field(Int(min=0, max=20), default=0, doc="0: a redirect is a bad status"),
    "max_connections": Field(Int(min=1, max=1000), default=10, doc="persistent ones per host"),
    "tls_verify": Field(Bool(), default=True),
    "tls_ca_file": Field(Path(), default=None, doc="trust this CA (PEM) instead of the system's"),
})

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# RFC 3986 sub-delims and ":@" may stay in a path segment (ECB keys use "+"); "/" may not.
_SEGMENT_SAFE = "!$&'()*+,;=:@"


class _QuietFactory(_HTTP11ClientFactory):
    """No "Starting factory" log line per pooled connection."""

    noisy = False


class HTTPResult:
    """One answer: ``status``, ``headers`` (lower-case names), ``data`` (parsed), ``body`` (bytes)."""

    __slots__ = ("status", "headers", "data", "body", "attempts")

    def __init__(self, status, headers, body, data=None, attempts=1):
        self.status, self.headers, self.body, self.data, self.attempts = (
            status, headers, body, data, attempts)

    def __repr__(self):
        return f"<HTTPResult {self.status} {len(self.body)} bytes>"


def _auth_headers(auth):
    if auth is None:
        return {}
    if auth.type == "basic":
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if auth.type == "apikey":
        return {auth.header: auth.key}
    return {"Authorization": f"Bearer {auth.token}"}


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """``tls_verify: false``: encrypt, but trust any certificate (testing only)."""

    def creatorForNetloc(self, hostname, port):
        return ssl.CertificateOptions(verify=False)


def _tls_policy(section):
    if not section.tls_verify:
        return _NoVerification()
    if section.tls_ca_file:
        with open(section.tls_ca_file, "rb") as file:
            return BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(file.read()))
    return BrowserLikePolicyForHTTPS()


class HTTPConnection(Service):
    """One named outgoing HTTP connection (``self.out.http[name]``).

    :param section: the checked config section.
    :param self_address: a callable returning this broker's own
        ``http://host:port`` (for ``address: self``).
    """

    def __init__(self, section, reactor=None, self_address=None):
        if reactor is None:
            from twisted.internet import reactor
        self.name = section.name
        self.config = section
        self._reactor = reactor
        self._self_address = self_address
        self._path_params = frozenset(_PARAM.findall(section.path))
        self._headers = {**section.headers, **_auth_headers(section.auth)}
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool._factory = _QuietFactory
        self._pool.maxPersistentPerHost = section.max_connections
        agent = Agent(reactor, contextFactory=_tls_policy(section),
                      connectTimeout=section.connect_timeout, pool=self._pool)
        if section.max_redirects:
            auth = section.auth
            sensitive = [auth.header.encode()] if auth is not None and auth.type == "apikey" else []
            agent = BrowserLikeRedirectAgent(agent, redirectLimit=section.max_redirects,
                                             sensitiveHeaderNames=sensitive)
        self._client = HTTPClient(agent)
        # requests/timeouts/connection_errors/bad_status count attempts; ok/failures count calls.
        self.counters = {"requests": 0, "ok": 0, "failures": 0, "retries": 0, "timeouts": 0,
                         "connection_errors": 0, "too_large": 0, "bad_status": 0, "unparseable": 0}

    def __repr__(self):
        return f"<HTTPConnection {self.name!r} {self.config.address}>"

    def stopService(self):
        super().stopService()
        return self._pool.closeCachedConnections()

    # -- the API services use ---------------------------------------------------

    def request(self, method=None, data=None, params=None, headers=None, raise_for_status=True):
        """Call the connection; a Deferred firing with an :class:`HTTPResult`.

        :param method: the HTTP method; None = the configured one.
        :param data: the request body: bytes/str as is, else encoded in the
            connection's data format.
        :param params: fill ``{name}`` path segments; the rest go to the query.
        :param headers: extra request headers.
        :param raise_for_status: fail with :class:`BadStatus` on a non-2xx answer.
        """
        method = (method or self.config.method).upper()
        if method not in METHODS:
            return defer.fail(ValueError(f"unsupported HTTP method {method!r}"))
        return defer.Deferred.fromCoroutine(
            self._call(method, data, params, headers, raise_for_status))

    def get(self, params=None, headers=None, **kwargs):
        return self.request("GET", None, params, headers, **kwargs)

    def head(self, params=None, headers=None, **kwargs):
        return self.request("HEAD", None, params, headers, **kwargs)

    def delete(self, params=None, headers=None, **kwargs):
        return self.request("DELETE", None, params, headers, **kwargs)

    def post(self, data=None, params=None, headers=None, **kwargs):
        return self.request("POST", data, params, headers, **kwargs)

    def put(self, data=None, params=None, headers=None, **kwargs):
        return self.request("PUT", data, params, headers, **kwargs)

    def patch(self, data=None, params=None, headers=None, **kwargs):
        return self.request("PATCH", data, params, headers, **kwargs)

    # -- internals ---------------------------------------------------------------

    def url(self, params=None):
        """``(url, path)``: the full URL for ``params``, and its path for logs (no query)."""
        merged = {**self.config.params, **(params or {})}
        missing = sorted(self._path_params - merged.keys())
        if missing:
            raise ValueError(f'outgoing http "{self.name}": no value for path parameter(s) '
                             f'{", ".join(missing)}')
        path = _PARAM.sub(lambda m: quote(str(merged[m.group(1)]), safe=_SEGMENT_SAFE), self.config.path)
        query = [(k, _text(v)) for k, v in merged.items() if k not in self._path_params]
        address = self.config.address
        if address == "self" or address.startswith("self/"):
            own = self._self_address() if self._self_address else None
            if own is None:
                raise ConnectionFailed(self.name, "this broker is not listening on TCP yet")
            address = own + address[4:]
        base = address.rstrip("/")
        has_base_path = base.count("/") > 2          # scheme://host/base
        url = base if path == "/" and has_base_path else base + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        return url, path

    async def _call(self, method, data, params, headers, raise_for_status):
        url, path = self.url(params)
        body, content_type = (None, None) if data is None else encode_body(self.config.data_format, data)
        sent = {**self._headers, **(headers or {})}
        traceparent = outgoing_traceparent()
        if traceparent is not None and not any(k.lower() == "traceparent" for k in sent):
            sent["traceparent"] = traceparent
        if content_type and not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = content_type
        retryable = method in IDEMPOTENT
        attempt = 0
        while True:
            attempt += 1
            self.counters["requests"] += 1
            error = None
            try:
                status, answer_headers, answer = await self._attempt(method, url, sent, body, attempt)
            except (ConnectionFailed, OutgoingTimeout) as exc:
                self.counters["timeouts" if isinstance(exc, OutgoingTimeout) else "connection_errors"] += 1
                error = exc
            except ResponseTooLarge:
                self.counters["failures"] += 1
                raise
            else:
                result = HTTPResult(status, answer_headers, answer, attempts=attempt)
                if not (200 <= status < 300):
                    self.counters["bad_status"] += 1
                    error = BadStatus(self.name, f"{method} answered {status}", result, attempt)
                    if status not in self.config.retry_on_status:
                        break
                else:
                    break
            if isinstance(error, BadStatus) and not raise_for_status:
                break
            if not retryable or attempt > self.config.retries:
                raise self._failed(error, method, path)
            delay = min(self.config.retry_max_delay, self.config.retry_delay * 2 ** (attempt - 1))
            delay *= 1 + random.uniform(0, 0.1)
            self.counters["retries"] += 1
            log.info("outgoing http {name}: {method} {path}: {problem}; retry {n} of {retries} in "
                     "{delay:.2f}s", name=self.name, method=method, path=path, problem=error.problem,
                     n=attempt, retries=self.config.retries, delay=delay)
            await task.deferLater(self._reactor, delay, lambda: None)
        if error is not None:
            if raise_for_status:
                raise self._failed(error, method, path)
            try:
                result.data = parse_body(self.config.data_format, answer,
                                         answer_headers.get("content-type", ""))
            except ValueError:
                pass
            return result
        try:
            result.data = parse_body(self.config.data_format, answer, answer_headers.get("content-type", ""))
        except ValueError as exc:
            self.counters["unparseable"] += 1
            log.warn("outgoing http {name}: {method} {path}: unparseable {fmt} answer: {problem}",
                     name=self.name, method=method, path=path, fmt=self.config.data_format,
                     problem=str(exc))
            self.counters["failures"] += 1
            raise UnparseableResponse(self.name, str(exc), result, attempt) from None
        self.counters["ok"] += 1
        return result

    def _failed(self, error, method, path):
        """Count and log a call that failed for good; returns ``error`` to raise."""
        self.counters["failures"] += 1
        log.warn("outgoing http {name}: {method} {path} failed after {attempts} attempt(s): "
                 "{problem}", name=self.name, method=method, path=path, attempts=error.attempts,
                 problem=error.problem)
        return error

    async def _attempt(self, method, url, headers, body, attempt):
        """One request and its whole body, within ``timeout``: ``(status, headers, body)``."""
        d = self._client.request(method, url, headers=headers, data=body, unbuffered=True,
                                 allow_redirects=False)
        d.addCallback(self._read)
        d.addTimeout(self.config.timeout, self._reactor)
        try:
            return await d
        except BodyTooLarge as exc:
            self.counters["too_large"] += 1
            log.warn("outgoing http {name}: answer over {limit} bytes ({size} seen); dropped",
                     name=self.name, limit=self.config.max_response_size, size=exc.args[0])
            raise ResponseTooLarge(self.name, f"answer larger than {self.config.max_response_size}"
                                              f" bytes", attempt) from None
        except (defer.TimeoutError, defer.CancelledError):
            raise OutgoingTimeout(self.name, f"no complete answer within {self.config.timeout:g}s",
                                  attempt) from None
        except (net_error.ConnectError, net_error.DNSLookupError, net_error.ConnectionLost,
                ResponseFailed, ResponseNeverReceived, RequestTransmissionFailed) as exc:
            if _cancelled(exc):  # the deadline cancelled the request while in flight
                raise OutgoingTimeout(self.name, f"no complete answer within "
                                                 f"{self.config.timeout:g}s", attempt) from None
            raise ConnectionFailed(self.name, _describe(exc), attempt) from None

    def _read(self, response):
        headers = {name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
                   for name, values in response.headers.getAllRawHeaders()}
        d = read_body(response, self.config.max_response_size)
        return d.addCallback(lambda body: (response.code, headers, body))


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _cancelled(exc):
    reasons = getattr(exc, "reasons", None) or []
    return any(isinstance(r, Failure) and r.check(defer.CancelledError) for r in reasons)


def _is_tls_error(exc):
    kind = type(exc)
    return "SSL" in kind.__module__ or "SSL" in kind.__name__ or "certificate" in str(exc)


def _describe(exc):
    """A short text for a transport failure (no address, no secrets)."""
    if isinstance(exc, (ResponseFailed, ResponseNeverReceived, RequestTransmissionFailed)):
        reasons = getattr(exc, "reasons", None) or []
        inner = [r.value for r in reasons if isinstance(r, Failure)]
        if any(_is_tls_error(v) for v in inner):
            return "TLS handshake failed (certificate not trusted?)"
        return "the connection was lost before a complete answer"
    if isinstance(exc, net_error.DNSLookupError):
        return "the host name does not resolve"
    if isinstance(exc, net_error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, net_error.TimeoutError):
        return "connect timed out"
    return f"cannot connect ({type(exc).__name__})"


def build_http_outgoing(section, ctx):
    """The :class:`HTTPConnection` for a checked ``http`` outgoing section."""
    try:
        connection = HTTPConnection(section, ctx.reactor, self_address=ctx.own_address)
    except OSError as exc:
        raise config_error(section, "tls_ca_file", f"cannot read it: {exc.strerror}") from None
    except OpenSSLError:
        raise config_error(section, "tls_ca_file", "not a PEM certificate") from None
    ctx.metrics(f"outgoing.http.{section.name}", lambda: connection.counters)
    if not section.tls_verify and section.address.startswith("https:"):
        log.warn("outgoing http {name}: TLS certificates are NOT verified (tls_verify: false)",
                 name=section.name)
    return connection


#: ``outgoing:`` type ``http``: ``self.out.http[name]``.
OUTGOING = ComponentType(HTTP_OUTGOING, build_http_outgoing, kind="http")
