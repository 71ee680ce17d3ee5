"""A service timeout on an AMQP channel: the message is dead-lettered with the timeout reason."""

import json

import pytest

from tests.integration.amqp_support import (blocking_connection, get_one, health, requires_rabbitmq,
                                            suffix, wait_until)
from tests.integration.broker_process import ROOT, BrokerProcess

pytestmark = requires_rabbitmq

CONFIG = """
name: tasks-amqp-test
http:
  listen: "${{BROKER_LISTEN:tcp:0:interface=127.0.0.1}}"
services:
  paths: [{root}/tests/integration/plugins/tasks_probe.py]
connections:
  - name: rabbit
    type: amqp
    host: 127.0.0.1
    port: 5672
    username: guest
    password: guest
    connection_name: tasks-amqp-test-{s}
    queues:
      - {{name: t.bounded.{s}, durable: false}}
channels:
  - {{name: bounded, type: amqp, connection: rabbit, queue: t.bounded.{s}, service: tasks.bounded,
     max_retries: 0, dead_letter_routing_key: t.bounded.dead.{s}}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    s = suffix()
    config = tmp_path_factory.mktemp("tasks-amqp") / "amqp.yaml"
    config.write_text(CONFIG.format(root=ROOT, s=s))
    broker = BrokerProcess(config=config).start()
    connection = blocking_connection()
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        yield broker, connection.channel(), s
    finally:
        broker.stop()
        channel = connection.channel()
        for queue in (f"t.bounded.{s}", f"t.bounded.dead.{s}"):
            channel.queue_delete(queue)
        connection.close()


def test_a_service_timeout_is_dead_lettered_with_the_timeout_reason(env):
    broker, channel, s = env
    channel.basic_publish("", f"t.bounded.{s}", json.dumps({"seconds": 1}).encode())
    dead = get_one(channel, f"t.bounded.dead.{s}")
    assert dead is not None, broker.output
    properties, body = dead
    assert json.loads(body) == {"seconds": 1}
    assert properties.headers["x-broker-error-code"] == "timeout"
    assert "tasks.bounded timed out after 0.2s" in properties.headers["x-broker-error"]
