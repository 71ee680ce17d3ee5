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

from broker.pubsub.feature import PUBSUB, build_pubsub
from broker.redis.connection import REDIS_CONNECTION, build_redis_connection

__all__ = ["CONNECTION_TYPES", "OUTGOING_TYPES", "SECTIONS"]

CONNECTION_TYPES = {
    "redis": (REDIS_CONNECTION, build_redis_connection),
}

OUTGOING_TYPES = {
}

SECTIONS = {
    "pubsub": (PUBSUB, build_pubsub),
}
