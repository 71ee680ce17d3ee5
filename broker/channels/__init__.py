"""The one channel contract: how every transport's channel runs a service.

A channel turns a transport message into a neutral
:class:`~broker.services.context.Request` (``Request.from_channel``, with a
:class:`~broker.services.context.ChannelInfo` naming the channel, its data
format and its security definition) and calls
:meth:`IInvoker.invoke(service, request, encode) <broker.services.invoker.IInvoker.invoke>`.
It gets a :class:`~broker.services.context.Response` (or a Deferred of one)
or a typed :class:`~broker.errors.BrokerError`, which it maps to its
protocol once.  That is the whole contract: the HTTP channel follows it
directly, message transports (AMQP, ZeroMQ, WebSocket invoke, loopback)
through :class:`~broker.channels.message.MessageChannel`, which adds the
steps they share.  See ``docs/architecture.md``.
"""

from broker.channels.message import LogBudget, MessageChannel
from broker.services.context import ChannelInfo, Request, Response
from broker.services.invoker import IInvoker

__all__ = ["ChannelInfo", "IInvoker", "LogBudget", "MessageChannel", "Request", "Response"]
