"""An AMQP channel added and removed through the admin API of a running broker, against the
real RabbitMQ: it starts consuming at once and stops cleanly; an HTTP client's keep-alive
connection is not dropped meanwhile."""

import base64
import http.client
import json
import textwrap
from pathlib import Path


from tests.integration.amqp_support import blocking_connection, requires_rabbitmq, suffix
from tests.integration.broker_process import BrokerProcess, wait_for

PLUGINS = Path(__file__).parent / "amqp_plugins"

CONFIG = """
name: live-amqp
services: {{paths: ["{plugins}"]}}
admin: {{security: ops}}
security:
  - {{name: ops, type: basic_auth, username: ops, password: "${{BROKER_ADMIN_PASSWORD}}"}}
connections:
  - {{name: rabbit, type: amqp, username: guest, password: guest}}
outgoing:
  - {{name: relay, type: amqp, connection: rabbit}}
"""


@requires_rabbitmq
def test_an_amqp_channel_added_live_consumes_and_removed_stops_cleanly(tmp_path):
    s = suffix()
    work, out = f"t.live.{s}", f"t.live.out.{s}"
    blocking = blocking_connection()
    raw = blocking.channel()
    for queue in (work, out):
        raw.queue_declare(queue, durable=False)
    config = tmp_path / "broker.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(plugins=PLUGINS)))
    broker = BrokerProcess(config).start()
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"ops:{broker.admin_password}".encode()).decode()}

    def consumers():
        return raw.queue_declare(work, passive=True).method.consumer_count

    def relayed():
        method, _, body = raw.basic_get(out, auto_ack=True)
        return json.loads(body)["tag"] if method is not None else None

    keep_alive = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=10)
    try:
        keep_alive.request("GET", "/broker/ping")
        assert keep_alive.getresponse().read()
        assert consumers() == 0
        status, _, body = broker.request("POST", "/broker/admin/config/channels", json.dumps(
            {"name": "work", "type": "amqp", "connection": "rabbit", "queue": work,
             "service": "test.amqp.relay"}), auth)
        assert status == 201, body
        wait_for(lambda: consumers() == 1, "the new channel consuming")
        raw.basic_publish("", work, json.dumps({"tag": "first", "to": out}).encode())
        assert wait_for(relayed, "the message relayed") == "first"

        status, _, body = broker.request("POST", "/broker/admin/config/channels", json.dumps(
            {"name": "bad", "type": "amqp", "connection": "nowhere", "queue": work,
             "service": "test.amqp.relay"}), auth)
        assert status == 400 and json.loads(body)["errors"][0]["field"] == "connection"

        status, _, body = broker.request("DELETE", "/broker/admin/config/channels/work",
                                         headers=auth)
        assert status == 200, body
        wait_for(lambda: consumers() == 0, "the channel gone")
        raw.basic_publish("", work, json.dumps({"tag": "second", "to": out}).encode())
        assert wait_for(lambda: raw.queue_declare(work, passive=True).method.message_count == 1,
                        "the message left in the queue")
        assert relayed() is None

        keep_alive.request("GET", "/broker/ping")   # the same connection, still open
        assert json.loads(keep_alive.getresponse().read())["status"] == "ok"
        assert "Traceback" not in broker.output
        assert "config deleted: channels work by ops:ops" in broker.output
    finally:
        keep_alive.close()
        broker.stop()
        for queue in (work, out):
            raw.queue_delete(queue)
        blocking.close()
