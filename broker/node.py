"""One broker node: the service tree built from a checked configuration.

``build_node`` does all the work that can fail (config, plugins, routes)
before twistd starts, so a mistake stops startup with one clear line.
"""

import gc

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from broker import __version__
from broker.admin.openapi import build_openapi
from broker.channels.http.app import HTTPApp
from broker.channels.http.builtins import builtin_routes
from broker.channels.http.listener import Listener
from broker.channels.http.protocol import HTTPLimits, HTTPServerFactory
from broker.channels.http.router import Route, Router
from broker.channels.registry import CHANNEL_TYPES
from broker.components import BuildContext
from broker.config import ConfigError
from broker.config.model import load_config
from broker.config.schema import config_error
from broker.errors import NotFound
from broker.jsonfast import COUNTERS as JSON_COUNTERS, set_max_depth
from broker.registry import CONNECTION_TYPES, OUTGOING_TYPES, SECTIONS
from broker.runtime import Resources
from broker.security.registry import build_security
from broker.services.builtin import BUILTIN_SERVICES
from broker.services.invoker import Invoker
from broker.services.store import ServiceLoadError, ServiceStore
from broker.services.threads import ThreadRunner

__all__ = ["BrokerNode", "build_node"]

log = Logger()

#: Built-in pages the ready line gives the URL of, when the config serves them.
_READY_PAGES = ("broker.docs", "demo.live")


class BrokerNode(MultiService):
    """The root service: thread pool, connections, features, channels, HTTP listener.

    :ivar config: the checked configuration.
    :ivar store: the service store.
    :ivar invoker: the invoker every channel calls.
    :ivar router: the HTTP routing table.
    :ivar http: the HTTP server factory (its ``counters`` feed metrics).
    :ivar resources: the :class:`~broker.runtime.Resources` services reach.
    :ivar context: the :class:`~broker.components.BuildContext` the node was built with.
    :ivar listener: the HTTP :class:`~broker.channels.http.listener.Listener`.
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
        for section in self.config.security:
            definition = self.security[section.name]
            if not definition.usable:
                log.warn("security definition {name} accepts nobody: {fix}", name=definition.name,
                         fix=_how_to_enable(section, definition.secret_key))
        log.info("broker {name} starting: {services} services, {routes} HTTP routes",
                 name=self.config.name, services=len(self.store), routes=len(self.router.routes))
        super().startService()
        self.reactor.callWhenRunning(self._ready)

    def stopService(self):
        log.info("broker {name} stopping", name=self.config.name)
        return super().stopService()

    def _ready(self):
        # Everything built at startup lives as long as the node: move it out of the
        # collector's sight, so a full collection scans only what requests allocate.
        gc.collect()
        gc.freeze()
        # Logged once the reactor runs (signal handlers are installed): the node is up.
        log.info("broker {name} ready: {urls}", name=self.config.name, urls=" ".join(self.urls()))

    def urls(self):
        """Where to go first: the docs page, the WebSocket endpoints and the live page the
        config serves, else the root URL (a listener without an IP address: its address)."""
        listener = self.listener
        if listener.url() is None:
            return [str(listener.port.getHost())]
        pages = {route.name: route.path for route in self.router.routes if route.name in _READY_PAGES}
        urls = [listener.url(pages["broker.docs"])] if "broker.docs" in pages else []
        urls += [listener.url(path, websocket=True) for path in self.context.http_app.upgrade_handlers]
        urls += [listener.url(pages["demo.live"])] if "demo.live" in pages else []
        return urls or [listener.url()]


def _how_to_enable(section, key):
    """What to do about a definition's empty secret: set the variable it is read from."""
    where = config_error(section, key, "is empty")
    variables = section.variables_of(key)
    return f"set {' or '.join(variables)} ({where})" if variables else str(where)


def build_node(path, listen=None, reactor=None):
    """Load ``path`` and build the node; :class:`ConfigError` on any mistake.

    Order: services, security, connections, outgoing, feature sections,
    channels, then the HTTP listener (see :mod:`broker.registry`).

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
    resources = Resources()
    threads = ThreadRunner(reactor, limits.threads, limits.thread_queue, limits.thread_stop_timeout)
    invoker = Invoker(store, reactor=reactor, threads=threads, timeout=limits.service_timeout,
                      max_depth=limits.max_invoke_depth, resources=resources,
                      max_response_size=limits.max_response_size)
    resources.metrics["invoker"] = lambda: invoker.counters
    resources.metrics["threads"] = threads.metrics
    set_max_depth(limits.max_json_depth)
    resources.metrics["json"] = lambda: JSON_COUNTERS

    router = Router()
    app = HTTPApp(router, invoker, access_log=config.http.access_log)
    node = BrokerNode(config, store, invoker, router, None, security, reactor)
    node.resources = resources
    threads.setServiceParent(node)
    ctx = BuildContext(config=config, reactor=reactor, store=store, invoker=invoker,
                       security=security, resources=resources, router=router, http_app=app,
                       node=node)
    node.context = ctx
    _build_features(config, ctx)

    openapi = lambda: build_openapi(router.routes, store, config.name, __version__)  # noqa: E731
    routes, _ = builtin_routes(config.name, openapi, docs=config.http.docs, resources=resources)
    for route in routes:
        router.add(route)
    _build_channels(config, ctx)

    http_limits = HTTPLimits(
        max_body_size=limits.max_body_size, max_header_count=limits.max_header_count,
        max_header_size=limits.max_header_size, header_timeout=limits.header_timeout,
        idle_timeout=limits.idle_timeout, body_timeout=limits.body_timeout,
        write_timeout=limits.write_timeout, max_pipelined=limits.max_pipelined,
        max_connections=limits.max_connections)
    factory = HTTPServerFactory(app, http_limits, reactor=reactor,
                                server_header=config.http.server_header, access_log=app.access_log)
    node.http = factory
    resources.metrics["http"] = lambda: factory.counters
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


def _build_features(config, ctx):
    """Connections, outgoing connections and feature sections, in that order."""
    for section in config.connections:
        built = CONNECTION_TYPES[section.type][1](section, ctx)
        ctx.connections[section.name] = (section.type, ctx.adopt(built))
    for section in config.outgoing:
        _schema, kind, build = OUTGOING_TYPES[section.type]
        ctx.resources.out.kind(kind).add(section.name, ctx.adopt(build(section, ctx)))
    for key, (_schema, build) in SECTIONS.items():
        ctx.sections[key] = ctx.adopt(build(config[key], ctx))


def _build_channels(config, ctx):
    """Every channel: HTTP ones become routes, the others long-lived services."""
    for section in config.channels:
        _schema, build = CHANNEL_TYPES[section.type]
        ctx.require_service(section)
        try:
            built = build(section, ctx)
        except (ValueError, NotFound) as error:
            raise config_error(section, "path", str(error)) from None
        if isinstance(built, Route):
            ctx.router.add(built)
        else:
            ctx.adopt(built)
