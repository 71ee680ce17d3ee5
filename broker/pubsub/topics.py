"""Topic names and AMQP-style subscription patterns.

A topic is dotted words (``rates.EUR.USD``); a pattern may use ``*`` for
exactly one word and ``#`` for zero or more words (``rates.EUR.*``,
``rates.#``, ``#``), as in AMQP topic exchanges.
"""

import re
from functools import lru_cache

__all__ = ["OWNED_PREFIX", "TopicError", "check_topic", "check_pattern", "matches", "PatternSet"]

_WORD = re.compile(r"^[A-Za-z0-9_\-:]+$")
MAX_TOPIC_LENGTH = 255
#: Topics under it are owned (a task's ``broker.tasks.<id>``): a message there reaches only
#: sessions whose ``owner`` is its publisher, whatever pattern they subscribed with.
OWNED_PREFIX = "broker.tasks."


class TopicError(ValueError):
    """A topic name or pattern that is not allowed; the message says why."""


def check_topic(topic):
    """Return ``topic`` if it is a valid topic name (no wildcards), else raise TopicError."""
    if not isinstance(topic, str) or not topic:
        raise TopicError("a topic must be a non-empty string")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise TopicError(f"a topic must be at most {MAX_TOPIC_LENGTH} characters long")
    for word in topic.split("."):
        if word in ("*", "#"):
            raise TopicError(f'"{topic}": wildcards are for subscriptions, not topic names')
        if not _WORD.match(word):
            raise TopicError(f'"{topic}": each dot-separated word must be letters, digits, '
                             f'"_", "-" or ":"')
    return topic


def check_pattern(pattern):
    """Return ``pattern`` if it is a valid subscription pattern, else raise TopicError."""
    if not isinstance(pattern, str) or not pattern:
        raise TopicError("a topic pattern must be a non-empty string")
    if len(pattern) > MAX_TOPIC_LENGTH:
        raise TopicError(f"a topic pattern must be at most {MAX_TOPIC_LENGTH} characters long")
    for word in pattern.split("."):
        if word not in ("*", "#") and not _WORD.match(word):
            raise TopicError(f'"{pattern}": each word must be "*", "#" or letters, digits, '
                             f'"_", "-" or ":"')
    return pattern


@lru_cache(maxsize=4096)
def _compile(pattern):
    """A literal pattern stays a string; others become a regex over "." + topic."""
    parts = pattern.split(".")
    if "*" not in parts and "#" not in parts:
        return pattern
    regex = "".join(r"(?:\.[^.]+)*" if w == "#" else r"\.[^.]+" if w == "*" else r"\." + re.escape(w)
                    for w in parts)
    return re.compile(regex + r"\Z")


def matches(pattern, topic):
    """Whether ``topic`` matches ``pattern``."""
    compiled = _compile(pattern)
    if compiled.__class__ is str:
        return compiled == topic
    return compiled.match("." + topic) is not None


class PatternSet:
    """A list of patterns; ``topic in patterns`` if any of them matches (memoised, bounded)."""

    def __init__(self, patterns=()):
        self.patterns = tuple(check_pattern(p) for p in patterns)
        self._memo = {}

    def __contains__(self, topic):
        found = self._memo.get(topic)
        if found is None:
            found = any(matches(p, topic) for p in self.patterns)
            if len(self._memo) >= 4096:
                self._memo.clear()
            self._memo[topic] = found
        return found

    def __bool__(self):
        return bool(self.patterns)

    def __repr__(self):
        return f"PatternSet({list(self.patterns)!r})"
