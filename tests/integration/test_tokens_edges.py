"""A token the broker issued is accepted on every channel type, and refused alike once revoked:
HTTP (``Authorization: Bearer``), the WebSocket handshake (header or ``?token=``), AMQP
(an ``authorization`` message header) and ZeroMQ (a credentials frame).  A real broker
process, RabbitMQ and ZeroMQ."""

import base64
import json
import textwrap
import uuid

import pytest
import zmq
from websockets.exceptions import InvalidStatus

from tests.integration.amqp_support import blocking_connection, get_one, rabbitmq_reachable
from tests.integration.broker_process import BrokerProcess, free_port
from tests.integration.ws_client import WSClient

SECRET = "t" * 48
SERVICE = '''
from broker import Service


class WhoAmI(Service):
    name = "test.whoami"

    def handle(self):
        caller = self.request.caller
        self.response.payload = {"caller": caller, "roles": sorted(getattr(caller, "roles", ()))}
'''

CONFIG = '''
name: token-edges
http: {{listen: "tcp:0:interface=127.0.0.1"}}
services: {{paths: [whoami_service.py]}}
auth:
  tokens: {{secret: "{secret}", issuer: edges, ttl: 10m}}
security:
  - {{name: people, type: basic_auth, username: alice, password: pw, roles: [staff]}}
  - {{name: tokens, type: jwt}}
connections:
  - {{name: rabbit, type: amqp, username: guest, password: guest,
     queues: [{{name: "{queue}", durable: false}}, {{name: "{queue}.replies", durable: false}}]}}
channels:
  - {{name: who, type: http, path: /who, service: test.whoami, methods: [GET], security: tokens}}
  - {{name: who.amqp, type: amqp, connection: rabbit, queue: "{queue}", service: test.whoami,
     security: tokens, dead_letter_routing_key: "{queue}.dead"}}
  - {{name: who.zmq, type: zmq_router, bind: "tcp://127.0.0.1:{zmq_port}", service: test.whoami,
     security: tokens}}
pubsub:
  permissions:
    tokens: {{invoke: ["test.*"]}}
'''


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    if not rabbitmq_reachable():
        pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672")
    folder = tmp_path_factory.mktemp("token-edges")
    queue = f"token-edges-{uuid.uuid4().hex[:8]}"
    zmq_port = free_port()
    (folder / "whoami_service.py").write_text(textwrap.dedent(SERVICE))
    (folder / "broker.yaml").write_text(CONFIG.format(secret=SECRET, queue=queue,
                                                      zmq_port=zmq_port))
    process = BrokerProcess(config=folder / "broker.yaml").start()
    process.wait_for_log("who.amqp", timeout=20)
    yield process, queue, zmq_port
    process.stop()


def _token(process):
    basic = "Basic " + base64.b64encode(b"alice:pw").decode()
    status, headers, body = process.request("POST", "/broker/auth/token",
                                            headers={"Authorization": basic})
    assert status == 200 and headers["cache-control"] == "no-store"
    return json.loads(body)["access_token"]


def _http(process, token):
    status, _, body = process.request("GET", "/who", headers={"Authorization": f"Bearer {token}"})
    return status, json.loads(body)


def _ws(process, headers, path="/ws"):
    try:
        with WSClient(process.port, path=path, headers=headers) as client:
            return 101, client.request("invoke", service="test.whoami")["data"]
    except InvalidStatus as refused:
        return refused.response.status_code, None


def _amqp(queue, token):
    import pika
    connection = blocking_connection()
    try:
        channel = connection.channel()
        channel.basic_publish("", queue, json.dumps({}).encode(), pika.BasicProperties(
            reply_to=f"{queue}.replies", content_type="application/json",
            headers={"Authorization": f"Bearer {token}"}))
        reply = get_one(channel, f"{queue}.replies")
        assert reply is not None, "no reply"
        return json.loads(reply[1])
    finally:
        connection.close()


def _zmq(port, token):
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 15000)
    try:
        socket.connect(f"tcp://127.0.0.1:{port}")
        socket.send_multipart([token.encode(), b"{}"])
        return json.loads(socket.recv())
    finally:
        socket.close()
        context.term()


def test_one_token_is_accepted_on_every_channel_then_refused_everywhere_once_revoked(edges):
    process, queue, zmq_port = edges
    token = _token(process)
    me = {"caller": "alice", "roles": ["staff"]}
    assert _http(process, token) == (200, me)
    assert _ws(process, {"Authorization": f"Bearer {token}"}) == (101, me)
    assert _ws(process, {}, f"/ws?token={token}") == (101, me)
    assert _amqp(queue, token) == me
    assert _zmq(zmq_port, token) == me

    status, _, body = process.request("POST", "/broker/auth/revoke", json.dumps({"token": token}),
                                      {"Content-Type": "application/json"})
    assert status == 200, body
    assert _http(process, token)[0] == 401
    assert _ws(process, {"Authorization": f"Bearer {token}"}) == (401, None)
    assert _amqp(queue, token)["code"] == "unauthorized"
    assert _zmq(zmq_port, token)["code"] == "unauthorized"
    # and a fresh one works again
    assert _http(process, _token(process)) == (200, me)
