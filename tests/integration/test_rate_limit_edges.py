"""Rate limits on the other channels of a real broker process: a WebSocket connection gets
error frames then is closed (4029) for sending too fast; AMQP messages over a limit are
dead-lettered (or held and requeued, by config); ZeroMQ messages over a limit are dropped and
counted; the handshake honours a definition's address allow-list."""

import json
import textwrap
import uuid

import pytest
import zmq
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.amqp_support import (blocking_connection, get_one, metrics,
                                            rabbitmq_reachable)
from tests.integration.broker_process import BrokerProcess, free_port, wait_for
from tests.integration.ws_client import WSClient

SERVICE = '''
from broker import Service


class Echo(Service):
    name = "test.echo"

    def handle(self):
        self.response.payload = {"echo": self.request.input}
'''

CONFIG = '''
name: limit-edges
http: {{listen: "tcp:0:interface=127.0.0.1"}}
services: {{paths: [echo_service.py]}}
security:
  - {{name: far, type: apikey, key: far-key, allow_from: ["192.0.2.0/24"]}}
connections:
  - {{name: rabbit, type: amqp, username: guest, password: guest,
     queues: [{{name: "{q}.dl", durable: false}}, {{name: "{q}.rq", durable: false}},
              {{name: "{q}.replies", durable: false}}]}}
channels:
  - {{name: dl, type: amqp, connection: rabbit, queue: "{q}.dl", service: test.echo,
     rate_limit: [{{rate: 1, per: 1h, by: channel}}], dead_letter_routing_key: "{q}.dl.dead"}}
  - {{name: rq, type: amqp, connection: rabbit, queue: "{q}.rq", service: test.echo,
     rate_limit: [{{rate: 1, per: 1s, by: channel}}], on_rate_limit: requeue,
     dead_letter_routing_key: "{q}.rq.dead"}}
  - {{name: pull, type: zmq_pull, bind: "tcp://127.0.0.1:{zmq_port}", service: test.echo,
     rate_limit: [{{rate: 1, per: 1h, by: channel}}]}}
pubsub:
  permissions:
    anonymous: {{invoke: ["test.*"]}}
    far: {{invoke: ["test.*"]}}
  websocket:
    rate_limit: {{rate: 2, per: 1h, close_after: 3}}
'''


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    if not rabbitmq_reachable():
        pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672")
    folder = tmp_path_factory.mktemp("limit-edges")
    q = f"limit-edges-{uuid.uuid4().hex[:8]}"
    zmq_port = free_port()
    (folder / "echo_service.py").write_text(textwrap.dedent(SERVICE))
    (folder / "broker.yaml").write_text(CONFIG.format(q=q, zmq_port=zmq_port))
    process = BrokerProcess(config=folder / "broker.yaml").start()
    yield process, q, zmq_port
    process.stop()


def test_a_websocket_sending_too_fast_gets_errors_then_is_closed(edges):
    process = edges[0]
    with WSClient(process.port) as client:
        assert client.request("invoke", service="test.echo", data={})["op"] == "ok"
        assert client.request("ping")["op"] == "ok"
        for _ in range(2):
            client.send({"op": "ping"})
            frame = client.recv()
            assert (frame["op"], frame["code"]) == ("error", "too_many_requests")
            assert frame["retry_after"] > 0
        client.send({"op": "ping"})
        with pytest.raises(ConnectionClosed) as closed:
            client.recv()
        assert closed.value.rcvd.code == 4029


def test_the_handshake_honours_a_definitions_address_list(edges):
    with pytest.raises(InvalidStatus) as refused:
        with WSClient(edges[0].port, headers={"X-API-Key": "far-key"}):
            pass
    assert refused.value.response.status_code == 403


def _publish(queue, n):
    import pika
    connection = blocking_connection()
    channel = connection.channel()
    for i in range(n):
        channel.basic_publish("", queue, json.dumps({"n": i}).encode(), pika.BasicProperties(
            content_type="application/json", reply_to=f"{queue.rpartition('.')[0]}.replies"))
    return connection, channel


def _queue_exists(name):
    """Whether RabbitMQ has queue ``name`` (a passive declare on a connection of its own)."""
    import pika
    connection = blocking_connection()
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def test_amqp_over_the_limit_is_dead_lettered_or_requeued_by_config(edges):
    process, q, _ = edges
    connection, channel = _publish(f"{q}.dl", 2)
    try:
        wait_for(lambda: _queue_exists(f"{q}.dl.dead"), "the dead-letter queue")  # made at the first
        dead = get_one(channel, f"{q}.dl.dead")
        assert dead is not None
        assert dead[0].headers["x-broker-error-code"] == "too_many_requests"
        replies = [get_one(channel, f"{q}.replies") for _ in range(2)]
        codes = sorted(json.loads(r[1]).get("code", "ok") for r in replies)
        assert codes == ["ok", "too_many_requests"]
    finally:
        connection.close()
    connection, channel = _publish(f"{q}.rq", 2)
    try:
        replies = [get_one(channel, f"{q}.replies", timeout=20) for _ in range(2)]
        assert all(r is not None and "code" not in json.loads(r[1]) for r in replies)
        assert metrics(process, "amqp.channel.rq")["rate_limit_requeued"] >= 1
    finally:
        connection.close()


def test_zeromq_over_the_limit_is_dropped_and_counted(edges):
    process, _, zmq_port = edges
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.setsockopt(zmq.LINGER, 1000)
    try:
        socket.connect(f"tcp://127.0.0.1:{zmq_port}")
        for i in range(3):
            socket.send(json.dumps({"n": i}).encode())
        wait_for(lambda: metrics(process, "zmq.channel.pull").get("received", 0) >= 3,
                 "three messages received")
        counts = metrics(process, "zmq.channel.pull")
        assert (counts["succeeded"], counts["rate_limited"]) == (1, 2)
    finally:
        socket.close()
        context.term()
