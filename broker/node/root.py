"""One broker node: its parts, its components and its HTTP listener.

``build_node`` does all the work that can fail (config, plugins, every
component) before twistd starts, so a mistake stops startup with one clear
line.  The node is assembled from what was built, never patched afterwards.
While it runs, :meth:`BrokerNode.replace` and :meth:`BrokerNode.remove` change
one component (and rebuild those built on it) without touching the rest.
"""

import gc
import os
from pathlib import Path

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from broker.components import FEATURE, BuildContext, Component, NodeParts
from broker.config import ConfigError
from broker.config.loader import load_raw_yaml
from broker.config.schema import config_error
from broker.http.app import HTTPApp
from broker.http.listener import Listener
from broker.http.protocol import HTTPLimits, HTTPServerFactory
from broker.http.router import Router
from broker.jsonfast import COUNTERS as JSON_COUNTERS, set_max_depth
from broker.node.adminapi import admin_routes
from broker.node.assembly import Assembler
from broker.node.live import LiveConfig
from broker.node.model import load_config
from broker.node.pickup import HotDeployer, PickupWatcher
from broker.node.registry import BUILTIN_SERVICES, REGISTRY
from broker.runtime import Resources
from broker.services.invoker import Invoker
from broker.services.store import ServiceLoadError, ServiceStore
from broker.services.threads import ThreadRunner

__all__ = ["BrokerNode", "build_node", "exit_zero_on_sigterm"]

log = Logger()

#: Built-in pages the ready line gives the URL of, when the config serves them.
_READY_PAGES = ("broker.docs", "demo.live", "broker.admin.ui")


class BrokerNode(MultiService):
    """The root service: the thread pool, the components in build order, the HTTP listener.

    :ivar config: the checked configuration.
    :ivar parts: the :class:`~broker.components.NodeParts` every component uses.
    :ivar store: the service store.
    :ivar invoker: the invoker every channel calls.
    :ivar router: the HTTP routing table.
    :ivar resources: the :class:`~broker.runtime.Resources` services reach.
    :ivar http: the HTTP server factory (its ``counters`` feed metrics).
    :ivar listener: the HTTP :class:`~broker.http.listener.Listener`.
    """

    def __init__(self, config, parts, assembler, threads, http, listener):
        super().__init__()
        self.setName("broker")
        self.reactor = parts.reactor
        self.config = config
        self.parts = parts
        self.store = parts.store
        self.invoker = parts.invoker
        self.router = parts.router
        self.resources = parts.resources
        self.http = http
        self.listener = listener
        self.live = None       # the LiveConfig, once the admin API is in place
        self.deployer = None   # the HotDeployer
        self._assembler = assembler
        threads.setServiceParent(self)
        for component in assembler.built.values():
            component.setServiceParent(self)
        listener.setServiceParent(self)

    @property
    def components(self):
        """``{(kind, name): Component}`` in build order."""
        return dict(self._assembler.built)

    @property
    def security(self):
        """``{name: definition}``."""
        return self.parts.security

    # -- life cycle -------------------------------------------------------------------

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
        """Stop within ``limits.shutdown_timeout`` (see :meth:`stop_within`)."""
        exit_zero_on_sigterm(self.reactor)
        return self.stop_within(self.config.limits.shutdown_timeout)

    def _stop_everything(self):
        """Stop taking work first (the listener, and the channels, which drain what they
        took), then the rest: a service still running for a draining channel can use the
        outgoing connections and features it needs until it is done."""
        log.info("broker {name} stopping", name=self.config.name)
        Service.stopService(self)
        children = list(self)[::-1]
        takers = [c for c in children if c is self.listener or getattr(c, "takes_work", False)]
        d = _stop_all(takers)
        d.addCallback(lambda _: _stop_all([c for c in children if c not in takers]))
        return d

    def stop_within(self, timeout):
        """Stop, given at most ``timeout`` seconds: a Deferred firing once everything
        stopped or the time is up (what was still running is logged)."""
        done = defer.Deferred()
        stopped = defer.maybeDeferred(self._stop_everything)

        def finished(_):
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        def late():
            running = [child.name for child in self if getattr(child, "running", False)]
            log.warn("broker {name}: stopping took more than limits.shutdown_timeout ({timeout}s); "
                     "leaving {running}", name=self.config.name, timeout=timeout,
                     running=", ".join(running) or "nothing")
            done.callback(None)

        timer = self.reactor.callLater(timeout, late)
        stopped.addBoth(finished)
        return done

    def _ready(self):
        # Everything built at startup lives as long as the node: move it out of the
        # collector's sight, so a full collection scans only what requests allocate.
        gc.collect()
        gc.freeze()
        # Logged once the reactor runs (signal handlers are installed): the node is up.
        worker = self.parts.worker
        if worker is None:
            log.info("broker {name} ready: {urls}", name=self.config.name, urls=" ".join(self.urls()))
        else:  # the main process says when the whole node is
            log.info("worker {id} ready (pid {pid})", id=worker.id, pid=os.getpid())

    def urls(self):
        """Where to go first: the docs page, the WebSocket endpoints, the live page and the
        dashboard the config serves, else the root URL (a listener without an IP address: its address)."""
        listener = self.listener
        if listener.url() is None:
            return [str(listener.port.getHost())]
        pages = {route.name: route.path for route in self.router.routes if route.name in _READY_PAGES}
        urls = [listener.url(pages["broker.docs"])] if "broker.docs" in pages else []
        urls += [listener.url(path, websocket=True) for path in self.parts.upgrades
                 if not path.startswith("/broker/admin/")]  # the dashboard's own socket
        urls += [listener.url(pages["demo.live"])] if "demo.live" in pages else []
        if "broker.admin.ui" in pages and self.config.admin.security is not None:
            urls.append(listener.url(pages["broker.admin.ui"]))
        return urls or [listener.url()]

    # -- changing one component ------------------------------------------------------------

    def replace(self, key, section):
        """Build ``section`` as the component ``key`` (new, or replacing the one there) and
        rebuild what is built on it; the rest of the node is left alone.

        Everything is built and put in place before anything stops: a section that
        fails its checks raises :class:`~broker.config.ConfigError` and changes nothing.
        The replaced components stop (draining their work) before the new ones start.

        :return: a Deferred firing once the new components run.
        """
        new = self._assembler.rebuild(key, section)
        old = self._assembler.swap(new)
        d = self._stop(old)
        d.addCallback(lambda _: self._start(new))
        return d

    def remove(self, key):
        """Take out and stop the component ``key``; a Deferred firing once it stopped.

        :raise KeyError: no such component.
        :raise ValueError: naming the components built on it.
        """
        return self._stop([self._assembler.remove(key)])

    def _stop(self, components):
        """Stop ``components``, those built on others first."""
        d = defer.succeed(None)
        for component in reversed(components):
            d.addCallback(lambda _, c=component: c.disownServiceParent())
        return d

    def _start(self, components):
        for component in components:
            component.setServiceParent(self)
        log.info("components changed: {keys}",
                 keys=", ".join(f"{kind} {name}" for kind, name in (c.key for c in components)))


def exit_zero_on_sigterm(reactor):
    """A node stopped by SIGTERM stopped as asked: exit 0 (twistd would kill itself with the
    signal again once the reactor stopped, making the exit status -15)."""
    import signal
    if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
        reactor._exitSignal = None


def _stop_all(services):
    """Stop ``services`` together; a Deferred firing once all stopped."""
    return defer.DeferredList([defer.maybeDeferred(service.stopService) for service in services])


def _how_to_enable(section, key):
    """What to do about a definition's empty secret: set the variable it is read from."""
    where = config_error(section, key, "is empty")
    variables = section.variables_of(key)
    return f"set {' or '.join(variables)} ({where})" if variables else str(where)


def build_node(path, listen=None, reactor=None, pickup=None, worker=None, adopt=None):
    """Load ``path`` and build the node; :class:`ConfigError` on any mistake.

    :param listen: an endpoint string overriding ``http.listen``.
    :param pickup: a hot-deploy directory overriding ``services.pickup``.
    :param worker: in a worker process, its :class:`~broker.workers.shared.WorkerRole`.
    :param adopt: ``(fd, address family, endpoint string)``: serve on that listening
        socket (a worker's, bound by the main process) instead of binding one.
    """
    if reactor is None:
        from twisted.internet import reactor
    config = load_config(path)
    limits = config.limits
    set_max_depth(limits.max_json_depth)

    store = ServiceStore(config.simpleio.undeclared_input, config.services.timeouts)
    for cls in BUILTIN_SERVICES:
        store.add(cls, source="broker")
    try:
        store.load_paths(config.services.paths)
    except ServiceLoadError as error:
        raise config_error(config.services, "paths", str(error)) from None
    deployer = _deployer(config, store, pickup)
    deployer.scan()

    resources = Resources()
    threads = ThreadRunner(reactor, limits.threads, limits.thread_queue, limits.thread_stop_timeout)
    invoker = Invoker(store, reactor=reactor, threads=threads, timeout=limits.service_timeout,
                      max_depth=limits.max_invoke_depth, resources=resources,
                      max_response_size=limits.max_response_size)
    router = Router()
    app = HTTPApp(router, invoker, access_log=config.http.access_log)
    factory = HTTPServerFactory(app, _http_limits(limits), reactor=reactor,
                                server_header=config.http.server_header, access_log=app.access_log,
                                extra_headers=security_headers(config.http, listen),
                                worker=None if worker is None else worker.id)
    resources.metrics.update(invoker=lambda: invoker.counters, threads=threads.metrics,
                             json=lambda: JSON_COUNTERS, http=factory.metrics)

    listener = Listener(adopt[2] if adopt else _endpoint(config, listen, reactor), factory, reactor,
                        client_ca=config.http.client_ca,
                        require_client_certificate=config.http.client_certificate == "required",
                        adopt=adopt[:2] if adopt else None)
    parts = NodeParts(config=config, reactor=reactor, store=store, invoker=invoker,
                      resources=resources, router=router, upgrades=app.upgrade_handlers,
                      own_address=listener.own_address, worker=worker)
    assembler = Assembler(parts, REGISTRY)
    assembler.build_all(config)
    node = BrokerNode(config, parts, assembler, threads, factory, listener)
    _operations(node, path, deployer)
    return node


def _deployer(config, store, pickup):
    """The hot deployer of ``--pickup`` or ``services.pickup`` (none: it only reports)."""
    directory = pickup or config.services.pickup
    if directory is not None:
        directory = Path(directory).absolute()
        if not directory.is_dir():
            where = "--pickup" if pickup else None
            if where:
                raise ConfigError(f"--pickup: {directory}: no such directory")
            raise config_error(config.services, "pickup", f"{directory}: no such directory")
    return HotDeployer(store, directory, config.services.max_module_size)


def _operations(node, path, deployer):
    """Live configuration and hot deploy: the admin API, the pickup watcher, the stored
    changes (applied now when they are this node's own, polled when shared)."""
    state = node.components[(FEATURE, "live")].value
    try:
        raw = load_raw_yaml(path)
    except (OSError, ValueError):
        raw = {}
    live = node.live = LiveConfig(node, raw, state, file=str(path))
    node.deployer = deployer
    component = Component((FEATURE, "operations"), node.config.admin, ())
    ctx = BuildContext(node.parts, component, node.components)
    for route in admin_routes(ctx, live, deployer):
        ctx.add_route(route)
    if deployer.directory is not None:
        ctx.add_service(PickupWatcher(deployer, node.config.services.pickup_interval, node.reactor))
    ctx.add_service(_LiveSync(live))
    ctx.metrics("live", lambda: {**live.counters, **{f"deploy.{k}": v
                                                     for k, v in deployer.counters.items()}})
    component.attach(node.parts)
    component.setServiceParent(node)
    if not state.shared:
        failed = []
        live.sync().addErrback(failed.append)
        if failed:
            raise ConfigError(f"{state.where}: stored changes could not be read: "
                              f"{failed[0].getErrorMessage()}")


class _LiveSync(Service):
    """Polls a shared live state (Redis) while the node runs."""

    def __init__(self, live):
        self.live = live

    def startService(self):
        super().startService()
        self.live.reactor.callWhenRunning(self.live.start_polling)

    def stopService(self):
        super().stopService()
        self.live.stop_polling()


def security_headers(http, listen=None):
    """The headers every answer carries: ``http.security_headers`` and, on an ``ssl:``
    listener, HSTS for ``http.hsts`` seconds."""
    headers = []
    if http.security_headers:
        headers += [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer")]
    endpoint = listen or http.listen
    if http.hsts and endpoint.partition(":")[0].lower() == "ssl":
        headers.append(("Strict-Transport-Security", f"max-age={int(http.hsts)}; includeSubDomains"))
    return headers


def _http_limits(limits):
    return HTTPLimits(
        max_body_size=limits.max_body_size, max_header_count=limits.max_header_count,
        max_header_size=limits.max_header_size, header_timeout=limits.header_timeout,
        idle_timeout=limits.idle_timeout, body_timeout=limits.body_timeout,
        write_timeout=limits.write_timeout, max_pipelined=limits.max_pipelined,
        max_connections=limits.max_connections)


def _endpoint(config, listen, reactor):
    """The listening endpoint string, checked now (``--listen`` wins over ``http.listen``)."""
    endpoint = listen or config.http.listen
    try:
        serverFromString(reactor, endpoint)
    except (ValueError, KeyError, TypeError) as error:
        if listen:
            raise ConfigError(f"--listen: bad endpoint {endpoint!r}: {error}") from None
        raise config_error(config.http, "listen", f"bad endpoint {endpoint!r}: {error}") from None
    return endpoint
