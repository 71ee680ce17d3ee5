"""What a running node lends its services: outgoing connections, caches, topics.

One :class:`Resources` per node; the invoker hands it to every service it
runs, which reaches it as ``self.out``, ``self.cache``, ``self.caches`` and
``self.publish``.  Features (AMQP, ZeroMQ, outgoing HTTP, cache, pub/sub)
fill it in while the node is built; a unit test builds one with fakes.
"""

from collections.abc import Mapping

from twisted.internet import defer

__all__ = ["Connections", "NoSuchConnection", "Outgoing", "Resources", "summed"]


class NoSuchConnection(KeyError):
    """A service asked for an outgoing connection that is not configured.

    A ``KeyError``, so ``name in self.out.amqp`` and ``.get(name)`` work.
    """

    def __str__(self):
        kind, name, known = self.args
        return (f'no outgoing {kind} connection "{name}" '
                f'(configured: {", ".join(sorted(known)) or "none"})')


class Connections(Mapping):
    """Outgoing connections of one kind, by name: ``self.out.amqp["demo"]``."""

    def __init__(self, kind):
        self.kind = kind
        self._items = {}

    def add(self, name, connection):
        if name in self._items:
            raise ValueError(f'outgoing {self.kind} connection "{name}" is defined twice')
        self._items[name] = connection

    def remove(self, name):
        self._items.pop(name, None)

    def __getitem__(self, name):
        try:
            return self._items[name]
        except KeyError:
            raise NoSuchConnection(self.kind, name, list(self._items)) from None

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


class Outgoing:
    """``self.out``: one :class:`Connections` per kind (``amqp``, ``zmq``, ``http``, ...)."""

    def __init__(self):
        self._kinds = {}

    def kind(self, kind):
        """The connections of ``kind``, created empty on first use."""
        connections = self._kinds.get(kind)
        if connections is None:
            connections = self._kinds[kind] = Connections(kind)
        return connections

    def __getattr__(self, kind):
        if kind.startswith("_"):
            raise AttributeError(kind)
        return self.kind(kind)

    def kinds(self):
        return dict(self._kinds)


class Resources:
    """A node's shared resources.

    :ivar out: :class:`Outgoing` connections by kind and name.
    :ivar cache: the default cache (set by the cache feature), or None.
    :ivar caches: named caches, ``{"default": cache, ...}``.
    :ivar pubsub: the topic publisher (set by the pub/sub feature), or None;
        it has ``publish(topic, data, publisher=None) -> Deferred(msg_id)``.
    :ivar rbac: the RBAC :class:`~broker.security.roles.Policy` (lent by ``auth:``), or None.
    :ivar tasks: the task runner (set by the tasks feature), or None: ``submit(...)``,
        ``status(task_id)``, ``wait(task_id)``, ``cancel(task_id)``, ``patterns(request)``.
    :ivar health: ``{name: callable() -> dict}``; each dict has ``"ok": bool``.
    :ivar metrics: ``{name: callable() -> dict of counters}``.
    """

    def __init__(self):
        self.out = Outgoing()
        self.cache = None
        self.caches = {}
        self.pubsub = None
        self.rbac = None
        self.tasks = None
        self.health = {}
        self.metrics = {}

    def publish(self, topic, data, publisher=None):
        """Publish ``data`` to ``topic``; a Deferred firing with the message id."""
        if self.pubsub is None:
            return defer.fail(RuntimeError("pub/sub is not configured on this node"))
        return self.pubsub.publish(topic, data, publisher=publisher)

    def health_report(self):
        """``(ok, {name: report})`` over every registered health check."""
        reports = {}
        for name, check in self.health.items():
            try:
                reports[name] = dict(check())
            except Exception as exc:  # a broken check is itself unhealthy
                reports[name] = {"ok": False, "error": str(exc)}
        return all(r.get("ok", False) for r in reports.values()), reports

    def metrics_report(self):
        return {name: dict(fn()) for name, fn in self.metrics.items()}


def summed(reports):
    """Counters of several workers added up: numbers summed key by key, nested mappings
    merged the same way, anything else taken from the first that has it."""
    total = {}
    for report in reports:
        for key, value in report.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
                total.setdefault(key, value)
            elif isinstance(value, dict):
                total[key] = summed([total.get(key, {}) if isinstance(total.get(key), dict) else {},
                                     value])
            else:
                previous = total.get(key, 0)
                total[key] = previous + value if isinstance(previous, (int, float)) \
                    and not isinstance(previous, bool) else previous
    return total

