"""Observability end to end (issue 17): ``GET /metrics`` parsed by prometheus_client with every
family present and moving, JSON log lines with the cid and no secret, and one W3C trace
followed from an HTTP request (or a WebSocket invoke) through services into outgoing HTTP and
an AMQP message, and read back from it."""

import base64
import json
import secrets
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.admin.prometheus import FAMILIES
from tests.integration.amqp_support import requires_rabbitmq
from tests.integration.broker_process import BrokerProcess, free_port, wait_until
from tests.integration.ws_client import WSClient

pytestmark = requires_rabbitmq

CONFIG = Path(__file__).parent / "configs" / "observe.yaml"


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG, env={"SUFFIX": secrets.token_hex(4),
                                                "ZMQ_PORT": str(free_port())}).start()
    try:
        assert wait_until(lambda: _ready(process), timeout=30), process.output
        yield process
    finally:
        process.stop()


def _ready(process):
    status, _, body = process.request("GET", "/broker/health")
    checks = json.loads(body)["checks"]
    return all(checks[f"amqp.channel.{name}"]["ok"] for name in ("trace", "bad"))


def _admin(process):
    token = base64.b64encode(f"admin:{process.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _post(process, path, data=None, headers=None):
    status, answer_headers, body = process.request(
        "POST", path, json.dumps(data or {}), {"Content-Type": "application/json", **(headers or {})})
    assert status in (200, 202), body
    return answer_headers, body


def _scrape(process):
    status, headers, body = process.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = {}
    families = {}
    for family in text_string_to_metric_families(body.decode()):
        families[family.name] = family
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return families, samples


def _total(samples, name, **labels):
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for (sample, have), value in samples.items()
               if sample == name and set(labels.items()) <= set(have))


# family (as the parser names it), sample name, labels: each must move with the traffic below
MOVING = [
    ("broker_service_invocations", "broker_service_invocations_total", {"service": "demo.echo"}),
    ("broker_service_latency_seconds", "broker_service_latency_seconds_count", {"service": "demo.echo"}),
    ("broker_service_client_errors", "broker_service_client_errors_total", {"service": "demo.echo"}),
    ("broker_http_requests", "broker_http_requests_total", {"status_class": "2xx"}),
    ("broker_http_requests", "broker_http_requests_total", {"status_class": "4xx"}),
    ("broker_http_received_bytes", "broker_http_received_bytes_total", {}),
    ("broker_http_sent_bytes", "broker_http_sent_bytes_total", {}),
    ("broker_channel_messages", "broker_channel_messages_total", {"outcome": "received"}),
    ("broker_pubsub_published", "broker_pubsub_published_total", {}),
    ("broker_pubsub_deliveries", "broker_pubsub_deliveries_total", {}),
    ("broker_amqp_deliveries", "broker_amqp_deliveries_total", {"channel": "bad"}),
    ("broker_amqp_acks", "broker_amqp_acks_total", {"channel": "bad"}),
    ("broker_amqp_dead_letters", "broker_amqp_dead_letters_total", {"channel": "bad"}),
    ("broker_zmq_messages", "broker_zmq_messages_total", {"direction": "out"}),
    ("broker_zmq_messages", "broker_zmq_messages_total", {"direction": "in"}),
    ("broker_cache_hits", "broker_cache_hits_total", {"cache": "default"}),
    ("broker_cache_misses", "broker_cache_misses_total", {"cache": "default"}),
    ("broker_redis_failures", "broker_redis_failures_total", {"connection": "dead"}),
    ("broker_scheduler_runs", "broker_scheduler_runs_total", {}),
    ("broker_scheduler_misfires", "broker_scheduler_misfires_total", {}),  # grace 0s: any lateness
    ("broker_scheduler_overlaps_skipped", "broker_scheduler_overlaps_skipped_total", {}),
]


def test_every_family_is_in_the_prometheus_output_and_moves_with_traffic(broker):
    families, before = _scrape(broker)
    expected = {f"broker_{name}" for name, *_ in FAMILIES} | {"broker_service_latency_seconds"}
    assert expected <= set(families), expected - set(families)
    assert families["broker_service_latency_seconds"].type == "histogram"
    assert _total(before, "broker_amqp_reconnects_total", connection="rabbit") >= 1
    assert _total(before, "broker_open_connections", channel="http") >= 1  # this scrape's own

    with WSClient(broker.port, headers=_admin(broker)) as subscriber:
        assert subscriber.request("subscribe", topic="observe.#")["op"] == "ok"
        for n in range(3):
            _post(broker, "/observe/echo", {"text": str(n)})
        status, _, _ = broker.request("POST", "/observe/echo", b'{"repeat": "x"}',
                                      {"Content-Type": "application/json"})
        assert status == 400
        _post(broker, "/observe/traffic")
        assert subscriber.messages(1)[0]["topic"] == "observe.tick"
        assert _total(_scrape(broker)[1], "broker_open_connections", channel="websocket") == 1

    def moved():
        after = _scrape(broker)[1]
        return [(name, labels) for _, name, labels in MOVING
                if _total(after, name, **labels) <= _total(before, name, **labels)]

    wait_until(lambda: not moved(), timeout=20)
    assert moved() == []
    after = _scrape(broker)[1]
    buckets = [value for (name, labels), value in after.items()
               if name == "broker_service_latency_seconds_bucket" and ("service", "demo.echo") in labels]
    assert len(buckets) == 15 and buckets == sorted(buckets)  # cumulative, ending with +Inf


def _json_lines(process):
    return [json.loads(line) for line in process.lines if line.strip()]


def test_log_lines_are_json_with_the_cid_and_no_secret(broker):
    headers, _ = _post(broker, "/observe/chain")
    cid = headers["x-broker-cid"]
    status, _, _ = broker.request("GET", "/broker/admin/jobs",
                                  headers={"Authorization": "Basic " + base64.b64encode(
                                      b"admin:wrong-Pa55word").decode()})
    assert status == 401
    assert wait_until(lambda: any(r["cid"] == cid and "/observe/chain" in r["message"]
                                  for r in _json_lines(broker)), timeout=10)
    records = _json_lines(broker)  # every line parses: the log is JSON lines only
    assert all(set(r) == {"time", "level", "namespace", "cid", "service", "channel", "message"}
               for r in records)
    caused = [r for r in records if r["cid"] == cid]
    chain = [r for r in caused if r["service"] == "observe.chain"]
    assert chain and chain[0]["channel"] == "chain" and chain[0]["namespace"] == "broker.service.observe.chain"
    assert "password=***" in chain[0]["message"]
    assert any(r["namespace"] == "broker.access" for r in caused)
    text = broker.output
    for secret in ("s3cret-never-logged", broker.admin_password, "wrong-Pa55word",
                   base64.b64encode(f"admin:{broker.admin_password}".encode()).decode()):
        assert secret not in text


def _seen(broker):
    status, _, body = broker.request("GET", "/observe/seen")
    assert status == 200
    return json.loads(body)["seen"]


def _parts(traceparent):
    version, trace_id, span_id, flags = traceparent.split("-")
    return trace_id, span_id


def test_a_traceparent_is_followed_through_services_into_outgoing_http_and_amqp(broker):
    before = _seen(broker)
    http_before, amqp_before = len(before.get("http", [])), len(before.get("amqp", []))
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    _post(broker, "/observe/chain", headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})
    # inner's outgoing HTTP, inner's AMQP message, then observe.record's own outgoing HTTP
    assert wait_until(lambda: len(_seen(broker).get("http", [])) >= http_before + 2
                      and len(_seen(broker).get("amqp", [])) >= amqp_before + 1, timeout=20)
    seen = _seen(broker)
    from_http = [_parts(tp) for tp in seen["http"][http_before:]]
    from_amqp = [_parts(tp) for tp in seen["amqp"][amqp_before:]]
    assert {t for t, _ in from_http + from_amqp} == {trace_id}
    inner_http, record_http = from_http[0][1], from_http[1][1]
    inner_amqp = from_amqp[0][1]
    assert caller_span not in (inner_http, record_http, inner_amqp)
    assert inner_http == inner_amqp  # both calls of observe.inner name its span as their parent
    assert record_http != inner_http  # observe.record is a span of its own (the AMQP hop)


def test_a_websocket_invoke_continues_the_frames_traceparent(broker):
    before = len(_seen(broker).get("http", []))
    trace_id = secrets.token_hex(16)
    with WSClient(broker.port, headers=_admin(broker)) as client:
        reply = client.request("invoke", service="observe.chain", data={},
                               traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")
        assert reply["op"] == "ok", reply
    assert wait_until(lambda: len(_seen(broker).get("http", [])) > before, timeout=20)
    assert _parts(_seen(broker)["http"][before])[0] == trace_id


def test_a_malformed_traceparent_starts_a_new_trace(broker):
    before = len(_seen(broker).get("http", []))
    _post(broker, "/observe/chain", headers={"traceparent": "00-zz-not-a-trace"})
    assert wait_until(lambda: len(_seen(broker).get("http", [])) > before, timeout=20)
    trace_id, span = _parts(_seen(broker)["http"][before])
    assert len(trace_id) == 32 and trace_id != "0" * 32 and len(span) == 16
