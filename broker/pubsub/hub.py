"""The hub: publishes to a store (memory or Redis) and fans messages out to local sessions.

``resources.pubsub`` is the hub: ``publish(topic, data, publisher=None)``
answers a Deferred firing with the message id.  Every message reaches local
subscribers through :meth:`Hub.dispatch` in id order — straight from the
memory store, or from the Redis backplane (so a message published on any
node arrives once, in order, on every node).
"""

from twisted.internet import defer
from twisted.logger import Logger

from broker.pubsub.message import encode_data
from broker.pubsub.topics import OWNED_PREFIX, TopicError, check_topic, matches

__all__ = ["Hub", "TopicPolicy", "PublishError"]

log = Logger()

_CACHE_SIZE = 10_000


class PublishError(ValueError):
    """A publish that cannot be accepted (bad topic, data not JSON, too large)."""

    def __init__(self, field, problem):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


class TopicPolicy:
    """What applies to topics matching ``pattern``: history length and overflow policy."""

    __slots__ = ("pattern", "history", "overflow")

    def __init__(self, pattern="#", history=100, overflow="drop_oldest"):
        self.pattern, self.history, self.overflow = pattern, history, overflow


class Hub:
    """Topics of one node.

    :param store: a :class:`~broker.pubsub.stores.MemoryStore` or
        :class:`~broker.pubsub.stores.RedisStore`; it calls :meth:`dispatch`.
    :param policies: :class:`TopicPolicy` list, first match wins; a default last.
    :param max_message_size: the largest message data (JSON bytes) accepted.
    :param max_replay: the most messages one ``since`` replays.
    """

    def __init__(self, store, policies=(), max_message_size=1 << 20, max_replay=1000, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.store = store
        self.policies = tuple(policies) + (TopicPolicy(),)
        self.max_message_size = max_message_size
        self.max_replay = max_replay
        self._by_pattern = {}      # pattern -> {session: None}
        self._targets = {}         # topic -> tuple of sessions (cache)
        self._policy_of = {}       # topic -> TopicPolicy (cache)
        self._good_topics = set()  # topic names already checked (cache)
        self.counters = {"published": 0, "publish_errors": 0, "dispatched": 0, "deliveries": 0,
                         "sessions": 0, "subscriptions": 0, "replayed": 0, "gaps_told": 0,
                         "dropped": 0, "slow_consumer_closes": 0}
        store.attach(self)

    # -- publishing -----------------------------------------------------------

    def publish(self, topic, data, publisher=None):
        """Publish ``data`` (anything JSON can carry) to ``topic``; Deferred(msg_id).

        Fails with :class:`PublishError` naming the problem for a bad topic,
        data JSON cannot carry, or data over ``max_message_size``.
        """
        try:
            data_json = encode_data(data)
        except (TypeError, ValueError) as error:
            return self._refuse("data", f"cannot be sent as JSON: {error}")
        try:
            result = self.publish_json(topic, data_json, publisher)
        except PublishError as error:
            return defer.fail(error)
        return result if isinstance(result, defer.Deferred) else defer.succeed(result)

    def publish_json(self, topic, data_json, publisher=None):
        """Publish data already encoded as JSON text: the msg_id, or a Deferred of it.

        For edges that receive JSON (HTTP publish); raises :class:`PublishError`.
        """
        if topic not in self._good_topics:
            try:
                check_topic(topic)
            except TopicError as error:
                self.counters["publish_errors"] += 1
                raise PublishError("topic", str(error)) from None
            if not topic.startswith(OWNED_PREFIX):   # a task's topic is used once: not cached
                if len(self._good_topics) >= _CACHE_SIZE:
                    self._good_topics.clear()
                self._good_topics.add(topic)
        if len(data_json) > self.max_message_size // 4 \
                and len(data_json.encode()) > self.max_message_size:
            self.counters["publish_errors"] += 1
            raise PublishError("data", f"is larger than {self.max_message_size} bytes")
        self.counters["published"] += 1
        return self.store.publish(topic, data_json, str(publisher or ""))

    def _refuse(self, field, problem):
        self.counters["publish_errors"] += 1
        return defer.fail(PublishError(field, problem))

    def policy(self, topic):
        """The :class:`TopicPolicy` of ``topic``."""
        found = self._policy_of.get(topic)
        if found is None:
            found = next(p for p in self.policies if matches(p.pattern, topic))
            if topic.startswith(OWNED_PREFIX):
                return found
            if len(self._policy_of) >= _CACHE_SIZE:
                self._policy_of.clear()
            self._policy_of[topic] = found
        return found

    def history_size(self, topic):
        return self.policy(topic).history

    # -- subscribing ----------------------------------------------------------

    def add(self, session, pattern):
        """Start delivering messages on topics matching ``pattern`` to ``session``."""
        sessions = self._by_pattern.setdefault(pattern, {})
        if session not in sessions:
            sessions[session] = None
            self.counters["subscriptions"] += 1
            self._targets.clear()

    def remove(self, session, pattern):
        sessions = self._by_pattern.get(pattern)
        if sessions is not None and session in sessions:
            del sessions[session]
            self.counters["subscriptions"] -= 1
            if not sessions:
                del self._by_pattern[pattern]
            self._targets.clear()

    def replay(self, pattern, key):
        """Deferred(:class:`~broker.pubsub.history.Replay`) of ``pattern`` after ``key``."""
        return self.store.replay(pattern, key, self.max_replay)

    # -- delivering -----------------------------------------------------------

    def dispatch(self, message):
        """Hand ``message`` to every local session subscribed to its topic (once each)."""
        self.counters["dispatched"] += 1
        topic = message.topic
        targets = self._targets.get(topic)
        if targets is None:
            found = {}
            for pattern, sessions in self._by_pattern.items():
                if matches(pattern, topic):
                    found.update(sessions)
            targets = tuple(found)
            if topic.startswith(OWNED_PREFIX):  # a task's result: its owner's sessions only,
                publisher = message.publisher   # and its topic not cached (used once)
                targets = [s for s in targets if getattr(s, "owner", None) == publisher]
            else:
                if len(self._targets) >= _CACHE_SIZE:
                    self._targets.clear()
                self._targets[topic] = targets
        for session in targets:
            try:
                session.deliver(message)
            except Exception:
                log.failure("delivering {msg_id} to a session failed", msg_id=message.msg_id)
        self.counters["deliveries"] += len(targets)

    def resync(self):
        """The backplane was down: each session fetches what it may have missed."""
        unique = {}
        for sessions in self._by_pattern.values():
            unique.update(sessions)
        for session in unique:
            session.resync()

    def subscribers(self):
        """``{pattern: sessions subscribed to it}``."""
        return {pattern: len(sessions) for pattern, sessions in self._by_pattern.items()}

    def metrics(self):
        counters = dict(self.counters)
        counters.update(self.store.counters)
        unique = {}
        for sessions in self._by_pattern.values():
            unique.update(sessions)
        counters["queued"] = sum(len(session.queue) for session in unique)
        return counters
