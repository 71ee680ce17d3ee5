"""``tracing:`` exports each answered invocation as an OpenTelemetry span carrying the broker's
own W3C ids: the caller's traceparent is the parent, a service invoked by another its child."""

import sys
import textwrap

import pytest
from twisted.internet import task

from broker.http.app import HTTPApp
from broker.http.wire import HTTPRequest
from broker.node import build_node

otel = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE, CALLER = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

SERVICES = """\
from broker import Service

class Outer(Service):
    name = "t.outer"
    async def handle(self):
        self.response.payload = await self.invoke("t.inner", {})

class Inner(Service):
    name = "t.inner"
    def handle(self):
        self.response.payload = {"ok": True}
"""


def _node(tmp_path, tracing):
    (tmp_path / "svc.py").write_text(SERVICES)
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: traced
        tracing: {tracing}
        services: {{paths: ["{tmp_path / 'svc.py'}"]}}
        channels:
          - {{name: outer, type: http, path: /outer, service: t.outer, methods: [POST]}}
        """))
    return build_node(str(path), reactor=task.Clock())


def _call(node, headers):
    request = HTTPRequest("POST", "/outer", "", "1.1", headers, b"{}", True, "127.0.0.1", b"")
    answer = HTTPApp(node.router, node.invoker).handle(request)
    assert answer.status == 200, answer.body


def test_spans_carry_the_callers_trace_and_nest(tmp_path, monkeypatch):
    memory = InMemorySpanExporter()
    monkeypatch.setattr("broker.admin.otel._exporter", lambda section: memory)
    node = _node(tmp_path, "{exporter: console, service_name: orders}")
    export = node.components[("feature", "tracing")]
    export.value.provider.add_span_processor(SimpleSpanProcessor(memory))
    export.startService()
    try:
        _call(node, {"traceparent": f"00-{TRACE}-{CALLER}-01"})
    finally:
        export.stopService()
    spans = {span.name: span for span in memory.get_finished_spans()}
    outer, inner = spans["t.outer"], spans["t.inner"]
    assert format(outer.context.trace_id, "032x") == format(inner.context.trace_id, "032x") == TRACE
    assert format(outer.parent.span_id, "016x") == CALLER and outer.parent.is_remote
    assert inner.parent.span_id == outer.context.span_id
    assert outer.attributes["broker.channel"] == "outer" and outer.attributes["broker.cid"]
    assert outer.resource.attributes["service.name"] == "orders"
    assert outer.end_time >= outer.start_time
    assert node.invoker.timing == 0 and node.invoker.spans is None  # off once stopped


def test_no_exporter_configured_exports_nothing(tmp_path):
    node = _node(tmp_path, "{}")
    assert node.components[("feature", "tracing")].value is None
    assert node.invoker.spans is None


def test_an_exporter_without_the_sdk_warns_and_exports_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    node = _node(tmp_path, "{exporter: console}")
    assert node.components[("feature", "tracing")].value is None
