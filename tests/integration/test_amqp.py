"""AMQP channels, outgoing publishes and the publish endpoint, against the real RabbitMQ."""

import json
import threading
import time
from pathlib import Path

import pika
import pytest

from tests.integration.amqp_support import (Forwarder, blocking_connection, get_one, health,
                                            metrics, requires_rabbitmq, suffix, wait_until)
from tests.integration.broker_process import ROOT, BrokerProcess

pytestmark = requires_rabbitmq

PLUGINS = Path(__file__).parent / "amqp_plugins"

CONFIG = """
name: amqp-test
http:
  listen: "${{BROKER_LISTEN:tcp:0:interface=127.0.0.1}}"
services:
  paths: [{root}/plugins, {plugins}]
security:
  - {{name: admin, type: basic_auth, username: admin, password: "${{BROKER_ADMIN_PASSWORD:}}"}}
connections:
  - name: rabbit
    type: amqp
    host: 127.0.0.1
    port: {port}
    username: guest
    password: guest
    connection_name: amqp-test-{s}
    reconnect_initial: 0.1s
    reconnect_max: 1s
    exchanges:
      - {{name: t.x.{s}, type: topic, durable: false, auto_delete: true}}
    queues:
      - {{name: t.echo.{s}, durable: false, auto_delete: false}}
      - {{name: t.headers.{s}, durable: false}}
      - {{name: t.fail.{s}, durable: false}}
      - name: t.out.{s}
        durable: false
        bindings: [{{exchange: t.x.{s}, routing_key: "out.#"}}]
outgoing:
  - {{name: demo, type: amqp, connection: rabbit, exchange: t.x.{s}, routing_key: out.default,
     max_outbox: {max_outbox}, publish_timeout: {publish_timeout}}}
channels:
  - {{name: echo, type: amqp, connection: rabbit, queue: t.echo.{s}, service: demo.echo,
     dead_letter_routing_key: t.dead.{s}, consumers: 2, prefetch: 10}}
  - {{name: headers, type: amqp, connection: rabbit, queue: t.headers.{s},
     service: test.amqp.headers, dead_letter_routing_key: t.dead.{s}}}
  - {{name: fail, type: amqp, connection: rabbit, queue: t.fail.{s}, service: test.amqp.fail,
     max_retries: 2, retry_delay: 1s, dead_letter_routing_key: t.faildead.{s},
     setup_retry: 0.2s}}
  - {{name: publish, type: http, path: /broker/amqp/publish, service: broker.amqp.publish,
     methods: [POST], security: admin}}
"""


def write_config(path, s, port=5672, max_outbox=10000, publish_timeout="30s"):
    path.write_text(CONFIG.format(root=ROOT, plugins=PLUGINS, s=s, port=port,
                                  max_outbox=max_outbox, publish_timeout=publish_timeout))
    return path


def delete_topology(s):
    connection = blocking_connection()
    channel = connection.channel()
    for queue in ("echo", "headers", "fail", "out", "dead", "faildead"):
        channel.queue_delete(f"t.{queue}.{s}")
    channel.exchange_delete(f"t.x.{s}")
    connection.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    s = suffix()
    config = write_config(tmp_path_factory.mktemp("amqp") / "amqp.yaml", s)
    broker = BrokerProcess(config=config).start()
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        connection = blocking_connection()
        yield broker, connection.channel(), s
        connection.close()
    finally:
        broker.stop()
        delete_topology(s)


def rpc(channel, queue, body, **properties):
    """Publish with reply_to/correlation_id like any RPC client; the reply (properties, body)."""
    import pika
    reply_queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, body, pika.BasicProperties(
        reply_to=reply_queue, correlation_id="corr-1", **properties))
    return get_one(channel, reply_queue)


def test_a_consumed_message_runs_the_service_and_is_acked(env):
    broker, channel, s = env
    before = metrics(broker, "amqp.channel.echo").get("acked", 0)
    channel.basic_publish("", f"t.echo.{s}", b'{"text": "hi", "repeat": 2}')
    assert wait_until(lambda: metrics(broker, "amqp.channel.echo")["acked"] == before + 1)
    assert channel.queue_declare(f"t.echo.{s}", passive=True).method.message_count == 0


def test_consumers_and_prefetch_are_applied(env):
    broker, channel, s = env
    assert health(broker)[1]["checks"]["amqp.channel.echo"]["consumers"] == 2
    assert channel.queue_declare(f"t.echo.{s}", passive=True).method.consumer_count == 2
    before = metrics(broker, "amqp.channel.echo")["acked"]
    for n in range(50):
        channel.basic_publish("", f"t.echo.{s}", json.dumps({"text": str(n)}).encode())
    assert wait_until(lambda: metrics(broker, "amqp.channel.echo")["acked"] == before + 50)


def test_reply_to_makes_it_rpc(env):
    broker, channel, s = env
    reply = rpc(channel, f"t.echo.{s}", b'{"text": "ab", "repeat": 3}')
    assert reply is not None, broker.output
    properties, body = reply
    assert json.loads(body) == {"text": "ababab"}
    assert properties.correlation_id == "corr-1"
    assert properties.content_type == "application/json"


def test_message_properties_map_into_the_request(env):
    broker, channel, s = env
    properties, body = rpc(channel, f"t.headers.{s}", b'{"a": 1}', message_id="m-1",
                           content_type="application/json", app_id="tests",
                           headers={"X-Custom": "yes"})
    answer = json.loads(body)
    headers = answer["headers"]
    assert headers["x-custom"] == "yes"
    assert headers["message-id"] == "m-1"
    assert headers["correlation-id"] == "corr-1"
    assert headers["content-type"] == "application/json"
    assert headers["app-id"] == "tests"
    assert headers["redelivered"] is False
    assert headers["routing-key"] == f"t.headers.{s}"
    assert answer["channel"] == "headers"
    assert answer["cid"] == "corr-1"
    assert answer["input"] == {"a": 1}


def test_a_bad_message_is_dead_lettered_with_its_reason(env):
    broker, channel, s = env
    channel.basic_publish("", f"t.echo.{s}", b'{"repeat": "many"}')
    dead = get_one(channel, f"t.dead.{s}")
    assert dead is not None, broker.output
    properties, body = dead
    assert body == b'{"repeat": "many"}'
    assert properties.headers["x-broker-error-code"] == "invalid_input"
    fields = {e["field"] for e in json.loads(properties.headers["x-broker-errors"])}
    assert fields == {"text", "repeat"}
    assert properties.headers["x-broker-channel"] == "echo"
    assert properties.headers["x-broker-service"] == "demo.echo"


def test_a_message_without_ids_gets_a_cid_for_the_log_and_its_dead_letter(env):
    """No correlation or message id: the broker makes a cid, logged and sent with the dead letter."""
    broker, channel, s = env
    channel.basic_publish("", f"t.echo.{s}", b'{"colour": "no-ids"}')
    dead = get_one(channel, f"t.dead.{s}")
    assert dead is not None, broker.output
    cid = dead[0].headers["x-broker-cid"]
    assert wait_until(lambda: f"amqp:echo: bad message (cid {cid})" in broker.output)
    assert "cid None" not in broker.output


def test_malformed_json_is_dead_lettered_and_an_rpc_caller_gets_the_error(env):
    broker, channel, s = env
    reply = rpc(channel, f"t.echo.{s}", b"{not json")
    assert reply is not None
    properties, body = reply
    assert json.loads(body)["code"] == "bad_request"
    assert properties.headers["x-broker-error-code"] == "bad_request"
    dead = get_one(channel, f"t.dead.{s}")
    assert dead is not None and dead[1] == b"{not json"
    assert dead[0].headers["x-broker-error-code"] == "bad_request"


def test_json_the_guarded_decoder_refuses_is_dead_lettered_naming_the_problem(env):
    """A repeated key (orjson kept the last one) and a huge integer (a 500 from the service)."""
    broker, channel, s = env
    channel.basic_publish("", f"t.echo.{s}", b'{"text": "a", "text": "b"}')
    channel.basic_publish("", f"t.echo.{s}", b'{"text": "a", "repeat": %s}' % (b"9" * 400))
    dead = [get_one(channel, f"t.dead.{s}"), get_one(channel, f"t.dead.{s}")]
    assert None not in dead, broker.output
    errors = {properties.headers["x-broker-error-code"]: json.loads(properties.headers["x-broker-errors"])
              for properties, _ in dead}   # two consumers: in either order
    assert errors == {"bad_request": [{"field": "text", "problem": "is given twice"}],
                      "invalid_input": [{"field": "repeat", "problem": "must be at most 1000"}]}


def test_a_service_error_is_retried_then_dead_lettered(env):
    broker, channel, s = env
    before = metrics(broker, "amqp.channel.fail")
    channel.basic_publish("", f"t.fail.{s}", b'{"n": 1}')
    dead = get_one(channel, f"t.faildead.{s}")
    assert dead is not None, broker.output
    properties, body = dead
    assert body == b'{"n": 1}'
    assert properties.headers["x-broker-error-code"] == "service_error"
    assert properties.headers["x-broker-retries"] == 2
    after = metrics(broker, "amqp.channel.fail")
    assert after["retried"] - before.get("retried", 0) == 2
    assert after["service_errors"] - before.get("service_errors", 0) == 3
    assert "this service always fails" in broker.output  # the log has the details


def test_a_failing_services_message_waits_retry_delay_before_each_retry(env):
    """retry_delay 1s, doubling: retried after 1 s and 2 s more, then dead-lettered with its
    reason; meanwhile it stays unacked (not in the queue, not in the dead-letter queue)."""
    broker, channel, s = env
    before = metrics(broker, "amqp.channel.fail")
    started = time.monotonic()
    channel.basic_publish("", f"t.fail.{s}", b'{"n": 7}',
                          pika.BasicProperties(message_id="delayed-7"))
    assert wait_until(lambda: metrics(broker, "amqp.channel.fail")["waiting"] == 1)
    assert channel.basic_get(f"t.faildead.{s}", auto_ack=True)[0] is None
    assert channel.queue_declare(f"t.fail.{s}", passive=True).method.message_count == 0
    dead = get_one(channel, f"t.faildead.{s}", timeout=30)
    assert dead is not None, broker.output
    assert time.monotonic() - started >= 2.9  # 1 s + 2 s of retry delay, at least
    properties, body = dead
    assert (body, properties.message_id) == (b'{"n": 7}', "delayed-7")
    assert properties.headers["x-broker-error-code"] == "service_error"
    assert properties.headers["x-broker-error"] == "Internal error"
    assert properties.headers["x-broker-retries"] == 2
    after = metrics(broker, "amqp.channel.fail")
    assert after["retried"] - before.get("retried", 0) == 2
    assert after["waiting"] == 0 and after["in_flight"] == 0


def post_publish(broker, body):
    status, _, answer = broker.request(
        "POST", "/broker/amqp/publish", json.dumps(body),
        {"Authorization": basic(broker.admin_password)})
    return status, json.loads(answer)


def basic(password):
    from base64 import b64encode
    return "Basic " + b64encode(f"admin:{password}".encode()).decode()


def test_the_publish_endpoint_puts_a_message_on_a_queue(env):
    broker, channel, s = env
    status, answer = post_publish(broker, {"outgoing": "demo", "routing_key": "out.1",
                                           "data": {"k": "v"}, "headers": {"x-h": "1"}})
    assert status == 200, answer
    assert answer["status"] == "confirmed"
    got = get_one(channel, f"t.out.{s}")
    assert got is not None
    properties, body = got
    assert json.loads(body) == {"k": "v"}
    assert properties.headers["x-h"] == "1"
    assert set(properties.headers) == {"x-h", "traceparent"}  # the publishing call's W3C trace
    assert properties.delivery_mode == 2
    assert properties.message_id == answer["message_id"]


def test_the_publish_endpoint_needs_credentials(env):
    broker, _, _ = env
    status, _, _ = broker.request("POST", "/broker/amqp/publish",
                                  '{"outgoing": "demo", "data": 1}')
    assert status == 401


def test_an_unroutable_mandatory_publish_fails(env):
    broker, _, _ = env
    status, answer = post_publish(broker, {"outgoing": "demo", "routing_key": "nowhere",
                                           "data": "x"})
    assert status == 422
    assert answer["code"] == "amqp_unroutable"
    assert "nowhere" in answer["details"]


def test_an_unknown_outgoing_is_a_client_error(env):
    broker, _, _ = env
    status, answer = post_publish(broker, {"outgoing": "nope", "data": "x"})
    assert status == 400
    assert answer["errors"][0]["field"] == "outgoing"


def test_a_deleted_queue_is_reported_and_consumed_again_once_it_is_back(env):
    broker, channel, s = env
    channel.queue_delete(f"t.fail.{s}")
    assert wait_until(lambda: f"queue t.fail.{s}" in  # cancelled, then cannot consume (404)
                      health(broker)[1]["checks"]["amqp.channel.fail"].get("last_error", ""))
    assert health(broker)[0] == 503
    channel.queue_declare(f"t.fail.{s}")
    assert wait_until(lambda: health(broker)[0] == 200), broker.output
    before = metrics(broker, "amqp.channel.fail")["received"]
    channel.basic_publish("", f"t.fail.{s}", b'{"n": 2}')
    assert wait_until(lambda: metrics(broker, "amqp.channel.fail")["received"] > before)


def test_refused_at_startup_keeps_retrying_outbox_waits_then_sends(tmp_path):
    """Nothing listens at first: the broker starts, says so, queues publishes, sends on connect."""
    s = suffix()
    forwarder = Forwarder()
    config = write_config(tmp_path / "amqp.yaml", s, port=forwarder.port, max_outbox=1)
    broker = BrokerProcess(config=config).start()
    try:
        status, report = health(broker)
        assert status == 503
        assert report["checks"]["amqp.connection.rabbit"]["state"] in ("connecting", "waiting")
        assert broker.wait_for_log("retrying", timeout=10), broker.output

        answers = []
        waiting = threading.Thread(target=lambda: answers.append(post_publish(
            broker, {"outgoing": "demo", "routing_key": "out.late", "data": {"n": 1}})))
        waiting.start()
        assert wait_until(lambda: metrics(broker, "amqp.outgoing.demo").get("outbox") == 1)
        status, answer = post_publish(broker, {"outgoing": "demo", "data": {"n": 2}})
        assert status == 503 and answer["code"] == "amqp_outbox_full"
        assert metrics(broker, "amqp.outgoing.demo")["outbox_full"] == 1

        forwarder.start()  # RabbitMQ "comes up"
        waiting.join(30)
        assert answers and answers[0][0] == 200, (answers, broker.output)
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        connection = blocking_connection()
        got = get_one(connection.channel(), f"t.out.{s}")
        connection.close()
        assert got is not None and json.loads(got[1]) == {"n": 1}
    finally:
        broker.stop()
        forwarder.stop()
        delete_topology(s)


def test_a_dropped_connection_is_reestablished_and_consuming_resumes(tmp_path):
    s = suffix()
    forwarder = Forwarder().start()
    config = write_config(tmp_path / "amqp.yaml", s, port=forwarder.port)
    broker = BrokerProcess(config=config).start()
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        forwarder.stop()  # cut every connection and refuse new ones
        assert wait_until(lambda: health(broker)[0] == 503), broker.output
        forwarder.start()
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        assert metrics(broker, "amqp.connection.rabbit")["connects"] >= 2
        connection = blocking_connection()
        channel = connection.channel()
        reply = rpc(channel, f"t.echo.{s}", b'{"text": "again"}')
        connection.close()
        assert reply is not None and json.loads(reply[1]) == {"text": "again"}
    finally:
        broker.stop()
        forwarder.stop()
        delete_topology(s)


@pytest.mark.parametrize("problem, connection, expected", [
    ("wrong password", "password: not-the-password", "auth"),
    ("topology clash", "password: guest\n    queues: [{{name: {queue}, durable: true}}]",
     "PRECONDITION_FAILED"),
])
def test_a_connection_that_cannot_be_set_up_is_retried_and_reported(tmp_path, problem, connection,
                                                                   expected):
    queue = f"t.clash.{suffix()}"
    raw = blocking_connection()
    raw.channel().queue_declare(queue, durable=False)  # the config says durable: clash
    config = tmp_path / "bad.yaml"
    config.write_text(f"""
name: amqp-bad
http:
  listen: "${{BROKER_LISTEN:tcp:0:interface=127.0.0.1}}"
connections:
  - name: rabbit
    type: amqp
    username: guest
    {connection.format(queue=queue)}
    reconnect_initial: 0.1s
    reconnect_max: 0.5s
""")
    broker = BrokerProcess(config=config).start()
    try:
        assert wait_until(lambda: broker.output.count("could not set up the connection") >= 2), \
            broker.output
        status, report = health(broker)
        assert status == 503, report
        check = report["checks"]["amqp.connection.rabbit"]
        assert check["state"] == "waiting" and expected.lower() in check["last_error"].lower(), check
        assert "Traceback" not in broker.output
    finally:
        broker.stop()
        raw.channel().queue_delete(queue)
        raw.close()


def test_on_shutdown_messages_in_progress_finish_and_are_acked(tmp_path):
    """SIGTERM while a slow service runs: it finishes, its publish is confirmed, the message acked."""
    s = suffix()
    config = tmp_path / "drain.yaml"
    config.write_text(f"""
name: amqp-drain
http:
  listen: "${{BROKER_LISTEN:tcp:0:interface=127.0.0.1}}"
services:
  paths: [{PLUGINS}]
connections:
  - name: rabbit
    type: amqp
    username: guest
    password: guest
    drain_timeout: 30s
    queues: [{{name: t.in.{s}, durable: false}}, {{name: t.out.{s}, durable: false}}]
outgoing:
  - {{name: relay, type: amqp, connection: rabbit}}
channels:
  - {{name: relay, type: amqp, connection: rabbit, queue: t.in.{s}, service: test.amqp.relay,
     dead_letter_routing_key: t.dead.{s}}}
""")
    broker = BrokerProcess(config=config).start()
    connection = blocking_connection()
    channel = connection.channel()
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        channel.basic_publish("", f"t.in.{s}", json.dumps(
            {"tag": 1, "to": f"t.out.{s}", "delay": 2}).encode())
        assert wait_until(lambda: metrics(broker, "amqp.channel.relay")["in_flight"] == 1)
        broker.stop(timeout=40)
        got = get_one(channel, f"t.out.{s}", timeout=5)
        assert got is not None and json.loads(got[1])["tag"] == 1, broker.output
        ready = channel.queue_declare(f"t.in.{s}", passive=True).method.message_count
        assert ready == 0, "the message was not acked before the connection closed"
    finally:
        broker.stop()
        for queue in ("in", "out", "dead"):
            channel.queue_delete(f"t.{queue}.{s}")
        connection.close()


def test_a_publishing_channel_closed_by_rabbitmq_is_reopened_and_nothing_is_lost(tmp_path):
    """Dead letters go to an exchange that does not exist: RabbitMQ closes the channel's
    publishing channel (404 NOT_FOUND) at each one.  It is reopened each time; retries go on;
    the originals are requeued, never acked; once the exchange exists every tagged message
    arrives dead-lettered with its reason."""
    s = suffix()
    config = tmp_path / "dlx.yaml"
    config.write_text(f"""
name: amqp-dlx
http:
  listen: "${{BROKER_LISTEN:tcp:0:interface=127.0.0.1}}"
services:
  paths: [{PLUGINS}]
connections:
  - name: rabbit
    type: amqp
    username: guest
    password: guest
    queues: [{{name: t.pc.{s}, durable: false}}, {{name: t.pc.dead.{s}, durable: false}}]
channels:
  - {{name: flaky, type: amqp, connection: rabbit, queue: t.pc.{s}, service: test.amqp.fail,
     max_retries: 1, retry_delay: 0, dead_letter_exchange: t.pc.dlx.{s},
     dead_letter_routing_key: dead, setup_retry: 0.3s, prefetch: 20}}
""")
    tags = [f"tag-{n}" for n in range(20)]
    broker = BrokerProcess(config=config).start()
    connection = blocking_connection()
    channel = connection.channel()
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        for tag in tags:
            channel.basic_publish("", f"t.pc.{s}", json.dumps({"tag": tag}).encode(),
                                  pika.BasicProperties(message_id=tag))
        # Closed by the first dead letter, reopened, closed again by the next one...
        assert wait_until(lambda: metrics(broker, "amqp.channel.flaky")["publisher_closed"] >= 3,
                          timeout=60), broker.output
        counters = metrics(broker, "amqp.channel.flaky")
        assert counters["dead_letter_failed"] >= 1 and counters["dead_lettered"] == 0
        assert counters["retried"] >= 1

        channel.exchange_declare(f"t.pc.dlx.{s}", "direct", durable=False)
        channel.queue_bind(f"t.pc.dead.{s}", f"t.pc.dlx.{s}", "dead")
        seen = {}

        def all_dead_lettered():
            got = channel.basic_get(f"t.pc.dead.{s}", auto_ack=True)
            while got[0] is not None:
                _, properties, _ = got
                seen[properties.message_id] = properties.headers
                got = channel.basic_get(f"t.pc.dead.{s}", auto_ack=True)
            return set(seen) == set(tags)

        assert wait_until(all_dead_lettered, timeout=60), (sorted(set(tags) - set(seen)),
                                                           broker.output)
        for headers in seen.values():
            assert headers["x-broker-error-code"] == "service_error"
            assert headers["x-broker-retries"] == 1 and headers["x-broker-channel"] == "flaky"
        assert wait_until(lambda: metrics(broker, "amqp.channel.flaky")["in_flight"] == 0)
        assert channel.queue_declare(f"t.pc.{s}", passive=True).method.message_count == 0
        status, report = health(broker)
        assert status == 200 and report["checks"]["amqp.channel.flaky"]["publisher"] == "open"
        counters = metrics(broker, "amqp.channel.flaky")
        assert counters["dead_lettered"] >= len(tags) and counters["requeued"] >= 1
        assert "Unhandled" not in broker.output  # (the service's own failures are logged)
        assert "taking a message failed" not in broker.output
        assert "settling a message failed" not in broker.output
    finally:
        broker.stop()
        for queue in (f"t.pc.{s}", f"t.pc.dead.{s}"):
            channel.queue_delete(queue)
        channel.exchange_delete(f"t.pc.dlx.{s}")
        connection.close()
