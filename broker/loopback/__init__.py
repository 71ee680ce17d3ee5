"""An in-memory message transport, and the template for a new one.

A transport is one package with its config schemas, its builders and one
:class:`~broker.components.ComponentType` per config ``type`` it adds, listed
in :mod:`broker.node.registry`.  This one has all three sides:

* ``connections:`` type ``loopback`` — named in-memory queues
  (:mod:`.connection`), each bounded;
* ``channels:`` type ``loopback`` — consumes one queue into a service or a
  pub/sub topic, answers ``reply_to`` and dead-letters what fails
  (:mod:`.channel`, a :class:`~broker.channels.MessageChannel`);
* ``outgoing:`` type ``loopback`` — ``self.out.loopback[name].send(data)``
  puts a message on a queue (:mod:`.outgoing`).

Tests use it to drive the shared channel steps without a server.
"""

from broker.components import ComponentType, Needs
from broker.loopback.channel import build_channel
from broker.loopback.connection import build_connection
from broker.loopback.outgoing import build_outgoing
from broker.loopback.schema import LOOPBACK_CHANNEL, LOOPBACK_CONNECTION, LOOPBACK_OUTGOING

__all__ = ["CHANNEL", "CONNECTION", "OUTGOING"]

CONNECTION = ComponentType(LOOPBACK_CONNECTION, build_connection)
CHANNEL = ComponentType(LOOPBACK_CHANNEL, build_channel,
                        needs=[Needs.connection("connection", "loopback"),
                               Needs.feature("pubsub", when="topic")])
OUTGOING = ComponentType(LOOPBACK_OUTGOING, build_outgoing, kind="loopback",
                         needs=[Needs.connection("connection", "loopback")])
