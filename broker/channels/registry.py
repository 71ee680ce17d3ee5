"""Channel types: config ``type`` → schema and builder.

A new channel type is one module (its schema beside its code) and one line here.
"""

from broker.amqp import AMQP_CHANNEL, build_amqp_channel
from broker.channels.http.channel import HTTP_CHANNEL, build_http_channel

__all__ = ["CHANNEL_TYPES"]

CHANNEL_TYPES = {
    "http": (HTTP_CHANNEL, build_http_channel),
    "amqp": (AMQP_CHANNEL, build_amqp_channel),
}
