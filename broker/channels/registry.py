"""Channel types: config ``type`` → schema and builder.

A new channel type is one module (its schema beside its code) and one line here.
"""

from broker.amqp import AMQP_CHANNEL, build_amqp_channel
from broker.channels.http.channel import HTTP_CHANNEL, build_http_channel
from broker.channels.zmq import channel as zmq_channel, config as zmq_config
from broker.wsgi.channel import WSGI_CHANNEL, build_wsgi_channel

__all__ = ["CHANNEL_TYPES"]

CHANNEL_TYPES = {
    "amqp": (AMQP_CHANNEL, build_amqp_channel),
    "http": (HTTP_CHANNEL, build_http_channel),
    "wsgi": (WSGI_CHANNEL, build_wsgi_channel),
    "zmq_pull": (zmq_config.ZMQ_PULL, zmq_channel.build_pull),
    "zmq_sub": (zmq_config.ZMQ_SUB, zmq_channel.build_sub),
    "zmq_router": (zmq_config.ZMQ_ROUTER, zmq_channel.build_router),
}
