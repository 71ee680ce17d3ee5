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

__all__ = ["CONNECTION_TYPES", "OUTGOING_TYPES", "SECTIONS"]

from broker.amqp import AMQP_CONNECTION, AMQP_OUTGOING, build_amqp_connection, build_amqp_outgoing

CONNECTION_TYPES = {
    "amqp": (AMQP_CONNECTION, build_amqp_connection),
}

OUTGOING_TYPES = {
    "amqp": (AMQP_OUTGOING, "amqp", build_amqp_outgoing),
}

SECTIONS = {
}
