"""AMQP channels are components: one is replaced on a running node, against the real RabbitMQ.

The node runs in-process (trial drives the reactor), built from its config the way
``twistd broker`` builds it, so the test can call ``node.replace``.
"""

import json
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from broker.config.loader import parse_yaml
from broker.node import build_node
from broker.node.model import root_schema
from tests.integration.amqp_support import blocking_connection, rabbitmq_reachable, suffix, until

PLUGINS = Path(__file__).parent / "amqp_plugins"

CONFIG = """
name: amqp-components
services: {{paths: ["{plugins}"]}}
connections:
  - {{name: rabbit, type: amqp, username: guest, password: guest,
     queues: [{{name: "{work}", durable: false}}, {{name: "{out}", durable: false}}]}}
outgoing:
  - {{name: relay, type: amqp, connection: rabbit}}
channels:
  - {channel}
"""

CHANNEL = ('{{name: work, type: amqp, connection: rabbit, queue: "{work}", '
           'service: test.amqp.relay, dead_letter_routing_key: "{work}.dead", '
           'consumers: {consumers}, prefetch: {prefetch}}}')


class ReplaceTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if not rabbitmq_reachable():
            raise unittest.SkipTest("RabbitMQ is not reachable on 127.0.0.1:5672 "
                                    "(start it: rabbitmq-server -detached)")
        s = suffix()
        self.names = {"work": f"t.replace.{s}", "out": f"t.replace.out.{s}"}
        self.blocking = blocking_connection()
        self.raw = self.blocking.channel()
        self.addCleanup(self._cleanup)
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "broker.yaml"
        path.write_text(CONFIG.format(plugins=PLUGINS, channel=self.channel_text(1, 100),
                                      **self.names))
        self.node = build_node(str(path), listen="tcp:0:interface=127.0.0.1", reactor=reactor)
        self.node.startService()
        self.addCleanup(self.node.stopService)

    def _cleanup(self):
        work = self.names["work"]
        for queue in (work, f"{work}.dead", self.names["out"]):
            self.raw.queue_delete(queue)
        self.blocking.close()

    def channel_text(self, consumers, prefetch):
        return CHANNEL.format(consumers=consumers, prefetch=prefetch, **self.names)

    def section(self, consumers, prefetch):
        text = f"channels:\n  - {self.channel_text(consumers, prefetch)}\n"
        return root_schema().check(parse_yaml(text, "new.yaml")).channels[0]

    def channel(self):
        return self.node.components[("channel", "work")].value

    def consumers(self):
        return self.raw.queue_declare(self.names["work"], passive=True).method.consumer_count

    def send(self, tag, delay=0):
        body = json.dumps({"tag": tag, "to": self.names["out"], "delay": delay})
        self.raw.basic_publish("", self.names["work"], body.encode())

    def relayed(self):
        """The tags that arrived on the out queue so far."""
        tags = []
        method, _, body = self.raw.basic_get(self.names["out"], auto_ack=True)
        while method is not None:
            tags.append(json.loads(body)["tag"])
            method, _, body = self.raw.basic_get(self.names["out"], auto_ack=True)
        return tags

    @defer.inlineCallbacks
    def test_a_replaced_channel_drains_leaves_and_the_new_one_consumes_with_its_settings(self):
        old = self.channel()
        self.assertTrue((yield until(lambda: old.health()["ok"] and self.consumers() == 1)))
        self.send("slow", delay=1)
        self.assertTrue((yield until(lambda: old.in_flight == 1)))

        yield self.node.replace(("channel", "work"), self.section(consumers=2, prefetch=7))
        new = self.channel()
        self.assertIsNot(new, old)
        self.assertEqual((old.running, old.in_flight, old.counters["acked"]), (False, 0, 1))
        self.assertEqual(old.health()["consumers"], 0)  # its AMQP channels are closed
        self.assertTrue((yield until(lambda: new.health()["ok"])))
        self.assertEqual(self.consumers(), 2)           # the new ones only
        self.assertEqual(new.section.prefetch, 7)

        for n in range(10):
            self.send(n)
        seen = []
        self.assertTrue((yield until(lambda: seen.extend(self.relayed()) or len(seen) == 11)),
                        seen)
        self.assertEqual(sorted(seen, key=str), [*range(10), "slow"])  # once each
        self.assertTrue((yield until(lambda: new.counters["acked"] == 10)))
        self.assertEqual(old.counters["received"], 1)
        self.assertEqual(self.node.resources.metrics["amqp.channel.work"](), new.metrics())
