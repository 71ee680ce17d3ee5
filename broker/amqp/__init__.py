"""AMQP (RabbitMQ): connections, consuming channels, outgoing publishers.

``connections:`` type ``amqp`` (:mod:`.connection`), ``channels:`` type
``amqp`` (:mod:`.channel`), ``outgoing:`` type ``amqp`` (:mod:`.outgoing`,
``self.out.amqp[name]``), and the ``broker.amqp.publish`` service
(:mod:`.service`).  pika is imported only by :mod:`._pika`, lazily, once the
reactor runs: nothing here installs a reactor on import.
"""

from broker.amqp.schema import AMQP_CHANNEL, AMQP_CONNECTION, AMQP_OUTGOING
from broker.components import ComponentType, Needs

__all__ = ["CHANNEL", "CONNECTION", "OUTGOING"]


def build_amqp_connection(section, ctx):
    """The :class:`~broker.amqp.connection.AMQPConnection` of one ``connections:`` entry."""
    from broker.amqp.connection import AMQPConnection
    amqp = AMQPConnection(section, ctx.reactor)
    ctx.health(f"amqp.connection.{section.name}", amqp.health)
    ctx.metrics(f"amqp.connection.{section.name}", lambda: amqp.counters)
    return amqp


def build_amqp_channel(section, ctx):
    from broker.amqp.channel import build_amqp_channel as build
    return build(section, ctx)


def build_amqp_outgoing(section, ctx):
    from broker.amqp.outgoing import build_amqp_outgoing as build
    return build(section, ctx)


#: ``connections:`` type ``amqp``.
CONNECTION = ComponentType(AMQP_CONNECTION, build_amqp_connection)
#: ``channels:`` type ``amqp``: a queue consumed into a service or a topic.
CHANNEL = ComponentType(AMQP_CHANNEL, build_amqp_channel,
                        needs=[Needs.connection("connection", "amqp"), Needs.security(),
                               Needs.feature("auth"),
                               Needs.feature("pubsub", when="topic")])
#: ``outgoing:`` type ``amqp``: ``self.out.amqp[name]``.
OUTGOING = ComponentType(AMQP_OUTGOING, build_amqp_outgoing, kind="amqp",
                         needs=[Needs.connection("connection", "amqp")])
