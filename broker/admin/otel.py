"""``tracing:``: export each answered invocation as an OpenTelemetry span.

Only when ``tracing.exporter`` names one *and* ``opentelemetry-sdk`` is
installed (``pip install broker[otel]``); otherwise nothing is exported and
nothing is loaded.  The spans carry the ids the broker already uses for W3C
``traceparent`` (:mod:`broker.services.tracing`): a span's trace and span id
are the invocation's, its parent the caller's span (another service's, or
the ``traceparent`` a request came with), so exported spans and the headers
sent on outgoing calls tell one story.

::

    tracing:
      exporter: otlp                       # or console; none (the default) exports nothing
      endpoint: http://127.0.0.1:4318/v1/traces   # otlp (needs opentelemetry-exporter-otlp-proto-http)
      service_name: orders-broker          # default: the node's name
"""

import time

from twisted.application.service import Service as IService
from twisted.logger import Logger

from broker.components import ComponentType
from broker.config.schema import Choice, Field, Schema, Str
from broker.services.tracing import trace_of

__all__ = ["TRACING", "TRACING_SECTION", "SpanExport", "build_tracing"]

log = Logger()

TRACING_SECTION = Schema("tracing", {
    "exporter": Field(Choice("none", "console", "otlp"), default="none",
                      doc="where spans go (needs opentelemetry-sdk; none: nowhere)"),
    "endpoint": Field(Str(min_length=1), default=None, doc="the OTLP/HTTP traces endpoint"),
    "service_name": Field(Str(min_length=1), default=None, doc="default: the node's name"),
})


class SpanExport(IService):
    """Turns the invoker's answered invocations into spans of ``provider`` while running."""

    def __init__(self, invoker, provider, ids):
        from opentelemetry import trace as api  # noqa: PLC0415

        self._api = api
        self.invoker, self.provider, self._ids = invoker, provider, ids
        self.tracer = provider.get_tracer("broker")

    def startService(self):
        super().startService()
        self.invoker.timing += 1
        self.invoker.spans = self.record

    def stopService(self):
        super().stopService()
        self.invoker.timing -= 1
        if self.invoker.spans == self.record:
            self.invoker.spans = None
        self.provider.shutdown()

    def record(self, service, request, seconds):
        """One span for one answered invocation that took ``seconds``."""
        api = self._api
        trace = trace_of(request)
        end = time.time_ns()
        context = None
        if trace.parent_id is not None:
            parent = api.SpanContext(int(trace.trace_id, 16), int(trace.parent_id, 16), is_remote=True,
                                     trace_flags=api.TraceFlags(int(trace.flags, 16)))
            context = api.set_span_in_context(api.NonRecordingSpan(parent))
        self._ids.next = (int(trace.trace_id, 16), int(trace.span_id, 16))
        channel = request.channel
        span = self.tracer.start_span(
            service, context=context, start_time=end - int(seconds * 1e9),
            kind=api.SpanKind.SERVER if request.depth == 0 else api.SpanKind.INTERNAL,
            attributes={"broker.cid": str(request.cid), "broker.channel": channel.name,
                        "broker.channel.type": channel.type})
        self._ids.next = None
        span.end(end_time=end)


def _id_generator():
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator  # noqa: PLC0415

    class BrokerIds(RandomIdGenerator):
        """The ids the broker chose for the span being started (random for any other)."""

        next = None

        def generate_trace_id(self):
            return self.next[0] if self.next else super().generate_trace_id()

        def generate_span_id(self):
            return self.next[1] if self.next else super().generate_span_id()

    return BrokerIds()


def _exporter(section):
    if section.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    return OTLPSpanExporter(endpoint=section.endpoint) if section.endpoint else OTLPSpanExporter()


def build_tracing(section, ctx, exporter=None):
    """The span export the ``tracing:`` section asks for, or None (off, or no SDK here)."""
    if section.exporter == "none" and exporter is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        exporter = exporter or _exporter(section)
    except ImportError as error:
        log.warn("tracing.exporter is {exporter} but {error}: no spans are exported "
                 "(pip install 'broker[otel]')", exporter=section.exporter, error=str(error))
        return None
    ids = _id_generator()
    provider = TracerProvider(resource=Resource.create({
        "service.name": section.service_name or ctx.config.name}), id_generator=ids)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return ctx.add_service(SpanExport(ctx.invoker, provider, ids))


#: The ``tracing:`` section: OpenTelemetry export, when configured and installed.
TRACING = ComponentType(TRACING_SECTION, build_tracing)
