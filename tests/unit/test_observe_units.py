"""The pieces of issue 17 on their own: traceparent parsing, per-service stats, JSON log lines,
the Prometheus collector and the metrics switch."""

import io
import json
import textwrap

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task
from twisted.logger import Logger

from broker.admin.logs import json_observer, mask_secrets
from broker.admin.prometheus import exposition
from broker.node import build_node
from broker.services.context import ChannelInfo, Request
from broker.services.stats import ServiceStats
from broker.services.tracing import CURRENT, Trace, outgoing_traceparent, trace_of

TRACE = "0af7651916cd43dd8448eb211c80319c"


def test_a_valid_traceparent_is_continued_and_bad_ones_are_not():
    trace = Trace.parse(f"00-{TRACE}-b7ad6b7169203331-01")
    assert (trace.trace_id, trace.parent_id, trace.flags) == (TRACE, "b7ad6b7169203331", "01")
    assert trace.traceparent().startswith(f"00-{TRACE}-") and trace.span_id != "b7ad6b7169203331"
    for bad in ("", "00-xyz", f"00-{'0' * 32}-b7ad6b7169203331-01", f"00-{TRACE}-{'0' * 16}-01",
                f"ff-{TRACE}-b7ad6b7169203331-01", f"00-{TRACE}-b7ad6b7169203331-01-extra", None, 7):
        assert Trace.parse(bad) is None, bad


def test_a_request_keeps_its_trace_and_outgoing_calls_name_its_span():
    request = Request(headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}, cid="c1")
    assert outgoing_traceparent() is None  # outside a service
    token = CURRENT.set(("svc", request))
    try:
        first, second = outgoing_traceparent(), outgoing_traceparent()
    finally:
        CURRENT.reset(token)
    trace = trace_of(request)
    assert first == second == f"00-{TRACE}-{trace.span_id}-01"
    assert trace.parent_id == "b7ad6b7169203331" and trace_of(request) is trace
    child = trace.child()
    assert (child.trace_id, child.parent_id) == (TRACE, trace.span_id) and child.span_id != trace.span_id
    fresh = Request()
    assert len(trace_of(fresh).trace_id) == 32


def test_stats_buckets_and_quantiles():
    stats = ServiceStats(bounds=(0.01, 0.1, 1.0))
    assert stats.quantile(0.5) is None
    for seconds in (0.005,) * 98 + (0.5, 5.0):
        stats.observe(seconds)
    assert stats.counts == [98, 0, 1, 1]
    assert stats.cumulative()[-1] == (float("inf"), 100)
    assert stats.quantile(0.5) < 0.01 and 0.1 < stats.quantile(0.99) <= 1.0


def test_a_json_line_names_the_running_call_and_masks_credentials():
    out = io.StringIO()
    observer = json_observer(out)
    log = Logger(namespace="test.ns", observer=observer)
    request = Request(cid="cid-42", channel=ChannelInfo("orders", "http"))
    token = CURRENT.set(("orders.get", request))
    try:
        log.info("calling with {auth} and password={pw}", auth="Basic b3BzOnMzY3JldA==", pw="hunter2")
    finally:
        CURRENT.reset(token)
    log.warn("outside {cid}", cid="given")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (first["cid"], first["service"], first["channel"], first["level"], first["namespace"]) == \
        ("cid-42", "orders.get", "orders", "info", "test.ns")
    assert "hunter2" not in first["message"] and "b3BzOnMzY3JldA" not in first["message"]
    assert (second["cid"], second["service"], second["level"]) == ("given", None, "warn")


def test_mask_secrets_leaves_plain_text_alone():
    assert mask_secrets("GET /orders 200") == "GET /orders 200"
    assert mask_secrets("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"


def _node(tmp_path, metrics="{}"):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(f"""\
        metrics: {metrics}
        services: {{paths: ["{tmp_path / 'svc.py'}"]}}
        """))
    (tmp_path / "svc.py").write_text(textwrap.dedent("""\
        from broker import Service
        class Echo(Service):
            name = "t.echo"
            def handle(self):
                self.response.payload = {"ok": True}
        """))
    return build_node(str(path), reactor=task.Clock())


def _families(node):
    text = exposition(node.resources, node.store)().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_on_times_services_and_off_does_not(tmp_path):
    node = _node(tmp_path)
    assert "/metrics" in {r.path for r in node.router.routes}
    component = node.components[("feature", "metrics")]
    component.startService()
    assert node.invoker.timing == 1
    node.invoker.invoke_internal("t.echo", {})
    latency = _families(node)["broker_service_latency_seconds"]
    count = [s.value for s in latency.samples if s.name.endswith("_count") and s.labels["service"] == "t.echo"]
    assert count == [1.0]
    component.stopService()
    assert node.invoker.timing == 0
    off = _node(tmp_path, "{enabled: false}")
    assert "/metrics" not in {r.path for r in off.router.routes}
    off.invoker.invoke_internal("t.echo", {})
    stats = off.store.stats["t.echo"]
    assert stats.invocations == 1 and stats.observed == 0
