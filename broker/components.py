"""Components: the parts of a node, each built from one config section.

Every security definition, connection, outgoing connection, feature and
channel is a :class:`Component`.  It is *built* from its checked section by
its type's builder (a :class:`ComponentType` in the node's registry), which
declares what it needs (:class:`Needs`) instead of relying on build order.
Building has no effect on the node: the builder records what it makes
through its :class:`BuildContext` (routes, upgrade handlers, services,
health checks, metrics, resources lent to services).  *Attaching* puts those
in place, *starting* starts its long-lived services; stopping and detaching
undo both, so a component can be replaced on its own while the node runs.
"""

from twisted.application.service import MultiService

from broker.config.schema import config_error
from broker.services.base import derive_name

__all__ = ["BuildContext", "Component", "ComponentType", "Needs", "NodeParts", "SECURITY",
           "CONNECTION", "OUTGOING", "FEATURE", "CHANNEL"]

#: Component kinds, in the order a node lists and builds them when nothing else decides.
SECURITY, CONNECTION, OUTGOING, FEATURE, CHANNEL = "security", "connection", "outgoing", "feature", \
    "channel"
KINDS = (SECURITY, CONNECTION, OUTGOING, FEATURE, CHANNEL)


class Needs:
    """One thing a section needs built before it: a connection, a feature or a definition.

    :param kind: the needed component's kind.
    :param key: the section key naming it (the error is reported there); for a
        feature, the key whose value switches the need on (None: always).
    :param type: the connection type it must be (``amqp``, ``redis``...).
    :param name: a feature's name (features are named by their section key).
    :param each: a key holding a list of sections that may each name one too
        (``cache.named``).
    """

    __slots__ = ("kind", "key", "type", "name", "each")

    def __init__(self, kind, key=None, *, type=None, name=None, each=None):
        self.kind, self.key, self.type, self.name, self.each = kind, key, type, name, each

    @classmethod
    def connection(cls, key, type, each=None):
        """``section[key]`` names a connection of ``type`` (so may each of ``section[each]``)."""
        return cls(CONNECTION, key, type=type, each=each)

    @classmethod
    def feature(cls, name, when=None):
        """The feature ``name`` (only when ``section[when]`` is set, if given)."""
        return cls(FEATURE, when, name=name)

    @classmethod
    def security(cls, key="security"):
        """``section[key]`` names a security definition."""
        return cls(SECURITY, key)

    def of(self, section):
        """``[((kind, name), where)]``: what the section needs, and the section naming it."""
        found = []
        for where in (section, *(section.get(self.each) or ())) if self.each else (section,):
            value = where.get(self.key) if self.key is not None else True
            if value in (None, "", False):
                continue
            found.append(((self.kind, self.name if self.name is not None else value), where))
        return found


class ComponentType:
    """How one config ``type`` (or feature section) becomes a component.

    :param schema: the section's schema (None: another entry owns the section).
    :param build: ``build(section, ctx)`` → the built value (what dependents get);
        an ``IService`` is started and stopped with the component.
    :param needs: :class:`Needs` of every section of this type.
    :param kind: for outgoing types, the ``self.out.<kind>`` they join.
    :param section: for features, the config key they are built from (default: their own).
    :param takes_work: a feature that takes work from outside like a channel (a front such
        as ``/ws``): stopped first, with the channels, so that what it took can finish.
    :param once_per_node: ``callable(section) -> bool``: whether a section of this type must
        run in one process of a node (a socket it binds): in a node of worker processes,
        only the primary worker builds it.
    """

    __slots__ = ("schema", "build", "needs", "kind", "section", "takes_work", "once_per_node")

    def __init__(self, schema, build, needs=(), kind=None, section=None, takes_work=False,
                 once_per_node=None):
        self.schema, self.build, self.needs, self.kind, self.section = \
            schema, build, tuple(needs), kind, section
        self.takes_work = takes_work
        self.once_per_node = once_per_node


class NodeParts:
    """What every component of one node may use; fixed for the node's life.

    :ivar config: the whole checked configuration.
    :ivar reactor: the reactor (a fake one in unit tests).
    :ivar store: the :class:`~broker.services.store.ServiceStore`.
    :ivar invoker: the :class:`~broker.services.invoker.Invoker`.
    :ivar resources: the :class:`~broker.runtime.Resources` services reach.
    :ivar router: the HTTP routing table (``add``/``remove`` routes).
    :ivar upgrades: ``{path: handler}`` for connections asking for ``Upgrade`` (WebSocket).
    :ivar own_address: ``callable() -> "http://host:port"`` of the node's own HTTP
        listener once it listens, else None.
    :ivar security: ``{name: definition}`` of the attached security components.
    :ivar worker: None in a node of one process; in a worker process, its role
        (:class:`broker.workers.shared.WorkerRole`): what it shares with the other
        workers through the main process, and whether it is the primary.
    """

    def __init__(self, *, config, reactor, store, invoker, resources, router, upgrades,
                 own_address=lambda: None, worker=None):
        self.config = config
        self.reactor = reactor
        self.store = store
        self.invoker = invoker
        self.resources = resources
        self.router = router
        self.upgrades = upgrades
        self.own_address = own_address
        self.worker = worker
        self.security = {}


class Component(MultiService):
    """One built part of a node, with what it lends the node while attached.

    :ivar key: ``(kind, name)``, e.g. ``("channel", "orders")``.
    :ivar section: the checked config section it was built from.
    :ivar needs: the keys of the components it was built with.
    :ivar value: what the builder returned (a connection, a hub, a route...).
    :ivar takes_work: it takes work from outside (a channel, a front): the node stops it
        first and lets it drain before stopping what it uses.
    """

    def __init__(self, key, section, needs, takes_work=False):
        super().__init__()
        self.key = key
        self.takes_work = takes_work or key[0] == CHANNEL
        self.section = section
        self.needs = frozenset(needs)
        self.value = None
        self.setName(f"{key[0]}:{key[1]}")
        self.attached = False
        self._routes = []
        self._upgrades = {}
        self._outgoing = []
        self._services = []      # service classes deployed into the store
        self._deployed = []      # their names once deployed
        self._lent = {}          # Resources attributes
        self._health = {}
        self._metrics = {}

    def attach(self, parts):
        """Put routes, handlers, outgoing connections, checks and lent resources in place."""
        done = []
        try:
            for route in self._routes:
                parts.router.add(route)
                done.append(lambda route=route: parts.router.remove(route))
        except ValueError as error:
            for undo in reversed(done):
                undo()
            raise config_error(self.section, "path", str(error)) from None
        resources = parts.resources
        for path, handler in self._upgrades.items():
            parts.upgrades[path] = handler
        for kind, name, value in self._outgoing:
            resources.out.kind(kind).add(name, value)
        self._deployed = [parts.store.add(cls, source="broker").name for cls in self._services]
        for attribute, value in self._lent.items():
            setattr(resources, attribute, value)
        resources.health.update(self._health)
        resources.metrics.update(self._metrics)
        if self.key[0] == SECURITY:
            parts.security[self.key[1]] = self.value
        self.attached = True

    def detach(self, parts):
        """Undo :meth:`attach` (the component is stopped first)."""
        if not self.attached:
            return
        self.attached = False
        resources = parts.resources
        for name in self._health:
            resources.health.pop(name, None)
        for name in self._metrics:
            resources.metrics.pop(name, None)
        for attribute in self._lent:
            setattr(resources, attribute, _EMPTY.get(attribute))
        for name in self._deployed:
            parts.store.remove(name)
        for kind, name, _ in self._outgoing:
            resources.out.kind(kind).remove(name)
        for path in self._upgrades:
            parts.upgrades.pop(path, None)
        for route in self._routes:
            parts.router.remove(route)
        if self.key[0] == SECURITY:
            parts.security.pop(self.key[1], None)

    def describe(self):
        """What the component is, for logs and the admin API."""
        kind, name = self.key
        return {"kind": kind, "name": name, "type": self.section.get("type"),
                "running": bool(self.running), "needs": sorted(f"{k}:{n}" for k, n in self.needs)}


#: What a lent attribute of Resources goes back to when its component is detached.
_EMPTY = {"cache": None, "caches": {}, "pubsub": None, "rbac": None, "tasks": None}


class BuildContext:
    """What one builder may use, and where it records what it builds.

    Reading: ``config``, ``reactor``, ``store``, ``invoker``, ``resources``
    and the needed components (:meth:`connection`, :meth:`feature`,
    :meth:`security_of`).  Recording (put in place when the component is
    attached): :meth:`add_route`, :meth:`add_upgrade`, :meth:`add_service`,
    :meth:`deploy`, :meth:`lend`, :meth:`health`, :meth:`metrics`.
    """

    def __init__(self, parts, component, built, connection_name=lambda type, value: value):
        self._parts = parts
        self._component = component
        self._built = built
        self._connection_name = connection_name
        self.config = parts.config
        self.reactor = parts.reactor
        self.store = parts.store
        self.invoker = parts.invoker
        self.resources = parts.resources
        self.own_address = parts.own_address
        self.worker = parts.worker

    @property
    def definitions(self):
        """The node's live ``{name: definition}``: read it when a caller comes, not now, to
        see a definition replaced while the node runs."""
        return self._parts.security

    @property
    def security(self):
        """``{name: definition}`` of every security definition built so far."""
        return {name: c.value for (kind, name), c in self._built.items() if kind == SECURITY}

    # -- what was built before --------------------------------------------------------

    def connection(self, section, key, type):
        """The connection named by ``section[key]``; it must be of ``type``."""
        name = self._connection_name(type, section[key])
        found = self._built.get((CONNECTION, name))
        if found is None or found.section.get("type") not in (type, None):
            known = sorted(n for (k, n), c in self._built.items()
                           if k == CONNECTION and c.section.get("type") == type)
            raise config_error(section, key, f'no {type} connection "{name}" in connections '
                                             f'(known: {", ".join(known) or "none"})')
        return found.value

    def feature(self, name, section=None, key=None):
        """The value of feature ``name`` (a hub, the caches...); a config error at
        ``section[key]`` when the node does not have it enabled."""
        found = self._built.get((FEATURE, name))
        if found is None or found.value is None:
            if section is None:
                return None
            raise config_error(section, key, f"{name} is not configured on this node")
        return found.value

    def security_of(self, section, key="security"):
        """The security definition a section names, or None."""
        name = section.get(key)
        if name is None:
            return None
        found = self._built.get((SECURITY, name))
        if found is None:
            raise config_error(section, key, f'no security definition "{name}" (known: '
                               f'{", ".join(sorted(self.security)) or "none"})')
        return found.value

    def require_service(self, section, key="service"):
        """Check ``section[key]`` names a loaded service; return the name."""
        name = section.get(key)
        if name is not None and name not in self.store \
                and name not in {cls.name or derive_name(cls) for cls in self._component._services}:
            raise config_error(section, key, f'no such service "{name}"')
        return name

    # -- what this component makes --------------------------------------------------------

    def add_route(self, route):
        """Answer ``route`` over HTTP while the component is attached."""
        self._component._routes.append(route)
        return route

    def add_upgrade(self, path, handler):
        """Hand connections asking to upgrade at ``path`` (WebSocket) to ``handler(request)``."""
        self._component._upgrades[path] = handler

    @property
    def routes(self):
        """Every route the node answers now (read only: for documents such as OpenAPI)."""
        return self._parts.router.routes

    def add_outgoing(self, kind, name, value):
        """Lend ``value`` to services as ``self.out.<kind>[name]`` while attached."""
        self._component._outgoing.append((kind, name, value))

    def add_service(self, service):
        """Start and stop ``service`` (an ``IService``) with the component."""
        service.setServiceParent(self._component)
        return service

    def deploy(self, cls):
        """Deploy the service class ``cls`` while the component is attached."""
        self._component._services.append(cls)

    def lend(self, attribute, value):
        """Set ``resources.<attribute>`` (``cache``, ``caches``, ``pubsub``) while attached."""
        self._component._lent[attribute] = value

    def health(self, name, check):
        """Report ``check()`` (a dict with ``"ok"``) under ``name`` at ``/broker/health``."""
        self._component._health[name] = check

    def metrics(self, name, counters):
        """Report ``counters()`` under ``name`` at ``/broker/metrics``."""
        self._component._metrics[name] = counters

