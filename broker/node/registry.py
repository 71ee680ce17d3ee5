"""What a config file can declare: every component type, by kind and ``type``.

Each type keeps its schema, builder and needs beside its code as a
:class:`~broker.components.ComponentType`, and is one line here; this module
is the only place that knows every transport and feature.  A new channel,
connection or outgoing type is one package plus one line.

* :data:`CHANNEL_TYPES` — ``channels:`` entries;
* :data:`CONNECTION_TYPES` — ``connections:`` entries (an AMQP server, a Redis server);
* :data:`OUTGOING_TYPES` — ``outgoing:`` entries services reach as ``self.out.<kind>[name]``;
* :data:`FEATURES` — top-level sections a feature owns (``cache:``, ``pubsub:``...),
  and what is built from a section another owns (the pub/sub fronts, the admin pages);
* :data:`SECURITY_TYPES` — ``security:`` entries;
* :data:`BUILTIN_SERVICES` — services every node has.
"""

from broker import amqp, auth, cache, fixtures, loopback, redis, scheduler, tasks, zmq
from broker.admin.dashboard import DASHBOARD
from broker.admin.jobs import JOBS
from broker.admin.logs import LOGGING
from broker.admin.otel import TRACING
from broker.admin.prometheus import METRICS
from broker.admin.routes import ADMIN
from broker.amqp.service import PublishService
from broker.components import CHANNEL, CONNECTION, FEATURE, OUTGOING, SECURITY, ComponentType, Needs
from broker.http import channel as http_channel, outgoing as http_outgoing, tasks as http_tasks
from broker.node.assembly import Registry
from broker.node.livestate import LIVE
from broker.pubsub import feature as pubsub
from broker.security.registry import DEFINITION_TYPES
from broker.services.builtin import DISPATCHERS
from broker.websocket.front import FRONTS
from broker.wsgi import channel as wsgi_channel

__all__ = ["BUILTIN_SERVICES", "CHANNEL_TYPES", "CONNECTION_TYPES", "FEATURES", "OUTGOING_TYPES",
           "REGISTRY", "SECURITY_TYPES"]

SECURITY_TYPES = {type: ComponentType(schema, build, needs=[Needs.feature("auth")])
                  for type, (schema, build) in DEFINITION_TYPES.items()}

CHANNEL_TYPES = {
    "amqp": amqp.CHANNEL,
    "http": http_channel.CHANNEL,
    "loopback": loopback.CHANNEL,
    "wsgi": wsgi_channel.CHANNEL,
    **zmq.CHANNELS,
}

CONNECTION_TYPES = {
    "amqp": amqp.CONNECTION,
    "loopback": loopback.CONNECTION,
    "redis": redis.CONNECTION,
}

OUTGOING_TYPES = {
    "amqp": amqp.OUTGOING,
    "http": http_outgoing.OUTGOING,
    "loopback": loopback.OUTGOING,
    **zmq.OUTGOING,
}

#: Built in this order when nothing they need says otherwise.
FEATURES = {
    "auth": auth.FEATURE,
    "fixtures": fixtures.FEATURE,
    "cache": cache.FEATURE,
    "scheduler": scheduler.FEATURE,
    "pubsub": pubsub.FEATURE,
    "pubsub.fronts": FRONTS,
    "tasks": tasks.FEATURE,
    "tasks.status": http_tasks.STATUS,
    "admin": ADMIN,
    "admin.jobs": JOBS,
    "admin.dashboard": DASHBOARD,
    "metrics": METRICS,
    "logging": LOGGING,
    "tracing": TRACING,
    "live": LIVE,
}

BUILTIN_SERVICES = (*DISPATCHERS, PublishService)

REGISTRY = Registry({SECURITY: SECURITY_TYPES, CONNECTION: CONNECTION_TYPES,
                     OUTGOING: OUTGOING_TYPES, FEATURE: FEATURES, CHANNEL: CHANNEL_TYPES},
                    url_connections={"redis": redis.BY_URL})
