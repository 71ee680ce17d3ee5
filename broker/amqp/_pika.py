"""The one module that imports pika (its Twisted adapter installs the reactor on import).

Everything else in :mod:`broker.amqp` imports this lazily, from code that
runs once the reactor is chosen.  pika 2 drops ``TwistedProtocolConnection``;
moving to another client means changing this module only.
"""

import pika
from pika import exceptions, spec
from pika.adapters.twisted_connection import TwistedProtocolConnection
from twisted.internet import protocol

__all__ = ["BasicProperties", "ChannelClosed", "ChannelClosedByBroker", "NackError",
           "UnroutableError", "connection_factory", "exceptions"]

BasicProperties = spec.BasicProperties
NackError = exceptions.NackError
UnroutableError = exceptions.UnroutableError
ChannelClosed = exceptions.ChannelClosed
ChannelClosedByBroker = exceptions.ChannelClosedByBroker
ConnectionClosed = exceptions.ConnectionClosed


def connection_parameters(section):
    """pika parameters for a checked ``amqp`` connection section (host and port are Twisted's)."""
    properties = {"product": "broker"}
    if section.connection_name:
        properties["connection_name"] = section.connection_name
    return pika.ConnectionParameters(
        virtual_host=section.vhost,
        credentials=pika.PlainCredentials(section.username, section.password),
        heartbeat=int(round(section.heartbeat)),
        client_properties=properties)


def connection_factory(section, reactor):
    """A protocol factory building one ``TwistedProtocolConnection`` per TCP connection."""
    parameters = connection_parameters(section)

    class Factory(protocol.Factory):
        noisy = False

        def buildProtocol(self, addr):
            return TwistedProtocolConnection(parameters, custom_reactor=reactor)

    return Factory()


def message_properties(**values):
    """``BasicProperties`` with the given values."""
    return BasicProperties(**values)
