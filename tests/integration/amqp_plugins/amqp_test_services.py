"""Services the AMQP integration tests consume into."""

from broker import Service


class Fail(Service):
    """Always fails: a service error, retried then dead-lettered."""

    name = "test.amqp.fail"

    def handle(self):
        raise RuntimeError("this service always fails")


class Headers(Service):
    """Answers with the request's headers and channel (message properties land there)."""

    name = "test.amqp.headers"

    def handle(self):
        headers = {key: value for key, value in self.request.headers.items()
                   if isinstance(value, (str, int, bool))}
        self.response.payload = {"headers": headers, "channel": self.request.channel.name,
                                 "cid": self.cid, "input": self.request.input}


class Relay(Service):
    """Publishes its input through the outgoing AMQP connection "relay"; done on confirm."""

    name = "test.amqp.relay"

    async def handle(self):
        data = self.request.input
        if data.get("delay"):  # keep messages in progress, so restarts catch some mid-way
            from twisted.internet import reactor, task
            await task.deferLater(reactor, data["delay"])
        await self.out.amqp["relay"].publish(data, routing_key=data["to"],
                                             headers={"x-tag": data["tag"]})
