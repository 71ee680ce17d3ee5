"""WebSocket ``invoke``: the frames of every ``/ws`` connection, as one message channel.

The protocol checks the frame, the caller's ``invoke`` permission and its
connection's ``max_pending_invokes``; everything else is
:class:`~broker.channels.MessageChannel`'s (running, mapping errors, counting
under ``websocket.invoke``, draining on stop).  The caller is the one the
handshake identified.  The invoker encodes the answer (so
``limits.max_response_size`` applies) and the protocol puts that JSON in the
``ok`` frame as it is.
"""

from twisted.internet import defer

from broker.channels import MessageChannel
from broker.config.schema import Section
from broker.errors import ServiceUnavailable
from broker.services.context import ChannelInfo

__all__ = ["InvokeChannel"]

#: What the channel is in config terms: one per node, answering in JSON.
_SECTION = Section("websocket invoke", {"name": "invoke", "data_format": "json"})


class InvokeChannel(MessageChannel):
    """Runs ``invoke`` frames; settles each with the connection's ``ok`` or ``error`` frame."""

    type = "websocket"
    metrics_key = "websocket"

    def __init__(self, ctx):
        super().__init__(_SECTION, ctx)
        self.after_drain = None  # the endpoint's going_away: close its connections with 1001

    def stopService(self):
        super().stopService()
        d = defer.maybeDeferred(self.drain)
        if self.after_drain is not None:
            d.addBoth(lambda _: self.after_drain())
        return d

    def invoke(self, protocol, request_id, service, data, traceparent=None):
        """Run ``service`` with ``data`` for ``protocol``'s caller; answer ``request_id``
        (``traceparent``: the W3C trace it continues, from the frame or the handshake)."""
        request = self.request(b"", {"traceparent": traceparent} if traceparent else {},
                               peer=protocol.peer)
        request.payload = data
        request.caller = protocol.caller
        request.channel = self._info_of(protocol.grant.name)
        context = (protocol, request_id, service)
        if self.reading_paused:  # draining: the node is stopping
            self.failed(ServiceUnavailable("The node is stopping"), request, context)
        else:
            self.process(request, context, encode=True, service=service)

    def _info_of(self, definition):
        """The channel as services see it for callers of ``definition``: tasks they start are
        owned by ``<definition>:<caller>``, as the ``/ws`` session subscribing to them."""
        infos = self.__dict__.setdefault("_infos", {})
        info = infos.get(definition)
        if info is None:
            base = self.info
            info = infos[definition] = ChannelInfo(base.name, base.type, base.data_format, None,
                                                   {**base.extra, "owner_security": definition})
        return info

    def succeeded(self, response, request, context):
        protocol, request_id, service = context
        protocol.invoked(request_id, service, request.cid, response)

    def failed(self, error, request, context):
        protocol, request_id, _ = context
        protocol.invoke_failed(request_id, error)

