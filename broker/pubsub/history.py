"""Bounded per-topic history kept in memory (the default store)."""

from collections import OrderedDict, deque

from broker.pubsub.topics import matches

__all__ = ["MemoryHistory", "Replay"]


class Replay:
    """What a resume finds: the messages after ``since`` in order, and whether some are gone.

    :ivar messages: messages newer than ``since``, oldest first.
    :ivar gap: True when messages after ``since`` were already dropped from
        history (or the id is from another epoch), so the replay is incomplete.
    """

    __slots__ = ("messages", "gap")

    def __init__(self, messages, gap):
        self.messages = messages
        self.gap = gap


class _Topic:
    __slots__ = ("messages", "dropped_key")

    def __init__(self, size):
        self.messages = deque(maxlen=size)
        self.dropped_key = None  # the newest key no longer kept


class MemoryHistory:
    """The last ``size_of(topic)`` messages of at most ``max_topics`` topics.

    :param size_of: ``callable(topic) -> int``, the history length of a topic (0 = none).
    :param max_topics: topics kept; the least recently published one is forgotten
        beyond it (counted in ``counters["topics_evicted"]``).
    """

    def __init__(self, size_of, max_topics=10_000):
        self._size_of = size_of
        self._max_topics = max_topics
        self._topics = OrderedDict()
        self.evicted_key = None  # newest key of any forgotten topic
        self.counters = {"history_dropped": 0, "topics_evicted": 0}

    def append(self, message):
        topic = self._topics.get(message.topic)
        if topic is None:
            size = self._size_of(message.topic)
            if size <= 0:
                return
            topic = self._topics[message.topic] = _Topic(size)
            if len(self._topics) > self._max_topics:
                _name, gone = self._topics.popitem(last=False)
                self.counters["topics_evicted"] += 1
                if gone.messages:
                    key = gone.messages[-1].key
                    self.evicted_key = key if self.evicted_key is None else max(key, self.evicted_key)
        else:
            self._topics.move_to_end(message.topic)
        messages = topic.messages
        if len(messages) == messages.maxlen:
            topic.dropped_key = messages[0].key
            self.counters["history_dropped"] += 1
        messages.append(message)

    def since(self, pattern, key, epoch, limit):
        """The :class:`Replay` of topics matching ``pattern`` after ``key`` (``(epoch, seq)``)."""
        found, gap = [], key[0] != epoch
        after = (epoch, 0) if gap else key
        if self.evicted_key is not None and self.evicted_key > after:
            gap = True
        for name, topic in self._topics.items():
            if not matches(pattern, name):
                continue
            if topic.dropped_key is not None and topic.dropped_key > after:
                gap = True
            for message in reversed(topic.messages):
                if message.key <= after:
                    break
                found.append(message)
        found.sort(key=_key)
        if len(found) > limit:
            found = found[-limit:]
            gap = True
        return Replay(found, gap)


def _key(message):
    return message.key
