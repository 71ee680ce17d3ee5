"""``broker.amqp.publish``: publish through a named outgoing AMQP connection.

Exposed over HTTP in ``etc/examples/amqp.yaml`` at ``POST /broker/amqp/publish``
so any HTTP client can put a message on a queue; it answers once RabbitMQ
confirmed the message.
"""

from broker.errors import ValidationError
from broker.runtime import NoSuchConnection
from broker.services.base import Service
from broker.simpleio import AsIs, Text

__all__ = ["PublishService"]


class PublishService(Service):
    """Publish ``data`` through the outgoing AMQP connection ``outgoing``; answer on confirm."""

    name = "broker.amqp.publish"

    class SimpleIO:
        input_required = (Text("outgoing"), AsIs("data"))
        input_optional = (Text("routing_key"), AsIs("headers"), Text("correlation_id"),
                          Text("message_id"))
        output_required = (Text("status"), Text("message_id"))

    async def handle(self):
        data = self.request.input
        try:
            outgoing = self.out.amqp[data.outgoing]
        except NoSuchConnection as error:
            raise ValidationError.of([{"field": "outgoing", "problem": str(error)}]) from None
        headers = data.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise ValidationError.of([{"field": "headers", "problem": "expected an object"}])
        message_id = data.get("message_id") or self.cid
        await outgoing.publish(data.data, routing_key=data.get("routing_key"), headers=headers,
                               correlation_id=data.get("correlation_id"), message_id=message_id)
        self.response.payload = {"status": "confirmed", "message_id": message_id}
