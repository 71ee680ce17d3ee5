"""The invoker: the one pipeline every channel calls.

channel → authenticate → decode → validate input (SimpleIO) → ``handle()`` →
render declared output → encode → channel.  Errors leave as typed
:mod:`broker.errors` exceptions; each channel maps them to its protocol once.

A service whose ``handle()`` finishes synchronously is answered without a
Deferred (the common case, and the fast one): :meth:`Invoker.invoke` returns
either a :class:`~broker.services.context.Response` or a Deferred of one.
"""

from bisect import bisect_left
from inspect import iscoroutine
from time import perf_counter

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from broker.runtime import Resources
from broker.errors import BrokerError, ResponseTooLarge, ServiceError, Timeout, ValidationError
from broker.services.context import INTERNAL, Payload, Request, Response
from broker.services.tracing import CURRENT, trace_of
from broker.simpleio import CONTENT_TYPES, decode, encode

__all__ = ["IInvoker", "Invoker"]

log = Logger()


class IInvoker(Interface):
    """The one way a channel runs a service (see :mod:`broker.channels`)."""

    def invoke(service_name, request, encode=True):
        """Run ``service_name`` for ``request``, a :class:`~broker.services.context.Request`
        a channel built (``Request.from_channel``).

        In order: authenticate with the channel's security definition (``request.caller``),
        decode ``raw_request`` in the channel's data format unless ``payload`` is set,
        validate the input (SimpleIO), call ``handle()``, keep the declared output and,
        when ``encode``, encode it for the channel (``response.body``).

        :return: a :class:`~broker.services.context.Response`, or a Deferred firing with
            one when the service had to wait.
        :raise broker.errors.BrokerError: for anything the caller did wrong or the
            service broke (a Deferred fails with it likewise).
        """

_TEXT = (str, bytes)


@implementer(IInvoker)
class Invoker:
    """Runs services for channels and for other services.

    :param store: the :class:`~broker.services.store.ServiceStore`.
    :param threads: the :class:`~broker.services.threads.ThreadRunner` services offload to.
    :param timeout: seconds an asynchronous ``handle()`` may take (0 = no limit).
    :param max_depth: how deep services may invoke one another.
    :param max_response_size: the largest encoded answer, in bytes (None = any).
    """

    def __init__(self, store, *, reactor=None, threads=None, timeout=30.0, max_depth=16,
                 resources=None, max_response_size=None):
        if reactor is None:
            from twisted.internet import reactor
        self.store = store
        self.resources = resources if resources is not None else Resources()
        self._reactor = reactor
        self._threads = threads
        self.timeout = timeout
        self.max_depth = max_depth
        self.max_response_size = max_response_size
        self.counters = {"invocations": 0, "client_errors": 0, "service_errors": 0, "timeouts": 0,
                         "responses_too_large": 0}
        self.timing = 0     # > 0: time invocations (metrics' histograms, tracing's spans)
        self.spans = None   # callable(service name, request, seconds) per answered invocation

    # -- entry points ---------------------------------------------------------

    def invoke(self, service_name, request, encode=True):
        """Run the full pipeline for a request that came through a channel (see
        :class:`IInvoker`)."""
        channel = request.channel
        if channel.security is not None:
            request.caller = channel.security.authenticate(request)  # the definition's caller
            if self.resources.rbac is not None and request.caller is not None:
                self.resources.rbac.check(request.caller, "invoke", service_name, request.cid)
        entry = self.store.get(service_name)
        if request.payload is None and request.raw_request:
            request.payload = decode(channel.data_format, request.raw_request, request.content_type)
        return self._run(entry, request, encode)

    def invoke_internal(self, name, data=None, parent=None, channel=INTERNAL, timeout=None):
        """Invoke ``name`` in-process with ``data`` as its input.

        :param timeout: seconds this call may take (besides the service's own timeout);
            over it the Deferred fails with :class:`~broker.errors.Timeout`.
        :return: a Deferred firing with the service's output payload (declared
            keys only), never encoded.
        """
        if timeout:
            return self._within(self.invoke_internal(name, data, parent, channel), timeout, name)
        depth = parent.depth + 1 if parent is not None else 0
        if depth > self.max_depth:
            return defer.fail(ServiceError(f"Invocation depth over {self.max_depth}"))
        if parent is not None and parent.caller is not None and self.resources.rbac is not None:
            try:  # a caller's service invokes another on its behalf: its roles decide
                self.resources.rbac.check(parent.caller, "invoke", name, parent.cid)
            except BrokerError as exc:
                return defer.fail(exc)
        request = Request(payload=data, channel=channel, depth=depth,
                          cid=parent.cid if parent is not None else None,
                          caller=parent.caller if parent is not None else None,
                          trace=trace_of(parent).child() if parent is not None else None)
        try:
            result = self._run(self.store.get(name), request, False)
        except Exception:
            return defer.fail()
        if isinstance(result, defer.Deferred):
            return result.addCallback(_payload_of)
        return defer.succeed(result.payload)

    def _within(self, d, timeout, name):
        """``d``, cancelled and failing with :class:`Timeout` after ``timeout`` seconds (the
        cancelled call is counted and logged where it ran)."""
        if d.called:
            return d
        expired = []

        def expire():
            expired.append(True)
            d.cancel()

        call = self._reactor.callLater(timeout, expire)

        def settle(result):
            if call.active():
                call.cancel()
            if expired and isinstance(result, Failure):
                log.warn("call of {service} did not answer within {timeout}s", service=name,
                         timeout=timeout)
                return Failure(Timeout(f"Service {name} did not answer within {timeout:g}s"))
            return result

        return d.addBoth(settle)

    # -- the pipeline ---------------------------------------------------------

    def _run(self, entry, request, encode_output):
        self.counters["invocations"] += 1
        stats = entry.stats
        stats.invocations += 1
        started = perf_counter() if self.timing else 0.0
        sio = entry.sio
        data = request.payload
        params = request.params
        if params:
            if data is None:
                data = params
            elif isinstance(data, dict):
                data = {**data, **params}
        if sio is not None and sio.has_input:
            try:
                request.input = sio.parse_input(data)
            except ValidationError:
                self.counters["client_errors"] += 1
                stats.client_errors += 1
                raise
        else:
            request.input = Payload(data) if isinstance(data, dict) else data
        response = Response()
        service = entry.new()
        service.request = request
        service.response = response
        service.logger = entry.logger
        service._invoker = self
        service._threads = self._threads
        service._resources = self.resources
        call = CURRENT.set((entry.name, request))  # log lines and outgoing calls see it
        try:
            result = service.handle()
            if result is not None and iscoroutine(result):
                result = defer.Deferred.fromCoroutine(result)  # its steps keep CURRENT
        except BrokerError:
            raise
        except Exception as exc:
            raise self._service_failed(entry, request, exc) from exc
        finally:
            CURRENT.reset(call)
        if result is not None and isinstance(result, defer.Deferred):
            if result.called and not isinstance(result.result, (Failure, defer.Deferred)):
                # an async handle() that never had to wait: answer now, no timer
                return self._finish(entry, request, response, encode_output, started)
            timeout = entry.timeout if entry.timeout is not None else self.timeout
            if timeout:
                result.addTimeout(timeout, self._reactor)
            return result.addCallbacks(
                lambda _: self._finish(entry, request, response, encode_output, started),
                lambda failure: self._async_failed(entry, request, failure))
        return self._finish(entry, request, response, encode_output, started)

    def _finish(self, entry, request, response, encode_output, started=0.0):
        """Keep only declared output and encode it for the channel."""
        payload = response.payload
        sio = entry.sio
        if sio is not None and sio.has_output:
            try:
                payload = response.payload = sio.render_output(payload)
            except BrokerError as exc:
                raise self._service_failed(entry, request, exc) from exc
        if encode_output:
            fmt = request.channel.data_format
            limit = self.max_response_size
            if isinstance(payload, _TEXT):
                if limit is not None and len(payload) > limit:  # UTF-8 is never shorter
                    raise self._too_large(entry, request)
                response.body = payload.encode() if isinstance(payload, str) else payload
                if limit is not None and len(response.body) > limit:
                    raise self._too_large(entry, request)
                if response.content_type is None:
                    response.content_type = CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")
            elif payload is None or (not payload and sio is None and type(payload) is Payload):
                response.body = b""
            else:
                try:
                    body, content_type = encode(fmt, payload, max_size=limit)
                except ResponseTooLarge:
                    raise self._too_large(entry, request) from None
                response.body = body
                if response.content_type is None:
                    response.content_type = content_type
        if started:  # ServiceStats.observe, inlined: this runs for every answered invocation
            elapsed = perf_counter() - started
            stats = entry.stats
            stats.counts[bisect_left(stats.bounds, elapsed)] += 1
            stats.sum += elapsed
            if self.spans is not None:
                self.spans(entry.name, request, elapsed)
        return response

    def _too_large(self, entry, request):
        """Count and log an answer over ``max_response_size``; the caller gets a 500."""
        self.counters["responses_too_large"] += 1
        log.warn("service {service} answered more than limits.max_response_size ({limit} bytes): "
                 "not sent (cid {cid})", service=entry.name, limit=self.max_response_size,
                 cid=request.cid)
        return ResponseTooLarge(f"The answer is over the limit of {self.max_response_size} bytes")

    def _async_failed(self, entry, request, failure):
        if failure.check(defer.TimeoutError, defer.CancelledError):
            self.counters["timeouts"] += 1
            entry.stats.timeouts += 1
            timeout = entry.timeout if entry.timeout is not None else self.timeout
            log.warn("service {service} timed out after {timeout}s (cid {cid})",
                     service=entry.name, timeout=timeout, cid=request.cid)
            raise Timeout(f"Service {entry.name} timed out after {timeout:g}s")
        if failure.check(BrokerError):
            failure.raiseException()
        raise self._service_failed(entry, request, failure.value, failure)

    def _service_failed(self, entry, request, exc, failure=None):
        """Log a service's own failure in full; the caller gets a generic error."""
        self.counters["service_errors"] += 1
        entry.stats.service_errors += 1
        if failure is None:
            failure = Failure(exc)
        log.failure("service {service} failed (cid {cid}): {error}", failure,
                    service=entry.name, cid=request.cid, error=str(exc))
        return ServiceError()


def _payload_of(response):
    return response.payload

