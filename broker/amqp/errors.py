"""Typed errors of AMQP publishing; each says what happened to the message."""

from broker.errors import BrokerError, ServiceUnavailable, Timeout

__all__ = ["AMQPPublishError", "OutboxFull", "PublishNacked", "PublishTimeout", "Unroutable"]


class AMQPPublishError(BrokerError):
    """RabbitMQ did not take the message."""

    code = "amqp_publish_failed"
    status = 502
    default_message = "RabbitMQ did not accept the message"


class PublishNacked(AMQPPublishError):
    """RabbitMQ answered the publish with basic.nack (an internal error on its side)."""

    code = "amqp_nacked"
    default_message = "RabbitMQ refused the message (basic.nack)"


class Unroutable(AMQPPublishError):
    """A ``mandatory`` message matched no queue and came back (basic.return)."""

    code = "amqp_unroutable"
    status = 422
    default_message = "No queue is bound for this routing key"


class OutboxFull(ServiceUnavailable):
    """The outbox is full (RabbitMQ unreachable or slow): the message was not taken."""

    code = "amqp_outbox_full"
    default_message = "AMQP outbox is full; message not accepted"


class PublishTimeout(Timeout):
    """No confirm within ``publish_timeout``: the message may or may not have been delivered."""

    code = "amqp_publish_timeout"
    default_message = "No confirm from RabbitMQ in time; delivery unknown"
