"""twistd plugin: ``twistd -n broker --config etc/broker.yaml``. Imports nothing heavy."""

from twisted.application.service import ServiceMaker

broker = ServiceMaker("broker", "broker.tap", "Run the broker: HTTP, WebSocket, AMQP and ZeroMQ channels "
                      "dispatching to SimpleIO services.", "broker")
