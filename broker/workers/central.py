"""The main process's side of a node of workers: what the workers share, kept in one place.

Without Redis the workers of one node share through the main process: it
numbers every published message, keeps the topics' history and sends each
message to every worker in id order (each worker's hub hands it to its own
subscribers, so every subscriber gets it once, in order); it keeps the
node's memory caches; and it sums what each worker reports for the node's
``/broker/health`` and ``/broker/metrics``.  With Redis configured for
pub/sub or a cache, the workers use Redis directly, as separate nodes do.
"""

from collections import deque

from twisted.internet import defer
from twisted.logger import Logger

from broker.cache.config import backend_of, memory_cache
from broker.pubsub.feature import topic_policies
from broker.pubsub.stores import MemoryStore
from broker.pubsub.topics import matches
from broker.workers.link import Link, RemoteError

__all__ = ["Central"]

log = Logger()


class _Fanout:
    """The hub the main process's store talks to: it sends each message to every worker."""

    def __init__(self, policies, links):
        self.policies = policies
        self.links = links
        self._sizes = {}

    def history_size(self, topic):
        size = self._sizes.get(topic)
        if size is None:
            size = next(p.history for p in self.policies if matches(p.pattern, topic))
            if len(self._sizes) >= 10_000:
                self._sizes.clear()
            self._sizes[topic] = size
        return size

    def dispatch(self, message):
        frame = Link.notice_frame("message", message.topic, message.msg_id, message.published_at,
                                  message.data_json, message.publisher)
        for link in self.links:
            link.send_frame(frame)


class Central:
    """What the workers of one node share, and the calls they make to the main process.

    :param config: the node's checked configuration.
    :param reactor: the main process's reactor.
    :param workers: ``callable() -> [report]`` of the supervised workers (id, pid, state).
    """

    def __init__(self, config, reactor, workers=lambda: []):
        self.reactor = reactor
        self.links = []
        self.workers = workers
        self.store = None
        pubsub = config.pubsub
        if pubsub.enabled and not pubsub.redis:
            self.store = MemoryStore(reactor, pubsub.max_topics)
            self.store.attach(_Fanout(topic_policies(pubsub), self.links))
        self.caches = {}
        sections = [("default", config.cache)] + [(c.name, c) for c in config.cache.named]
        for name, section in sections:
            if backend_of(section) == "memory":
                self.caches[name] = memory_cache(section, name, reactor)
        self.objects = _node_objects(config, reactor)
        self.handlers = {"publish": self.publish, "replay": self.replay, "cache": self.cache,
                         "node_report": self.node_report, "object": self.call_object}
        self.notices = {"broadcast": self.broadcast}
        self._told = {}  # kind -> recent broadcasts, told again to a worker that starts later

    # -- links ------------------------------------------------------------------------------

    def add(self, link):
        """Share with one more worker (its link is connected); tell it what was broadcast."""
        self.links.append(link)
        for kind, told in self._told.items():
            for args in told:
                link.notify(kind, *args)

    def remove(self, link):
        if link in self.links:
            self.links.remove(link)

    # -- calls from workers -----------------------------------------------------------------

    def publish(self, topic, data_json, publisher):
        if self.store is None:
            raise ValueError("pub/sub is not kept by the main process")
        return self.store.publish(topic, data_json, publisher)

    def replay(self, pattern, epoch, seq, limit):
        d = self.store.replay(pattern, (epoch, seq), limit)
        return d.addCallback(lambda replay: [
            [[m.topic, m.msg_id, m.published_at, m.data_json, m.publisher] for m in replay.messages],
            replay.gap])

    def cache(self, name, op, *args):
        cache = self.caches.get(name)
        if cache is None:
            raise KeyError(f"no memory cache {name}")
        return _CACHE_OPS[op](cache, *args)

    def call_object(self, name, method, *args):
        """A method of one of the node's objects (the task store, the live state)."""
        found = self.objects.get(name)
        if found is None or method not in found[1]:
            raise KeyError(f"no node object {name}.{method}")
        return getattr(found[0], method)(*args)

    def broadcast(self, kind, *args):
        """A worker's news for every worker (a token revoked): sent to all, and kept (bounded)
        for workers that start later."""
        told = self._told.setdefault(kind, deque(maxlen=100_000))
        told.append(args)
        frame = Link.notice_frame(kind, *args)
        for link in self.links:
            link.send_frame(frame)

    def node_report(self):
        """Every worker's report: ``{"workers": [...]}`` (a worker that does not answer in
        time is reported with its error)."""
        workers = {w["id"]: w for w in self.workers()}
        asked = []
        for link in list(self.links):
            d = link.call("report")
            d.addErrback(lambda f, link=link: {"id": getattr(link, "worker_id", None),
                                               "error": f.getErrorMessage()})
            asked.append(d)

        def merged(answers):
            reports = []
            for ok, report in answers:
                supervised = workers.get(report.get("id"), {})
                reports.append({**supervised, **report})
            reports.sort(key=lambda r: (r.get("id") is None, r.get("id")))
            return reports
        return defer.gatherResults(asked).addCallback(
            lambda answers: merged([(True, a) for a in answers]))


def _node_objects(config, reactor):
    """``{name: (object, methods workers may call)}``: what the main process keeps for all."""
    objects = {}
    tasks = config.tasks
    if tasks.enabled and not tasks.redis:
        from broker.tasks.store import MemoryTaskStore
        objects["tasks"] = (MemoryTaskStore(reactor, tasks.max_tasks),
                            {"put", "get", "heartbeat", "alive"})
    live = config.live
    if not live.redis:
        from broker.node.livestate import main_live_state
        objects["live"] = (main_live_state(live), {"load", "save", "version"})
    return objects


# -- the node's memory caches, as the main process applies workers' operations ------------------

def _get(cache, key):
    entry = cache._live(key)
    return None if entry is None else entry[0].decode()


def _set(cache, key, text, ttl):
    data = text.encode()
    if len(data) > cache.max_value_size:
        raise ValueError(f"cache {cache.name}: value of {len(data)} bytes is over the "
                         f"max_value_size of {cache.max_value_size} bytes")
    return cache.store_encoded(key, data, ttl)


def _get_many(cache, keys):
    found = {}
    for key in keys:
        entry = cache._live(key)
        if entry is not None:
            found[key] = entry[0].decode()
    return found


def _incr(cache, key, amount):
    return str(cache._incr(key, int(amount)))


def _value_errors(op):
    def checked(cache, *args):
        try:
            return op(cache, *args)
        except (ValueError, TypeError) as error:
            raise RemoteError("value_error" if isinstance(error, ValueError) else "type_error",
                              str(error), 400) from None
    return checked


_CACHE_OPS = {name: _value_errors(op) for name, op in {
    "get": _get, "set": _set, "get_many": _get_many, "incr": _incr,
    "delete": lambda cache, key: cache._delete(key),
    "expire": lambda cache, key, ttl: cache._expire(key, ttl),
}.items()}
