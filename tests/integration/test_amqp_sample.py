"""The sample etc/examples/amqp.yaml works as docs/amqp.md shows."""

import json

from tests.integration.amqp_support import (blocking_connection, get_one, health, metrics,
                                            requires_rabbitmq, wait_until)
from tests.integration.broker_process import ROOT, BrokerProcess
from tests.integration.test_amqp import basic, rpc

pytestmark = requires_rabbitmq


def test_the_sample_config_consumes_answers_and_publishes():
    broker = BrokerProcess(config=ROOT / "etc" / "examples" / "amqp.yaml",
                           env={"BROKER_AMQP_PASSWORD": "guest"}).start()
    connection = blocking_connection()
    channel = connection.channel()
    try:
        assert wait_until(lambda: health(broker)[0] == 200), broker.output
        # HTTP → outgoing "demo" → exchange broker.demo, "echo.1" → broker.demo.echo → demo.echo
        status, _, body = broker.request(
            "POST", "/broker/amqp/publish",
            json.dumps({"outgoing": "demo", "routing_key": "echo.1", "data": {"text": "hi"}}),
            {"Authorization": basic(broker.admin_password)})
        assert status == 200, body
        assert wait_until(lambda: metrics(broker, "amqp.channel.demo.echo.amqp")["acked"] == 1)
        # RPC straight to the queue
        reply = rpc(channel, "broker.demo.echo", b'{"text": "ab", "repeat": 2}')
        assert reply is not None and json.loads(reply[1]) == {"text": "abab"}
        # The outgoing's default routing key lands in broker.demo.out
        status, _, body = broker.request(
            "POST", "/broker/amqp/publish", json.dumps({"outgoing": "demo", "data": [1, 2]}),
            {"Authorization": basic(broker.admin_password)})
        assert status == 200, body
        got = get_one(channel, "broker.demo.out")
        assert got is not None and json.loads(got[1]) == [1, 2]
        # A bad message is dead-lettered to broker.demo.dead
        channel.basic_publish("broker.demo", "echo.bad", b'{"text": 1, "x": 2}')
        dead = get_one(channel, "broker.demo.dead")
        assert dead is not None and dead[0].headers["x-broker-error-code"] == "invalid_input"
    finally:
        broker.stop()
        for queue in ("broker.demo.echo", "broker.demo.out", "broker.demo.dead"):
            channel.queue_delete(queue)
        channel.exchange_delete("broker.demo")
        connection.close()
