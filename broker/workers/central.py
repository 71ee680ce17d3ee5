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
from broker.pubsub.hub import Hub
from broker.pubsub.stores import MemoryStore
from broker.workers.link import Link, RemoteError

__all__ = ["Central"]

log = Logger()


class _Fanout(Hub):
    """The main process's hub: no sessions of its own; each message goes to every worker."""

    def __init__(self, store, policies, links):
        super().__init__(store, policies, reactor=store.reactor)
        self.links = links

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
            _Fanout(self.store, topic_policies(pubsub), self.links)  # attaches itself
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
        return defer.maybeDeferred(_CACHE_OPS[op], cache, *args).addErrback(_mistake)

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
        asked = [link.call("report").addErrback(
            lambda f, link=link: {"id": getattr(link, "worker_id", None), "error": f.getErrorMessage()})
            for link in list(self.links)]

        def merged(answers):
            reports = [{**workers.get(report.get("id"), {}), **report} for report in answers]
            return sorted(reports, key=lambda r: (r.get("id") is None, r.get("id")))
        return defer.gatherResults(asked).addCallback(merged)


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
# Values cross the link as their JSON text, stored and read back as such (never re-encoded).

def _get(cache, key):
    data = cache.get_encoded(key)
    return None if data is None else data.decode()


def _get_many(cache, keys):
    found = {key: cache.get_encoded(key) for key in keys}
    return {key: data.decode() for key, data in found.items() if data is not None}


def _mistake(failure):
    """A ValueError/TypeError of the cache, answered as one the worker raises again as itself."""
    error = failure.trap(ValueError, TypeError)
    raise RemoteError("value_error" if error is ValueError else "type_error",
                      failure.getErrorMessage(), 400)


_CACHE_OPS = {
    "get": _get,
    "get_many": _get_many,
    "set": lambda cache, key, text, ttl: cache.store_encoded(key, cache.sized(text.encode()), ttl),
    "delete": lambda cache, key: cache.delete(key),
    "expire": lambda cache, key, ttl: cache.expire(key, ttl),
    "incr": lambda cache, key, amount: cache.incr(key, int(amount)).addCallback(str),
}
