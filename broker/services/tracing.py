"""The call in progress and its W3C trace context (``traceparent``).

The invoker sets :data:`CURRENT` to ``(service name, request)`` while a
service's ``handle()`` runs (a coroutine keeps it across its awaits, since
Twisted runs each step in the context it started in), so log lines carry
the correlation id and outgoing connections carry the trace without being
handed either.

A request's trace is read from its ``traceparent`` header (HTTP, WebSocket,
AMQP headers) the first time it is needed, or started anew.  Each invocation
is one span of it: a service invoked by another is a child span, and its
outgoing calls (HTTP, AMQP) carry a ``traceparent`` naming the trace and the
invocation's span as their parent.
"""

import os
import re
from contextvars import ContextVar

__all__ = ["CURRENT", "Trace", "current_request", "outgoing_traceparent", "trace_of"]

#: ``(service name, Request)`` of the service running now, or None.
CURRENT = ContextVar("broker_current_call", default=None)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _span_id():
    return os.urandom(8).hex()


class Trace:
    """One hop of a distributed trace: the trace id, the caller's span and ours."""

    __slots__ = ("trace_id", "parent_id", "span_id", "flags")

    def __init__(self, trace_id, parent_id=None, span_id=None, flags="01"):
        self.trace_id, self.parent_id, self.flags = trace_id, parent_id, flags
        self.span_id = span_id or _span_id()

    @classmethod
    def parse(cls, header):
        """The trace a ``traceparent`` header continues, or None when it is malformed."""
        if not isinstance(header, str):
            if isinstance(header, bytes):
                header = header.decode("latin-1")
            else:
                return None
        match = _TRACEPARENT.match(header.strip().lower())
        if match is None:
            return None
        version, trace_id, parent_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE \
                or parent_id == _ZERO_SPAN:
            return None
        return cls(trace_id, parent_id, flags=flags)

    @classmethod
    def new(cls):
        return cls(os.urandom(16).hex())

    def child(self):
        """The trace of an invocation this one makes: same trace, a new span under ours."""
        return Trace(self.trace_id, self.span_id, flags=self.flags)

    def traceparent(self, span_id=None):
        """The header naming this trace with ``span_id`` (ours by default) as the parent."""
        return f"00-{self.trace_id}-{span_id or self.span_id}-{self.flags}"

    def __repr__(self):
        return f"Trace({self.traceparent()})"


def trace_of(request):
    """The request's trace: its own ``traceparent`` continued, or a new one; kept on it."""
    trace = request.trace
    if trace is None:
        headers = request.headers
        trace = Trace.parse(headers.get("traceparent")) if headers else None
        request.trace = trace = trace or Trace.new()
    return trace


def current_request():
    """The :class:`~broker.services.context.Request` of the service running now, or None."""
    call = CURRENT.get()
    return None if call is None else call[1]


def outgoing_traceparent():
    """A ``traceparent`` for an outgoing call made by the service running now (its trace,
    its span as the parent), or None outside a service."""
    request = current_request()
    if request is None:
        return None
    return trace_of(request).traceparent()
