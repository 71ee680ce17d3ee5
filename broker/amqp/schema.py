"""Config schemas of the AMQP connection, channel and outgoing types.

Every queue, window, retry and timeout is bounded here and has a default.
"""

from broker.config.schema import (Any, Bool, Choice, Duration, Field, Int, ListOf, MapOf, Name,
                                  Path, Schema, Size, Str)
from broker.security.registry import MESSAGE_GUARD_FIELDS
from broker.simpleio import FORMATS

__all__ = ["AMQP_CHANNEL", "AMQP_CONNECTION", "AMQP_OUTGOING"]

_NAME = Field(Name(), required=True)
_TYPE = Field(Str(), required=True)

EXCHANGE = Schema("amqp exchange", {
    "name": Field(Str(min_length=1), required=True),
    "type": Field(Choice("direct", "fanout", "topic", "headers"), default="topic"),
    "durable": Field(Bool(), default=True),
    "auto_delete": Field(Bool(), default=False),
    "arguments": Field(MapOf(Any()), default={}),
})

BINDING = Schema("amqp binding", {
    "exchange": Field(Str(min_length=1), required=True),
    "routing_key": Field(Str(), default=""),
    "arguments": Field(MapOf(Any()), default={}),
})

QUEUE = Schema("amqp queue", {
    "name": Field(Str(min_length=1), required=True),
    "durable": Field(Bool(), default=True),
    "exclusive": Field(Bool(), default=False),
    "auto_delete": Field(Bool(), default=False),
    "dead_letter_exchange": Field(Str(), default=None,
                                  doc="x-dead-letter-exchange for messages RabbitMQ itself "
                                      "dead-letters (TTL, length limit)"),
    "dead_letter_routing_key": Field(Str(), default=None),
    "arguments": Field(MapOf(Any()), default={}, doc="more x- arguments (x-max-length, ...)"),
    "bindings": Field(ListOf(BINDING), default=[]),
})


def _check_connection(section):
    if section.tls_ca_file and not section.tls:
        raise ValueError("tls_ca_file: set tls: true to use a CA file")
    if section.reconnect_max < section.reconnect_initial:
        raise ValueError("reconnect_max: must be at least reconnect_initial")


AMQP_CONNECTION = Schema("amqp connection", {
    "name": _NAME, "type": _TYPE,
    "host": Field(Str(min_length=1), default="127.0.0.1"),
    "port": Field(Int(min=1, max=65535), default=5672),
    "vhost": Field(Str(min_length=1), default="/"),
    "username": Field(Str(min_length=1), required=True),
    "password": Field(Str(), default="", doc="no default password; never logged"),
    "heartbeat": Field(Duration(min=0, max=3600), default=30.0, doc="0 turns heartbeats off"),
    "tls": Field(Bool(), default=False),
    "tls_ca_file": Field(Path(), default=None, doc="CA bundle; default: the system's"),
    "connection_name": Field(Str(), default=None, doc="shown in RabbitMQ's management UI"),
    "connect_timeout": Field(Duration(min=0.1, max=600), default=10.0,
                             doc="TCP connect plus the AMQP handshake"),
    "drain_timeout": Field(Duration(min=0, max=600), default=5.0,
                           doc="on shutdown, or when a channel or outgoing on it stops, wait "
                               "this long for messages in flight to be acked and publishes "
                               "confirmed"),
    "reconnect_initial": Field(Duration(min=0.01, max=600), default=0.5),
    "reconnect_max": Field(Duration(min=0.01, max=3600), default=10.0),
    "exchanges": Field(ListOf(EXCHANGE), default=[], doc="declared on every (re)connect"),
    "queues": Field(ListOf(QUEUE), default=[], doc="declared and bound on every (re)connect"),
}, validate=_check_connection)


def _check_channel(section):
    if (section.service is None) == (section.topic is None):
        raise ValueError("service: give exactly one of service or topic")
    if section.topic is not None and section.data_format in ("soap11", "soap12"):
        raise ValueError("data_format: a topic channel takes json, xml, form or raw")
    if section.retry_delay_max < section.retry_delay:
        raise ValueError("retry_delay_max: must be at least retry_delay")


AMQP_CHANNEL = Schema("amqp channel", {
    "name": _NAME, "type": _TYPE,
    "connection": Field(Str(min_length=1), required=True, doc="an amqp connection's name"),
    "queue": Field(Str(min_length=1), required=True),
    "service": Field(Str(min_length=1), default=None, doc="the service each message invokes"),
    "topic": Field(Str(min_length=1), default=None,
                   doc="instead of a service: publish each message to this pub/sub topic"),
    "data_format": Field(Choice(*sorted(FORMATS)), default="json"),
    "prefetch": Field(Int(min=1, max=65535), default=100,
                      doc="unacked messages per consumer (bounds work in progress)"),
    "consumers": Field(Int(min=1, max=64), default=1, doc="consumers, each on its own channel"),
    "max_retries": Field(Int(min=0, max=1000), default=3,
                         doc="service errors retried this many times, then dead-lettered"),
    "retry_delay": Field(Duration(min=0, max=900), default=1.0,
                         doc="wait before the first retry (0: at once), doubling for each next "
                             "one; the message stays unacked meanwhile"),
    "retry_delay_max": Field(Duration(min=0, max=900), default=60.0,
                             doc="the longest wait before a retry; keep it below RabbitMQ's "
                                 "consumer_timeout (30 min by default)"),
    "max_message_size": Field(Size(min=1), default="1MiB", doc="larger bodies are dead-lettered "
                                                               "undecoded"),
    "dead_letter_exchange": Field(Str(), default="", doc='"" is the default exchange'),
    "dead_letter_routing_key": Field(Str(), default=None, doc="default: <queue>.dead"),
    "declare_dead_letter_queue": Field(Bool(), default=True,
                                       doc="declare the routing key as a durable queue when "
                                           "dead_letter_exchange is the default one"),
    "setup_retry": Field(Duration(min=0.1, max=600), default=5.0,
                         doc="wait before setting up consumers again after a failure, and "
                             "before requeueing a message whose retry, dead letter or reply "
                             "could not be published; the longest wait before reopening a "
                             "publishing channel RabbitMQ closed"),
    **MESSAGE_GUARD_FIELDS,
    "on_rate_limit": Field(Choice("dead_letter", "requeue"), default="dead_letter",
                           doc="a message over a rate_limit: dead-lettered, or held unacked "
                               "until the limit allows it and requeued"),
}, validate=_check_channel)

AMQP_OUTGOING = Schema("amqp outgoing", {
    "name": _NAME, "type": _TYPE,
    "connection": Field(Str(min_length=1), required=True, doc="an amqp connection's name"),
    "exchange": Field(Str(), default="", doc='"" is the default exchange'),
    "routing_key": Field(Str(), default="", doc="used when publish() gives none"),
    "persistent": Field(Bool(), default=True, doc="delivery_mode 2"),
    "mandatory": Field(Bool(), default=True, doc="unroutable messages fail instead of vanishing"),
    "data_format": Field(Choice("json", "xml", "raw"), default="json",
                         doc="how dicts and lists are encoded; bytes and str go as they are"),
    "max_in_flight": Field(Int(min=1, max=100_000), default=1000,
                           doc="published but not yet confirmed"),
    "max_outbox": Field(Int(min=1, max=1_000_000), default=10_000,
                        doc="waiting to be sent (while disconnected or the window is full); "
                            "a full outbox fails publish() at once"),
    "publish_timeout": Field(Duration(min=0.01, max=3600), default=30.0,
                             doc="publish() fails if not confirmed within this"),
}, validate=None)
