"""Subscribing to tasks' results over ``/ws``: ``broker.tasks.<id>``, ``broker.tasks.*``.

Task topics are owned: a task's final record reaches only sessions of the caller
that made it (:data:`~broker.pubsub.topics.OWNED_PREFIX`), so subscribing needs no
pub/sub permission.  ``broker.tasks.*`` (or ``.#``) receives every task of the
caller; ``broker.tasks.<id>`` is refused for another caller's task or an unknown
one, and its ``ok`` reply carries the task's status as ``task`` (already ``done``
when it finished before the subscription).
"""

import re

from twisted.internet import defer

from broker.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable, TooManyRequests
from broker.pubsub.topics import OWNED_PREFIX

__all__ = ["owned_subscribe"]

_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


def owned_subscribe(protocol, pattern):
    """Subscribe ``protocol``'s session to an owned ``pattern``: a Deferred of the ok fields."""
    session = protocol.session
    rest = pattern[len(OWNED_PREFIX):]
    if rest in ("*", "#"):
        return _subscribe(session, pattern)
    if not _TASK_ID.match(rest):
        return defer.fail(BadRequest(f'"{pattern}": subscribe to broker.tasks.<task id> or broker.tasks.*',
                                     errors=[{"field": "topic", "problem": "is not a task topic"}]))
    resources = getattr(protocol.factory, "resources", None)
    tasks = resources.tasks if resources is not None else None
    if tasks is None:
        return defer.fail(ServiceUnavailable("Tasks are not enabled on this node"))
    subscribed = _subscribe(session, pattern)   # first, so a result now on its way is not missed
    d = subscribed.addCallback(lambda fields: tasks.status(rest).addCallback(
        _checked, protocol, session, pattern, fields))
    return d


def _checked(found, protocol, session, pattern, fields):
    if found is None or found[0] != session.owner:
        if session is not None:
            session.unsubscribe(pattern)
        if found is None:
            raise NotFound(f"No such task: {pattern[len(OWNED_PREFIX):]}")
        protocol.factory.access.counters["denied"] += 1
        raise Forbidden("This task belongs to another caller")
    return {**fields, "task": found[1]}


def _subscribe(session, pattern):
    try:
        d = session.subscribe(pattern)
    except ValueError as error:
        return defer.fail(TooManyRequests(str(error), errors=[{"field": "topic", "problem": str(error)}]))
    return d.addCallback(lambda result: {"topic": pattern, **result})
