"""AMQP (RabbitMQ): connections, consuming channels, outgoing publishers.

``connections:`` type ``amqp`` (:mod:`.connection`), ``channels:`` type
``amqp`` (:mod:`.channel`), ``outgoing:`` type ``amqp`` (:mod:`.outgoing`,
``self.out.amqp[name]``), and the ``broker.amqp.publish`` service
(:mod:`.service`).  pika is imported only by :mod:`._pika`, lazily, once the
reactor runs: nothing here installs a reactor on import.
"""

from broker.amqp.schema import AMQP_CHANNEL, AMQP_CONNECTION, AMQP_OUTGOING

__all__ = ["AMQP_CHANNEL", "AMQP_CONNECTION", "AMQP_OUTGOING", "build_amqp_channel",
           "build_amqp_connection", "build_amqp_outgoing"]


def build_amqp_connection(section, ctx):
    """The :class:`~broker.amqp.connection.AMQPConnection` of one ``connections:`` entry."""
    from broker.amqp.connection import AMQPConnection
    connection = AMQPConnection(section, ctx.reactor)
    ctx.resources.health[f"amqp.connection.{section.name}"] = connection.health
    ctx.resources.metrics[f"amqp.connection.{section.name}"] = lambda: connection.counters
    return connection


def build_amqp_channel(section, ctx):
    from broker.amqp.channel import build_amqp_channel as build
    return build(section, ctx)


def build_amqp_outgoing(section, ctx):
    from broker.amqp.outgoing import build_amqp_outgoing as build
    return build(section, ctx)
