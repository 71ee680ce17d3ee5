"""One subscriber connection's state: subscriptions, resume, and its bounded queue.

It knows no transport: a channel gives it a ``sink`` with
``send_message(message)``, ``send_notice(dict)`` and ``close(code, reason)``,
and tells it when the transport is paused (its producer) and resumed.

While the transport takes data, messages are written at once.  While it is
paused, they wait in a queue of at most ``queue_size``; when a message finds
the queue full, the topic's overflow policy applies: ``drop_oldest`` drops the
oldest waiting message and the client is told with a ``gap`` notice before
the next one; ``close`` closes the connection with code 4008.
"""

from collections import deque

from twisted.internet import defer
from twisted.logger import Logger

from broker.errors import ServiceUnavailable
from broker.pubsub.topics import matches

__all__ = ["Session", "SLOW_CONSUMER"]

log = Logger()

SLOW_CONSUMER = 4008


class Session:
    """What one client subscribed to and what waits to be sent to it.

    :param hub: the :class:`~broker.pubsub.hub.Hub`.
    :param sink: the transport side (see the module docs).
    :param queue_size: messages waiting at most while the transport is paused.
    :param max_subscriptions: patterns one session may subscribe to.
    """

    #: who the connection's caller is (``<definition>:<caller>``): owned topics' messages
    #: (:data:`~broker.pubsub.topics.OWNED_PREFIX`) reach only their owner's sessions.
    owner = None

    def __init__(self, hub, sink, queue_size=256, max_subscriptions=100):
        self.hub = hub
        self.sink = sink
        self._send_message = sink.send_message
        self.queue_size = queue_size
        self.max_subscriptions = max_subscriptions
        self.patterns = {}          # pattern -> active (False while its replay runs)
        self.queue = deque()
        self.paused = False
        self.closed = False
        self.last_key = None        # key of the last message sent
        self.last_id = None
        self._resuming = 0
        self._held = []             # live messages held while a replay runs
        self._dropped = 0           # dropped since the last gap notice
        self._dropped_after = None  # msg_id sent before the first drop
        hub.counters["sessions"] += 1

    # -- subscriptions -------------------------------------------------------

    def subscribe(self, pattern, since=None):
        """Subscribe; with ``since`` (a key) replay what came after it first.

        :return: a Deferred firing with ``{"replayed": n, "gap": bool}``.
        :raise ValueError: over ``max_subscriptions``.
        """
        if pattern in self.patterns:
            if since is None:
                return defer.succeed({"replayed": 0, "gap": False})
        elif len(self.patterns) >= self.max_subscriptions:
            raise ValueError(f"at most {self.max_subscriptions} subscriptions per connection")
        if since is None:
            self.patterns[pattern] = True
            self.hub.add(self, pattern)
            return defer.succeed({"replayed": 0, "gap": False})
        self.patterns[pattern] = False
        self.hub.add(self, pattern)
        return self._resume(pattern, since).addErrback(self._replay_failed, pattern)

    def _replay_failed(self, failure, pattern):
        """History could not be read (Redis down): the subscription is not made."""
        log.failure("replay of {pattern} failed", failure, pattern=pattern)
        self.unsubscribe(pattern)
        raise ServiceUnavailable("message history is unavailable; subscribe again later")

    def unsubscribe(self, pattern):
        """Stop a subscription; False if there was none."""
        if pattern not in self.patterns:
            return False
        del self.patterns[pattern]
        self.hub.remove(self, pattern)
        return True

    def _resume(self, pattern, since):
        self._resuming += 1
        d = self.hub.replay(pattern, since)
        d.addCallback(self._replayed, pattern)
        d.addBoth(self._resumed)
        return d

    def _replayed(self, replay, pattern):
        if self.closed:
            return {"replayed": 0, "gap": replay.gap}
        others = [p for p, active in self.patterns.items() if active and p != pattern]
        last = self.last_key
        sent = 0
        if replay.gap:
            self.hub.counters["gaps_told"] += 1
            self.sink.send_notice({"op": "gap", "reason": "history", "topic": pattern,
                                   "detail": "some messages after since are no longer in history"})
        seen = set()
        for message in replay.messages:
            if last is not None and message.key <= last \
                    and any(matches(p, message.topic) for p in others):
                continue  # already sent through another subscription
            seen.add(message.key)
            self._push(message)
            sent += 1
        self._held = [m for m in self._held if m.key not in seen]
        self.hub.counters["replayed"] += sent
        if pattern in self.patterns:
            self.patterns[pattern] = True
        return {"replayed": sent, "gap": replay.gap}

    def _resumed(self, result):
        self._resuming -= 1
        if self._resuming == 0 and not self.closed:
            held, self._held = self._held, []
            for message in held:
                self._push(message)
        return result

    def resync(self):
        """After a backplane outage: fetch, per subscription, what came after the last sent."""
        if self.closed or self.last_key is None:
            return
        since = self.last_key
        for pattern in list(self.patterns):
            self.patterns[pattern] = False
            self._resume(pattern, since).addErrback(self._resync_failed, pattern)

    def _resync_failed(self, failure, pattern):
        log.failure("resync of {pattern} failed", failure, pattern=pattern)
        self.sink.send_notice({"op": "gap", "reason": "backplane", "topic": pattern,
                               "detail": "the cluster backplane was down; resubscribe with since"})

    # -- delivery --------------------------------------------------------------

    def deliver(self, message):
        """A live message from the hub."""
        if not (self._resuming or self.paused or self.queue or self._dropped or self.closed):
            self.last_key = message.key          # the hot path: straight to the socket
            self.last_id = message.msg_id
            self._send_message(message)
            return
        if self._resuming:
            if len(self._held) >= self.queue_size:
                self._overflow(message, self._held)
                if self.closed:
                    return
            self._held.append(message)
            return
        self._push(message)

    def _push(self, message):
        if self.closed:
            return
        queue = self.queue
        if not self.paused and not queue:
            self._tell_drops(message)
            self._send(message)
            return
        if len(queue) >= self.queue_size:
            self._overflow(message, queue)
            if self.closed:
                return
        queue.append(message)

    def _overflow(self, message, queue):
        policy = self.hub.policy(message.topic)
        if policy.overflow == "close":
            self.hub.counters["slow_consumer_closes"] += 1
            self.close_slow(message.topic)
            return
        dropped = queue.popleft()
        if self._dropped == 0:
            self._dropped_after = self.last_id
        self._dropped += 1
        self.hub.counters["dropped"] += 1
        log.debug("slow consumer: dropped {msg_id}", msg_id=dropped.msg_id)

    def close_slow(self, topic):
        self.sink.close(SLOW_CONSUMER, f"slow consumer: more than {self.queue_size} messages "
                                       f"waiting on {topic}")
        self.stop()

    def _send(self, message):
        self.last_key = message.key
        self.last_id = message.msg_id
        self.sink.send_message(message)

    def pause(self):
        self.paused = True

    def resume(self):
        """The transport takes data again: drain the queue until it pauses us again."""
        self.paused = False
        queue = self.queue
        while queue and not self.paused and not self.closed:
            message = queue.popleft()
            self._tell_drops(message)
            self._send(message)

    def _tell_drops(self, message):
        if self._dropped:
            self.hub.counters["gaps_told"] += 1
            self.sink.send_notice({"op": "gap", "reason": "slow_consumer",
                                   "dropped": self._dropped, "after": self._dropped_after,
                                   "next": message.msg_id})
            self._dropped = 0

    def stop(self):
        """The connection is gone: forget every subscription and what waits."""
        if self.closed:
            return
        self.closed = True
        for pattern in list(self.patterns):
            self.hub.remove(self, pattern)
        self.patterns.clear()
        self.queue.clear()
        self._held = []
        self.hub.counters["sessions"] -= 1
