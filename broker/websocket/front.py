"""The fronts of pub/sub: ``/ws``, ``POST /broker/publish/{topic}`` and the live page.

Built from the ``pubsub:`` section on the hub the pub/sub feature made, so
topics stay transport-free and WebSocket is a front of them, not a channel.
"""

from broker.components import ComponentType, Needs
from broker.http.router import Route
from broker.websocket.invoke import InvokeChannel
from broker.websocket.protocol import PubSubFactory
from broker.websocket.publish import HTTPPublisher, live_page_routes, publish_doc

__all__ = ["FRONTS", "build_fronts"]


def build_fronts(section, ctx):
    """The WebSocket endpoint and HTTP routes the ``pubsub`` section asks for; the
    endpoint's factory, or None."""
    if not section.enabled:
        return None
    pubsub = ctx.feature("pubsub")
    hub, access = pubsub.hub, pubsub.access
    if section.http_publish:
        ctx.add_route(Route("broker.publish", "/broker/publish/{topic}", ("POST",),
                            HTTPPublisher(hub, access), kind="builtin", doc=publish_doc(access)))
    if section.live_page:
        for route in live_page_routes():
            ctx.add_route(route)
    ws = section.websocket
    if ws.enabled:
        invocations = ctx.add_service(InvokeChannel(ctx))
        factory = PubSubFactory(hub, access, invocations, ws, ctx.reactor,
                                ctx.config.limits.write_timeout)
        factory.resources = ctx.resources   # resources.tasks: whose a task topic is
        invocations.after_drain = factory.going_away
        if ctx.worker is not None:  # which worker of the node took the connection
            factory.handshake_headers = {"X-Broker-Worker": str(ctx.worker.id)}
        ctx.add_upgrade(ws.path, factory.upgrade)
        ctx.metrics("websocket", factory.metrics)
        return factory
    return None


#: Built from the ``pubsub:`` section once the pub/sub feature is (nothing when it is off).
FRONTS = ComponentType(None, build_fronts, section="pubsub", takes_work=True,
                       needs=[Needs.feature("pubsub", when="enabled")])
