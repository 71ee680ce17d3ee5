"""Registries of the things a config file can declare, by ``type`` or section key.

Each feature keeps its schema and builder beside its code and adds one line
here.  A builder is called as ``build(section, ctx)`` with the checked config
section and the node's :class:`~broker.components.BuildContext`.

* :data:`CONNECTION_TYPES` — ``connections:`` list entries (an AMQP server,
  a Redis server...): ``type → (schema, build)``; ``build`` returns the
  connection object (an ``IService`` is started and stopped with the node).
* :data:`OUTGOING_TYPES` — ``outgoing:`` list entries services reach as
  ``self.out.<kind>[name]``: ``type → (schema, kind, build)``.
* :data:`SECTIONS` — top-level sections a feature owns (``cache:``,
  ``scheduler:``, ``pubsub:``...): ``key → (schema, build)``, built in this
  order after connections and outgoing, before channels.

Channel types live in :mod:`broker.channels.registry`; security types in
:mod:`broker.security.registry`.
"""

from broker.amqp import AMQP_CONNECTION, AMQP_OUTGOING, build_amqp_connection, build_amqp_outgoing
from broker.cache import CACHE_SECTION, build_caches
from broker.channels.zmq import config as zmq_config
from broker.fixtures import FIXTURES, build_fixtures
from broker.outgoing import zmq as zmq_outgoing
from broker.outgoing.http import HTTP_OUTGOING, build_http_outgoing
from broker.pubsub.feature import PUBSUB, build_pubsub
from broker.redis import REDIS_CONNECTION, build_redis_connection
from broker.scheduler import SCHEDULER_SECTION, build_scheduler

__all__ = ["CONNECTION_TYPES", "OUTGOING_TYPES", "SECTIONS"]

CONNECTION_TYPES = {
    "amqp": (AMQP_CONNECTION, build_amqp_connection),
    "redis": (REDIS_CONNECTION, build_redis_connection),
}

OUTGOING_TYPES = {
    "amqp": (AMQP_OUTGOING, "amqp", build_amqp_outgoing),
    "http": (HTTP_OUTGOING, "http", build_http_outgoing),
    "zmq_push": (zmq_config.ZMQ_PUSH_OUT, "zmq", zmq_outgoing.build_push),
    "zmq_pub": (zmq_config.ZMQ_PUB_OUT, "zmq", zmq_outgoing.build_pub),
}

SECTIONS = {
    "fixtures": (FIXTURES, build_fixtures),
    "cache": (CACHE_SECTION, build_caches),
    "scheduler": (SCHEDULER_SECTION, build_scheduler),
    "pubsub": (PUBSUB, build_pubsub),
}
