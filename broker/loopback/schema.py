"""Config schemas of the loopback transport's three types."""

from broker.config.schema import Choice, Field, Int, Name, Schema, Size, Str
from broker.simpleio import FORMATS

__all__ = ["LOOPBACK_CHANNEL", "LOOPBACK_CONNECTION", "LOOPBACK_OUTGOING"]

_QUEUE = Str(pattern=r"^[\w.\-]+$", problem="expected a queue name (letters, digits, _ . -)")

LOOPBACK_CONNECTION = Schema("loopback connection", {
    "name": Field(Name(), required=True),
    "type": Field(Str(), required=True),
    "max_queue": Field(Int(min=1, max=1_000_000), default=10_000,
                       doc="messages one queue holds while nobody takes them; more are refused"),
})

LOOPBACK_CHANNEL = Schema("loopback channel", {
    "name": Field(Name(), required=True),
    "type": Field(Str(), required=True),
    "connection": Field(Str(), required=True, doc="a loopback connection's name"),
    "queue": Field(_QUEUE, required=True),
    "service": Field(Str(min_length=1), default=None),
    "topic": Field(Str(min_length=1), default=None, doc="publish each message here instead"),
    "data_format": Field(Choice(*sorted(FORMATS)), default="json"),
    "security": Field(Str(), default=None, doc="a security definition messages must pass"),
    "max_message_size": Field(Size(min=1), default="1MiB"),
    "max_in_flight": Field(Int(min=1, max=100_000), default=100,
                           doc="messages being processed at once; the queue waits beyond it"),
}, validate=lambda s: _one_target(s))

LOOPBACK_OUTGOING = Schema("loopback outgoing", {
    "name": Field(Name(), required=True),
    "type": Field(Str(), required=True),
    "connection": Field(Str(), required=True),
    "queue": Field(_QUEUE, required=True, doc="where send() puts messages"),
    "data_format": Field(Choice("json", "xml", "raw"), default="json"),
})


def _one_target(section):
    if (section.service is None) == (section.topic is None):
        raise ValueError("give exactly one of service and topic")
