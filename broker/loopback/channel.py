"""The ``loopback`` channel: one in-memory queue consumed into a service or a topic.

Everything but receiving and settling is :class:`~broker.channels.MessageChannel`'s:
a reply goes to the message's ``reply_to`` queue, a failure is dead-lettered
on ``<queue>.dead`` with its reason in the headers (and answered when a reply
is expected).
"""

from broker.channels import MessageChannel
from broker.errors import error_body
from broker.loopback.connection import LoopbackMessage

__all__ = ["LoopbackChannel", "build_channel"]


class LoopbackChannel(MessageChannel):
    """Takes messages from its queue while fewer than ``max_in_flight`` are in flight."""

    type = "loopback"
    metrics_key = "loopback.channel"

    def __init__(self, section, ctx, connection):
        super().__init__(section, ctx, topic=section.topic, security=ctx.security_of(section),
                         extra={"queue": section.queue})
        self.connection = connection
        self.queue = section.queue
        self.counters.update(replies=0, dead_lettered=0)

    def startService(self):
        super().startService()
        self.reading_paused = False
        self.connection.consume(self.queue, self._take)

    def stopService(self):
        super().stopService()
        self.connection.cancel(self.queue)
        return self.drain()

    def _take(self, message):
        if self.reading_paused:
            return False
        request = self.request(message.body, message.headers, message.cid,
                               message.headers.get("content-type", ""))
        self.process(request, message, encode=message.reply_to is not None)
        return True

    def resume_reading(self):
        self.connection.wake(self.queue)

    def succeeded(self, result, request, message):
        if message.reply_to is not None and self.topic is None:
            self._reply(message, result.body, {"content-type": result.content_type or ""})

    def failed(self, error, request, message):
        self.counters["dead_lettered"] += 1
        body = error_body(error, request.cid)
        headers = {**message.headers, "x-broker-error-code": error.code,
                   "x-broker-error": error.message, "x-broker-channel": self.section.name}
        self.connection.put(f"{self.queue}.dead", LoopbackMessage(message.body, headers, request.cid))
        if message.reply_to is not None:
            self._reply(message, body, {"content-type": "application/json",
                                        "x-broker-error-code": error.code})

    def _reply(self, message, body, headers):
        self.counters["replies"] += 1
        self.connection.put(message.reply_to, LoopbackMessage(body, headers, message.cid))


def build_channel(section, ctx):
    return LoopbackChannel(section, ctx, ctx.connection(section, "connection", "loopback"))
