"""Settling the deliveries of one consumer channel: acks coalesced, nacks at once.

RabbitMQ numbers the deliveries of each AMQP channel 1, 2, 3... and a
``basic.ack(multiple=True)`` up to tag T settles *every* unsettled delivery
<= T on that channel.  :class:`DeliveryAcks` keeps this one invariant, which
makes the multiple ack safe:

    every tag delivered on the channel is in ``busy`` from the moment it is
    delivered until its ack is queued (``done``) or its nack has been sent.

So a multiple ack is sent only up to a tag below the lowest ``busy`` one:
every unsettled delivery it covers is one we queued to ack.  There is no
third way out of ``busy``: a message that cannot be finished is nacked
(requeued), never just forgotten.  Tags restart at 1 on a new channel, so
each channel has its own ``DeliveryAcks``; a message is settled only through
the one of the channel it came on, and when that channel is gone RabbitMQ has
requeued the message already.
"""

__all__ = ["DeliveryAcks"]


class DeliveryAcks:
    """Acks (one ``basic.ack`` per reactor turn, ``multiple`` where safe) and nacks of one channel."""

    __slots__ = ("channel", "counters", "_reactor", "_busy", "_done", "_call")

    def __init__(self, channel, counters, reactor):
        self.channel = channel
        self.counters = counters
        self._reactor = reactor
        self._busy = set()   # delivered, neither ack queued nor nack sent
        self._done = []      # to ack at the next flush
        self._call = None

    def started(self, tag):
        """``tag`` was delivered: nothing is acked past it until it is settled."""
        self._busy.add(tag)

    def ack(self, tag):
        """Queue the ack of ``tag`` (sent at the end of this reactor turn)."""
        self._busy.discard(tag)
        self._done.append(tag)
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def nack(self, tag):
        """Requeue ``tag`` now (if the channel is gone, RabbitMQ has requeued it already)."""
        self._busy.discard(tag)
        try:
            self.channel.basic_nack(delivery_tag=tag, requeue=True)
        except Exception:
            self.counters["ack_failed"] += 1
            return
        self.counters["requeued"] += 1

    def flush(self):
        """Send the queued acks: one multiple ack below the lowest busy tag, single acks above it."""
        call, self._call = self._call, None
        if call is not None and call.active():  # flushed early (on drain)
            call.cancel()
        done, self._done = self._done, []
        if not done:
            return
        channel = self.channel
        try:
            if not self._busy:
                channel.basic_ack(delivery_tag=max(done), multiple=True)
            else:
                lowest_busy = min(self._busy)
                below = [tag for tag in done if tag < lowest_busy]
                if below:
                    channel.basic_ack(delivery_tag=max(below), multiple=True)
                for tag in done:
                    if tag > lowest_busy:
                        channel.basic_ack(delivery_tag=tag)
        except Exception:  # channel gone: RabbitMQ requeues them, they come again
            self.counters["ack_failed"] += len(done)
            return
        self.counters["acked"] += len(done)
