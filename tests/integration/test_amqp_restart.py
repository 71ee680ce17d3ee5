"""RabbitMQ restarts mid-stream: nothing accepted is lost (duplicates allowed, counted).

N tagged messages go in over HTTP (``broker.amqp.publish`` → queue ``in``), are
consumed by an ``amqp`` channel into a service that publishes each through an
outgoing connection to queue ``out``, while RabbitMQ drops the broker's
connections (``rabbitmqctl close_all_connections``) and is stopped and started
(``stop_app``/``start_app``).  A raw consumer then reads ``out`` (and the
dead-letter queue) and accounts each tag as delivered, duplicated or lost
(after rabbitmq/jepsen's ``total_queue``).  Runs in a vhost of its own so only
the test's connections are dropped; ``stop_app`` does stop the whole node
briefly (``start_app`` runs in a ``finally``), so it runs only when asked:
``BROKER_TEST_RESTART=1`` (``.ci/run`` sets it).
"""

import collections
import http.client
import json
import os
import threading
import time
from base64 import b64encode
from pathlib import Path

import pytest

from tests.integration.amqp_support import (blocking_connection, health, metrics, rabbitmqctl,
                                            requires_rabbitmq, suffix, wait_until)
from tests.integration.broker_process import ROOT, BrokerProcess

pytestmark = [
    pytest.mark.skipif(os.environ.get("BROKER_TEST_RESTART") != "1",
                       reason="stops and starts the RabbitMQ app for everyone using it: "
                              "set BROKER_TEST_RESTART=1 to run it (.ci/run does)"),
    requires_rabbitmq,
]

N = 1500
SENDERS = 32
PACE = 0.3  # seconds each sender waits between messages: ~100 msgs/s, so restarts hit mid-stream
PLUGINS = Path(__file__).parent / "amqp_plugins"

CONFIG = """
name: amqp-restart
http:
  listen: "${{BROKER_LISTEN:tcp:0:interface=127.0.0.1}}"
services:
  paths: [{root}/plugins, {plugins}]
security:
  - {{name: admin, type: basic_auth, username: admin, password: "${{BROKER_ADMIN_PASSWORD:}}"}}
connections:
  - name: rabbit
    type: amqp
    vhost: {vhost}
    username: guest
    password: guest
    heartbeat: 5s
    reconnect_initial: 0.2s
    reconnect_max: 2s
    queues:
      - {{name: in}}
      - {{name: out}}
outgoing:
  - {{name: ingest, type: amqp, connection: rabbit, routing_key: in, publish_timeout: 120s}}
  - {{name: relay, type: amqp, connection: rabbit, publish_timeout: 120s}}
channels:
  - {{name: relay, type: amqp, connection: rabbit, queue: in, service: test.amqp.relay,
     prefetch: 50, max_retries: 20, retry_delay: 0.2s, retry_delay_max: 2s,
     dead_letter_routing_key: dead}}
  - {{name: publish, type: http, path: /broker/amqp/publish, service: broker.amqp.publish,
     methods: [POST], security: admin}}
"""


@pytest.fixture
def vhost():
    name = f"broker-restart-{suffix()}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def test_restarts_lose_nothing(tmp_path, vhost):
    _VHOST["name"] = vhost
    config = tmp_path / "restart.yaml"
    config.write_text(CONFIG.format(root=ROOT, plugins=PLUGINS, vhost=vhost))
    broker = BrokerProcess(config=config).start()
    auth = "Basic " + b64encode(f"admin:{broker.admin_password}".encode()).decode()
    accepted, errors = set(), collections.Counter()
    next_tag = iter(range(N))
    lock = threading.Lock()

    def send(tag):
        body = json.dumps({"outgoing": "ingest", "data": {"tag": tag, "to": "out", "delay": 0.2}})
        while True:  # a publisher re-sends what was not confirmed (duplicates possible)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=180)
                conn.request("POST", "/broker/amqp/publish", body, {"Authorization": auth})
                status = conn.getresponse().status
                conn.close()
            except OSError as exc:
                status = type(exc).__name__
            if status == 200:
                time.sleep(PACE)
                return
            with lock:
                errors[status] += 1
            time.sleep(0.2)

    def sender():
        while True:
            with lock:
                tag = next(next_tag, None)
            if tag is None:
                return
            send(tag)
            with lock:
                accepted.add(tag)

    def sent():
        with lock:
            return len(accepted)

    events = []
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: sent() >= N // 5, timeout=120)
            events.append(("close_all_connections", sent()))
            rabbitmqctl("close_all_connections", "-p", vhost, "restart test")
            wait_until(lambda: sent() >= 2 * N // 5, timeout=120)
            events.append(("stop_app", sent()))
            rabbitmqctl("stop_app")
            time.sleep(2)
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        events.append(("start_app", sent()))
        wait_until(lambda: sent() >= 3 * N // 4, timeout=120)
        events.append(("close_all_connections", sent()))
        rabbitmqctl("close_all_connections", "-p", vhost, "restart test")
        for thread in threads:
            thread.join(300)
        assert sent() == N, f"only {sent()} of {N} accepted; errors {dict(errors)}"

        # Wait for the relay to finish, then account for every tag.
        assert wait_until(lambda: _quiet(broker), timeout=120), broker.output[-5000:]
        delivered, dead = _drain(vhost, "out"), _drain(vhost, "dead")
        connects = metrics(broker, "amqp.connection.rabbit")["connects"]
    finally:
        broker.stop()
    counts = collections.Counter(delivered)
    lost = accepted - set(counts) - set(dead)
    duplicated = sum(n - 1 for n in counts.values())
    report = (f"restart test: {N} accepted, {len(set(counts))} delivered, {duplicated} duplicates, "
              f"{len(dead)} dead-lettered, {len(lost)} lost; HTTP retries {dict(errors)}; "
              f"events (at messages accepted) {events}; connects {connects}; counters {metrics_snapshot}")
    print(report)
    assert not lost, report
    assert not dead, report
    assert connects >= 4, report  # the first connect and one after each of the 3 disruptions


metrics_snapshot = {}


def _quiet(broker):
    """True when the relay channel has nothing in progress and its queue is empty."""
    try:
        relay = metrics(broker, "amqp.channel.relay")
        ingest = metrics(broker, "amqp.outgoing.relay")
    except (OSError, AssertionError):
        return False
    metrics_snapshot.update(relay=relay, outgoing_relay=ingest,
                            outgoing_ingest=metrics(broker, "amqp.outgoing.ingest"))
    if relay.get("in_flight") or ingest.get("outbox") or ingest.get("in_flight"):
        return False
    return health(broker)[0] == 200 and _depth("in") == 0


_VHOST = {}


def _depth(queue):
    connection = blocking_connection(_VHOST["name"])
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def _drain(vhost, queue):
    """Every tag left in ``queue``."""
    connection = blocking_connection(vhost)
    channel = connection.channel()
    tags = []
    try:
        channel.queue_declare(queue, durable=True)
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return tags
            tags.append(json.loads(body)["tag"])
    finally:
        connection.close()
