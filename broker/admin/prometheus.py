"""``GET /metrics``: the node's counters in the Prometheus text format (prometheus-client).

Nothing is counted for it per request: a :class:`NodeCollector` reads, when
scraped, the counters every component keeps anyway (``resources.metrics``)
and each service's :class:`~broker.services.stats.ServiceStats`; the one
per-request cost is the latency histogram's bucket, taken by the invoker
while ``metrics.enabled`` (the ``metrics:`` section) is on.
"""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from twisted.application.service import Service as IService

from broker.components import ComponentType, Needs
from broker.config.schema import Bool, Field, Name, Schema
from broker.http.protocol import HTTPResponse
from broker.http.router import Route, RouteDoc

__all__ = ["FAMILIES", "METRICS", "METRICS_SECTION", "NodeCollector", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _counter(name, doc, labels):
    return CounterMetricFamily(f"broker_{name}", doc, labels=labels)


def _gauge(name, doc, labels):
    return GaugeMetricFamily(f"broker_{name}", doc, labels=labels)


#: ``(family, kind, help, labels)``: every family ``/metrics`` shows (``broker_`` prefixed).
FAMILIES = (
    ("service_invocations", "counter", "Invocations of a service", ("service",)),
    ("service_client_errors", "counter", "Invocations refused for bad input", ("service",)),
    ("service_errors", "counter", "Invocations the service broke", ("service",)),
    ("service_timeouts", "counter", "Invocations over limits.service_timeout", ("service",)),
    ("http_requests", "counter", "HTTP answers by status class", ("status_class",)),
    ("http_received_bytes", "counter", "Bytes read from HTTP clients", ()),
    ("http_sent_bytes", "counter", "Bytes of HTTP answers written (streamed bodies aside)", ()),
    ("open_connections", "gauge", "Client connections open now", ("channel",)),
    ("channel_messages", "counter", "Messages a message channel took, by outcome",
     ("channel", "outcome")),
    ("pubsub_published", "counter", "Messages published to topics", ()),
    ("pubsub_deliveries", "counter", "Messages delivered to subscribers", ()),
    ("pubsub_dropped", "counter", "Messages dropped for slow subscribers", ()),
    ("pubsub_queued", "gauge", "Messages queued for subscribers now", ()),
    ("pubsub_subscriptions", "gauge", "Subscriptions now", ()),
    ("amqp_deliveries", "counter", "Messages RabbitMQ delivered to a channel", ("channel",)),
    ("amqp_acks", "counter", "Deliveries acknowledged", ("channel",)),
    ("amqp_dead_letters", "counter", "Messages dead-lettered", ("channel",)),
    ("amqp_reconnects", "counter", "Connections made to RabbitMQ (the first one too)", ("connection",)),
    ("amqp_outbox", "gauge", "Messages waiting to be published", ("outgoing",)),
    ("zmq_messages", "counter", "ZeroMQ messages in (channels) and out (outgoing)", ("name", "direction")),
    ("zmq_drops", "counter", "ZeroMQ messages dropped", ("name",)),
    ("cache_hits", "counter", "Cache hits", ("cache",)),
    ("cache_misses", "counter", "Cache misses", ("cache",)),
    ("redis_failures", "counter", "Redis commands that failed (timeouts and errors too)", ("connection",)),
    ("scheduler_runs", "counter", "Job runs", ()),
    ("scheduler_misfires", "counter", "Job runs that came late", ()),
    ("scheduler_overlaps_skipped", "counter", "Job runs skipped while the previous one ran", ()),
    ("threads_busy", "gauge", "Thread pool calls running", ()),
    ("threads_queued", "gauge", "Thread pool calls waiting", ()),
)

_KINDS = {"counter": _counter, "gauge": _gauge}
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def _after(name, prefix):
    return name[len(prefix):] if name.startswith(prefix) else None


class NodeCollector:
    """A prometheus-client collector reading one node's counters when scraped.

    :param resources: the node's :class:`~broker.runtime.Resources` (``metrics``).
    :param store: the :class:`~broker.services.store.ServiceStore` (``stats``).
    """

    def __init__(self, resources, store):
        self.resources = resources
        self.store = store

    def collect(self):
        families = {name: _KINDS[kind](name, doc, list(labels)) for name, kind, doc, labels in FAMILIES}
        latency = HistogramMetricFamily("broker_service_latency_seconds",
                                        "Time from input to encoded answer", labels=["service"])
        for name, stats in sorted(self.store.stats.items()):
            families["service_invocations"].add_metric([name], stats.invocations)
            families["service_client_errors"].add_metric([name], stats.client_errors)
            families["service_errors"].add_metric([name], stats.service_errors)
            families["service_timeouts"].add_metric([name], stats.timeouts)
            latency.add_metric([name], [(repr(float(b)) if b != float("inf") else "+Inf", c)
                                        for b, c in stats.cumulative()], stats.sum)
        for key, read in sorted(self.resources.metrics.items()):
            try:
                counters = read()
            except Exception:  # a component going away while scraped: skip it this time
                continue
            self._component(families, key, counters)
        yield from families.values()
        yield latency

    def _component(self, f, key, c):
        if key == "http":
            by_class = dict.fromkeys(_CLASSES, 0)
            for status, count in c.get("statuses", {}).items():
                by_class[f"{int(status) // 100}xx"] = by_class.get(f"{int(status) // 100}xx", 0) + count
            for name, count in by_class.items():
                f["http_requests"].add_metric([name], count)
            f["http_received_bytes"].add_metric([], c.get("bytes_received", 0))
            f["http_sent_bytes"].add_metric([], c.get("bytes_sent", 0))
            f["open_connections"].add_metric(["http"], c.get("open", 0))
        elif key == "websocket":
            f["open_connections"].add_metric(["websocket"], c.get("connections", 0))
        elif key == "pubsub":
            for name in ("published", "deliveries", "dropped", "queued", "subscriptions"):
                f[f"pubsub_{name}"].add_metric([], c.get(name, 0))
        elif key == "scheduler":
            f["scheduler_runs"].add_metric([], c.get("runs", 0))
            f["scheduler_misfires"].add_metric([], c.get("misfires", 0))
            f["scheduler_overlaps_skipped"].add_metric([], c.get("skipped_overlap", 0))
        elif key == "threads":
            f["threads_busy"].add_metric([], c.get("running", 0))
            f["threads_queued"].add_metric([], c.get("queued", 0))
        elif (name := _after(key, "cache.")) is not None:
            f["cache_hits"].add_metric([name], c.get("hits", 0))
            f["cache_misses"].add_metric([name], c.get("misses", 0))
        elif (name := _after(key, "redis.")) is not None:
            f["redis_failures"].add_metric([name], c.get("failures", 0))
        elif (name := _after(key, "amqp.connection.")) is not None:
            f["amqp_reconnects"].add_metric([name], c.get("connects", 0))
        elif (name := _after(key, "amqp.outgoing.")) is not None:
            f["amqp_outbox"].add_metric([name], c.get("outbox", 0))
        elif (name := _after(key, "zmq.outgoing.")) is not None:
            f["zmq_messages"].add_metric([name, "out"], c.get("sent", 0))
            f["zmq_drops"].add_metric([name], sum(c.get(k, 0) for k in (
                "dropped", "full_errors", "dropped_on_close", "no_subscriber")))
        if "received" in c and "succeeded" in c and key.count(".") >= 1:  # a message channel
            self._channel(f, key, c)

    def _channel(self, f, key, c):
        name = key.rsplit(".", 1)[1] if key.count(".") >= 2 else key
        for outcome in ("received", "succeeded", "client_errors", "service_errors", "timeouts"):
            f["channel_messages"].add_metric([key, outcome], c.get(outcome, 0))
        if key.startswith("amqp.channel."):
            f["amqp_deliveries"].add_metric([name], c.get("received", 0))
            f["amqp_acks"].add_metric([name], c.get("acked", 0))
            f["amqp_dead_letters"].add_metric([name], c.get("dead_lettered", 0))
        elif key.startswith("zmq.channel."):
            f["zmq_messages"].add_metric([name, "in"], c.get("received", 0))
            f["zmq_drops"].add_metric([name], c.get("replies_undeliverable", 0))


def exposition(resources, store):
    """A callable answering the current text exposition (bytes)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(resources, store))
    return lambda: generate_latest(registry)


class _Timing(IService):
    """Per-service latency timing in the invoker, on while the metrics feature runs."""

    def __init__(self, invoker):
        self.invoker = invoker

    def startService(self):
        super().startService()
        self.invoker.timing += 1

    def stopService(self):
        super().stopService()
        self.invoker.timing -= 1


METRICS_SECTION = Schema("metrics", {
    "enabled": Field(Bool(), default=True,
                     doc="serve GET /metrics (Prometheus) and time each service's invocations"),
    "security": Field(Name(), default=None,
                      doc="a security definition scrapers must pass (none: anyone may scrape)"),
})

_DOC = RouteDoc("The node's metrics in the Prometheus text format", {200: (
    "The exposition (version 0.0.4)", {CONTENT_TYPE.split(";")[0]: {"type": "string"}})})


def build_metrics(section, ctx):
    """``GET /metrics`` and latency timing, when ``metrics.enabled``."""
    if not section.enabled:
        return None
    render = exposition(ctx.resources, ctx.store)

    def answer(request, cid, params):
        return HTTPResponse(200, [("Content-Type", CONTENT_TYPE), ("X-Broker-CID", cid)], render())

    definition = ctx.security_of(section)
    if definition is not None:
        from broker.admin.routes import guarded  # noqa: PLC0415
        answer = guarded(definition, answer)
    doc = _DOC if definition is None else RouteDoc(_DOC.summary, _DOC.responses, security=(definition,))
    ctx.add_route(Route("broker.prometheus", "/metrics", ("GET",), answer, kind="builtin", doc=doc))
    return ctx.add_service(_Timing(ctx.invoker))


#: The ``metrics:`` section: Prometheus exposition and per-service latency.
METRICS = ComponentType(METRICS_SECTION, build_metrics, needs=[Needs.security()])
