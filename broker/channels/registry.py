"""Channel types: config ``type`` → schema and builder.

A new channel type is one module (its schema beside its code) and one line here.
"""

from broker.channels.http.channel import HTTP_CHANNEL, build_http_channel
from broker.wsgi.channel import WSGI_CHANNEL, build_wsgi_channel
from broker.channels.zmq import config as zmq_config, channel as zmq_channel

__all__ = ["CHANNEL_TYPES"]

CHANNEL_TYPES = {
    "http": (HTTP_CHANNEL, build_http_channel),
    "wsgi": (WSGI_CHANNEL, build_wsgi_channel),
    "zmq_pull": (zmq_config.ZMQ_PULL, zmq_channel.build_pull),
    "zmq_sub": (zmq_config.ZMQ_SUB, zmq_channel.build_sub),
    "zmq_router": (zmq_config.ZMQ_ROUTER, zmq_channel.build_router),
}
