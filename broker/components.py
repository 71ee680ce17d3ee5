"""The context every feature's builder gets while a node is built.

Builders (see :mod:`broker.registry`) check cross-references through it,
register what they make (routes, long-lived services, outgoing connections,
health checks) and find what others made (connections, the invoker).
"""

from twisted.application.service import IService

from broker.config.schema import config_error

__all__ = ["BuildContext"]


class BuildContext:
    """What a builder may use and where it puts what it builds.

    :ivar config: the whole checked configuration.
    :ivar reactor: the reactor (a fake one in unit tests).
    :ivar store: the :class:`~broker.services.store.ServiceStore`.
    :ivar invoker: the :class:`~broker.services.invoker.Invoker`.
    :ivar security: ``{name: security definition}``.
    :ivar resources: the node's :class:`~broker.runtime.Resources`.
    :ivar router: the HTTP :class:`~broker.channels.http.router.Router`.
    :ivar http_app: the :class:`~broker.channels.http.app.HTTPApp` (its
        ``upgrade_handlers`` take WebSocket endpoints).
    :ivar connections: ``{name: (type, connection object)}``.
    :ivar sections: ``{key: built object}`` for the top-level feature sections.
    """

    def __init__(self, *, config, reactor, store, invoker, security, resources, router, http_app,
                 node):
        self.config = config
        self.reactor = reactor
        self.store = store
        self.invoker = invoker
        self.security = security
        self.resources = resources
        self.router = router
        self.http_app = http_app
        self.node = node
        self.connections = {}
        self.sections = {}

    def add_service(self, service):
        """Start and stop ``service`` (an ``IService``) with the node."""
        service.setServiceParent(self.node)
        return service

    def adopt(self, built):
        """Start ``built`` with the node if it is an ``IService``; return it."""
        if IService.providedBy(built):
            self.add_service(built)
        return built

    def connection(self, section, key, type):
        """The connection named by ``section[key]``; it must be of ``type``.

        For ``redis``, a ``redis://`` URL may stand in for a name: one connection per
        address is made (with the defaults) and shared by every section naming it.
        """
        name = section[key]
        if type == "redis" and "://" in name:
            return self._redis_at(section, key, name)
        found = self.connections.get(name)
        known = sorted(n for n, (t, _) in self.connections.items() if t == type)
        if found is None or found[0] != type:
            raise config_error(section, key, f'no {type} connection "{name}" in connections '
                                             f'(known: {", ".join(known) or "none"})')
        return found[1]

    def _redis_at(self, section, key, url):
        from broker.redis import parse_redis_url, redis_connection_from_url
        try:
            host, port, db, _ = parse_redis_url(url)
        except ValueError as error:
            raise config_error(section, key, str(error)) from None
        found = self.connections.get(f"{host}:{port}/{db}")
        if found is None:
            connection = self.adopt(redis_connection_from_url(url, self))
            found = self.connections[connection.conn_name] = ("redis", connection)
        return found[1]

    def security_of(self, section, key="security"):
        """The security definition a section names, or None."""
        name = section.get(key)
        if name is not None and name not in self.security:
            raise config_error(section, key, f'no security definition "{name}" (known: '
                                             f'{", ".join(sorted(self.security)) or "none"})')
        return None if name is None else self.security[name]

    def require_service(self, section, key="service"):
        """Check ``section[key]`` names a loaded service; return the name."""
        name = section.get(key)
        if name is not None and name not in self.store:
            raise config_error(section, key, f'no such service "{name}"')
        return name
