"""The ``pubsub:`` config section and how a node gets its topics.

Builds the :class:`~broker.pubsub.hub.Hub` (``resources.pubsub``) and who may
use which topics.  The section also configures the fronts that the
transports build on the hub (:mod:`broker.websocket.front`).  See
``docs/websocket.md``.
"""

from twisted.application.service import Service

from broker.components import ComponentType, Needs
from broker.config.schema import (Bool, Choice, Duration, Field, Int, ListOf, MapOf, Schema, Size,
                                  Str, config_error)
from broker.pubsub.access import ANONYMOUS, Access, Grant
from broker.pubsub.hub import Hub, TopicPolicy
from broker.pubsub.topics import OWNED_PREFIX, TopicError, check_pattern

__all__ = ["FEATURE", "PUBSUB", "PubSubService", "build_pubsub", "topic_policies"]


def _patterns(values):
    for value in values:
        try:
            check_pattern(value)
        except TopicError as error:
            raise ValueError(str(error)) from None


_PATTERNS = ListOf(Str(min_length=1))

GRANT = Schema("pubsub permission", {
    "subscribe": Field(_PATTERNS, default=[], check=_patterns, doc="topic patterns it may subscribe to"),
    "publish": Field(_PATTERNS, default=[], check=_patterns, doc="topic patterns it may publish to"),
    "invoke": Field(_PATTERNS, default=[], check=_patterns,
                    doc="service name patterns it may invoke over WebSocket"),
})

TOPIC = Schema("pubsub topic policy", {
    "pattern": Field(Str(min_length=1), required=True, check=lambda p: _patterns([p])),
    "history": Field(Int(min=0, max=1_000_000), default=None, doc="messages kept for resume"),
    "overflow": Field(Choice("drop_oldest", "close"), default=None,
                      doc="when a subscriber's queue is full"),
})

WEBSOCKET = Schema("pubsub websocket", {
    "enabled": Field(Bool(), default=True),
    "path": Field(Str(pattern=r"^/[^\s?#]*$"), default="/ws"),
    "max_connections": Field(Int(min=1), default=10_000),
    "max_frame_size": Field(Size(min=125), default="1MiB"),
    "max_message_size": Field(Size(min=125), default="1MiB"),
    "open_handshake_timeout": Field(Duration(min=0.1, max=300), default="2500ms"),
    "close_handshake_timeout": Field(Duration(min=0.1, max=300), default="1s"),
    "auto_ping_interval": Field(Duration(min=0, max=3600), default="10s", doc="0 = off"),
    "auto_ping_timeout": Field(Duration(min=0, max=3600), default="5s"),
    "allowed_origins": Field(ListOf(Str(min_length=1)), default=[],
                             doc="Origin patterns (fnmatch) besides the same origin; "
                                 "clients sending no Origin are not browsers and are let in"),
    "trust_x_forwarded_for": Field(Int(min=0, max=10), default=0,
                                   doc="proxies in front whose X-Forwarded-For is believed"),
    "queue_size": Field(Int(min=1, max=1_000_000), default=256,
                        doc="messages waiting per subscriber while its socket is full"),
    "max_subscriptions": Field(Int(min=1, max=100_000), default=100),
    "max_pending_invokes": Field(Int(min=1, max=10_000), default=16),
    "rate_limit": Field(Schema("pubsub.websocket.rate_limit", {
        "rate": Field(Int(min=1), required=True, doc="frames per `per`, per connection"),
        "per": Field(Duration(min=0.001), default=1.0),
        "burst": Field(Int(min=1), default=None),
        "close_after": Field(Int(min=1, max=10_000), default=10,
                             doc="frames refused in a row before the connection is closed "
                                 "(4029)"),
    }), default=None, doc="frames a connection may send; over it an error frame"),
})

PUBSUB = Schema("pubsub", {
    "enabled": Field(Bool(), default=True),
    "redis": Field(Str(), default=None, doc="a redis connection's name or a redis:// URL: history "
                                            "in Redis Streams and a backplane shared by the nodes"),
    "namespace": Field(Str(pattern=r"^[A-Za-z0-9][\w.\-:]*$"), default="broker:pubsub",
                       doc="Redis key prefix; nodes of one cluster share it"),
    "history": Field(Int(min=0, max=1_000_000), default=100, doc="messages kept per topic"),
    "history_ttl": Field(Duration(min=1), default="1d", doc="Redis: a quiet topic's history expires"),
    "bus_retry_delay": Field(Duration(min=0.01, max=3600), default="1s",
                             doc="Redis: wait before SUBSCRIBE to the bus is tried again "
                                 "after Redis refused it (doubling after each refusal)"),
    "bus_retry_max_delay": Field(Duration(min=0.01, max=3600), default="30s",
                                 doc="Redis: the longest wait between SUBSCRIBE retries"),
    "max_topics": Field(Int(min=1), default=10_000, doc="memory: topics whose history is kept"),
    "max_replay": Field(Int(min=1, max=1_000_000), default=1000, doc="messages one resume replays"),
    "overflow": Field(Choice("drop_oldest", "close"), default="drop_oldest"),
    "max_message_size": Field(Size(min=1), default="1MiB", doc="published data, as JSON"),
    "http_publish": Field(Bool(), default=True, doc="POST /broker/publish/{topic}"),
    "live_page": Field(Bool(), default=False, doc="serve the /demo/live page"),
    "topics": Field(ListOf(TOPIC), default=[]),
    "permissions": Field(MapOf(GRANT), default={},
                         doc="security definition name (or anonymous) → what it may do"),
    "websocket": Field(WEBSOCKET, default={}),
})


class PubSubService(Service):
    """The node's topics: starts and stops the Redis backplane (when configured).

    :ivar hub: the :class:`~broker.pubsub.hub.Hub` services publish to.
    :ivar access: the :class:`~broker.pubsub.access.Access` its fronts check callers with.
    """

    def __init__(self, hub, access):
        self.hub = hub
        self.access = access
        self.setName("pubsub")

    def startService(self):
        super().startService()
        start = getattr(self.hub.store, "start", None)
        if start is not None:
            start()

    def stopService(self):
        super().stopService()
        stop = getattr(self.hub.store, "stop", None)
        return stop() if stop is not None else None


def topic_policies(section):
    """The :class:`TopicPolicy` list of a checked ``pubsub`` section, the default last."""
    policies = [TopicPolicy(t.pattern, section.history if t.history is None else t.history,
                            t.overflow or section.overflow) for t in section.topics]
    # tasks' results (broker.tasks.<id>, read once by their owner): no history unless the
    # config says otherwise, so they never push other topics' history out
    policies.append(TopicPolicy(OWNED_PREFIX + "#", 0, section.overflow))
    policies.append(TopicPolicy("#", section.history, section.overflow))
    return policies


def build_pubsub(section, ctx):
    """The node's topics from the checked ``pubsub`` section; None when disabled.

    Its fronts (``/ws``, ``POST /broker/publish/{topic}``, the live page) are
    built by :mod:`broker.websocket.front` from the same section.
    """
    if not section.enabled:
        return None
    from broker.pubsub.stores import MemoryStore, RedisStore

    grants = {}
    for name, grant in section.permissions.items():
        if name != ANONYMOUS and name not in ctx.security:
            raise config_error(section, "permissions", f'no security definition "{name}" '
                               f'(known: {", ".join(sorted(ctx.security)) or "none"}; '
                               f'or "{ANONYMOUS}")')
        grants[name] = Grant(name, grant.subscribe, grant.publish, grant.invoke)
    access = Access(ctx.definitions, grants, ctx.resources)

    policies = topic_policies(section)
    if section.redis:
        connection = ctx.connection(section, "redis", "redis")
        store = RedisStore(connection, section.namespace, ctx.reactor, section.history_ttl,
                           section.bus_retry_delay, section.bus_retry_max_delay)
        ctx.health("pubsub", store.health)
    elif ctx.worker is not None:
        store = ctx.worker.pubsub_store()  # the node's, kept by the main process
    else:
        store = MemoryStore(ctx.reactor, section.max_topics)
    hub = Hub(store, policies, section.max_message_size, section.max_replay, ctx.reactor)
    ctx.lend("pubsub", hub)
    ctx.metrics("pubsub", lambda: {**hub.metrics(), **access.counters})
    return PubSubService(hub, access)


#: The ``pubsub:`` section: topics, permissions, history, the Redis backplane.
FEATURE = ComponentType(PUBSUB, build_pubsub, needs=[Needs.connection("redis", "redis")])
