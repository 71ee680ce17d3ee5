"""One broker node: the service tree built from a checked configuration.

``build_node`` does all the work that can fail (config, plugins, routes)
before twistd starts, so a mistake stops startup with one clear line.
"""

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from broker import __version__
from broker.admin.openapi import build_openapi
from broker.channels.http.app import HTTPApp
from broker.channels.http.builtins import builtin_routes
from broker.channels.http.listener import Listener
from broker.channels.http.protocol import HTTPLimits, HTTPServerFactory
from broker.channels.http.router import Router
from broker.channels.registry import CHANNEL_TYPES
from broker.config import ConfigError
from broker.config.model import load_config
from broker.config.schema import config_error
from broker.errors import NotFound
from broker.security.registry import build_security
from broker.services.builtin import BUILTIN_SERVICES
from broker.services.invoker import Invoker
from broker.services.store import ServiceLoadError, ServiceStore
from broker.services.threads import ThreadRunner

__all__ = ["BrokerNode", "build_node"]

log = Logger()


class BrokerNode(MultiService):
    """The root service: thread pool, HTTP listener and, later, other channels.

    :ivar config: the checked configuration.
    :ivar store: the service store.
    :ivar invoker: the invoker every channel calls.
    :ivar router: the HTTP routing table.
    :ivar http: the HTTP server factory (its ``counters`` feed metrics).
    """

    def __init__(self, config, store, invoker, router, http, security, reactor):
        super().__init__()
        self.reactor = reactor
        self.setName("broker")
        self.config = config
        self.store = store
        self.invoker = invoker
        self.router = router
        self.http = http
        self.security = security

    def startService(self):
        for definition in self.security.values():
            if not definition.usable:
                log.warn("security definition {name} has no secret set: it accepts nobody",
                         name=definition.name)
        log.info("broker {name} starting: {services} services, {routes} HTTP routes",
                 name=self.config.name, services=len(self.store), routes=len(self.router.routes))
        super().startService()
        self.reactor.callWhenRunning(self._ready)

    def stopService(self):
        log.info("broker {name} stopping", name=self.config.name)
        return super().stopService()

    def _ready(self):
        # Logged once the reactor runs (signal handlers are installed): the node is up.
        log.info("broker {name} ready", name=self.config.name)


def build_node(path, listen=None, reactor=None):
    """Load ``path`` and build the node; :class:`ConfigError` on any mistake.

    :param listen: an endpoint string overriding ``http.listen``.
    """
    if reactor is None:
        from twisted.internet import reactor
    config = load_config(path)
    limits = config.limits

    store = ServiceStore(config.simpleio.undeclared_input)
    for cls in BUILTIN_SERVICES:
        store.add(cls, source="broker")
    try:
        store.load_paths(config.services.paths)
    except ServiceLoadError as error:
        raise config_error(config.services, "paths", str(error)) from None

    security = {section.name: build_security(section) for section in config.security}

    threads = ThreadRunner(reactor, limits.threads, limits.thread_queue)
    invoker = Invoker(store, reactor=reactor, threads=threads, timeout=limits.service_timeout,
                      max_depth=limits.max_invoke_depth)

    router = Router()
    openapi = lambda: build_openapi(router.routes, store, config.name, __version__)  # noqa: E731
    routes, _ = builtin_routes(config.name, openapi, docs=config.http.docs)
    for route in routes:
        router.add(route)
    for section in config.channels:
        schema, build = CHANNEL_TYPES[section.type]
        if section.service not in store:
            raise config_error(section, "service", f'no such service "{section.service}"')
        try:
            router.add(build(section, security.get(section.get("security")), store))
        except (ValueError, NotFound) as error:
            raise config_error(section, "path", str(error)) from None

    app = HTTPApp(router, invoker, access_log=config.http.access_log)
    http_limits = HTTPLimits(
        max_body_size=limits.max_body_size, max_header_count=limits.max_header_count,
        max_header_size=limits.max_header_size, header_timeout=limits.header_timeout,
        idle_timeout=limits.idle_timeout, body_timeout=limits.body_timeout,
        max_pipelined=limits.max_pipelined, max_connections=limits.max_connections)
    factory = HTTPServerFactory(app, http_limits, reactor=reactor,
                                server_header=config.http.server_header, access_log=app.access_log)

    node = BrokerNode(config, store, invoker, router, factory, security, reactor)
    threads.setServiceParent(node)
    endpoint = listen or config.http.listen
    try:
        serverFromString(reactor, endpoint)
    except (ValueError, KeyError, TypeError) as error:
        if listen:
            raise ConfigError(f"--listen: bad endpoint {endpoint!r}: {error}") from None
        raise config_error(config.http, "listen", f"bad endpoint {endpoint!r}: {error}") from None
    node.listener = Listener(endpoint, factory, reactor)
    node.listener.setServiceParent(node)
    return node
