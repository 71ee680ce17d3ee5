"""The dashboard: ``/broker/admin/ui``, live over the broker's own WebSocket.

The page, its script and its styles are files of this package (no CDN),
served behind ``admin.security`` like everything under ``/broker/admin/``.
``/broker/admin/ws`` (same guard, checked at the handshake) pushes a
snapshot every ``admin.dashboard_interval``: services with calls, errors and
p50/p99, channels with their state, AMQP connections and queues, topics with
subscribers, scheduler jobs.  A client may ``tail`` a topic pattern (a pub/sub
session of its own, bounded like any subscriber's) and ``invoke`` a service
(the form is generated from its SimpleIO, sent once as the ``catalog``).
Jobs are run, enabled and disabled through ``/broker/admin/jobs``.
"""

import json
from importlib import resources as files

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import task
from twisted.logger import Logger

from broker.admin.guard import admin_guard
from broker.admin.jobs import check_same_origin, describe_job
from broker.admin.logs import mask_secrets
from broker.components import ComponentType, Needs
from broker.errors import BrokerError, NotFound, Unauthorized
from broker.http.protocol import HTTPResponse
from broker.http.router import Route, RouteDoc
from broker.pubsub.session import Session
from broker.pubsub.topics import TopicError, check_pattern
from broker.security.credentials import Credentials, authenticate

__all__ = ["DASHBOARD", "Snapshots", "build_dashboard"]

log = Logger()

PAGE_PATH, WS_PATH = "/broker/admin/ui", "/broker/admin/ws"
_STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'")
MAX_CONNECTIONS = 32
TAIL_QUEUE = 256


def _read(name):
    return files.files("broker.admin").joinpath("static", name).read_bytes()


def _input_fields(sio):
    if sio is None:
        return None
    return [{"name": elem.name, "required": required, "schema": elem.json_schema()}
            for elem, required in sio.inputs]


def _masked(report):
    return {key: mask_secrets(value) if isinstance(value, str) else value
            for key, value in report.items()}


class Snapshots:
    """What the dashboard shows, read from the node's parts when asked."""

    def __init__(self, ctx, scheduler, hub):
        self.name = ctx.config.name
        self.store, self.resources = ctx.store, ctx.resources
        self._routes = lambda: ctx.routes
        self.channels = [(s.name, s.type) for s in ctx.config.channels]
        self.scheduler, self.hub = scheduler, hub

    def catalog(self):
        """Every service and its SimpleIO input (None: it takes any JSON)."""
        return {"op": "catalog", "node": self.name, "services": [
            {"name": entry.name, "input": _input_fields(entry.sio)}
            for entry in sorted(self.store, key=lambda e: e.name)]}

    def snapshot(self, now):
        _, health = self.resources.health_report()
        metrics = self.resources.metrics
        return {
            "op": "snapshot", "node": self.name, "time": now,
            "services": [{"name": name, **stats.report(),
                          "errors": stats.client_errors + stats.service_errors + stats.timeouts}
                         for name, stats in sorted(self.store.stats.items()) if name in self.store],
            "channels": [self._channel(name, kind, health) for name, kind in self.channels],
            "amqp": {"connections": [{"name": key.split(".", 2)[2], **_masked(report)}
                                     for key, report in sorted(health.items())
                                     if key.startswith("amqp.connection.")],
                     "queues": [{"channel": key.split(".", 2)[2], "queue": report.get("queue"),
                                 "consumers": report.get("consumers"), "ok": report.get("ok")}
                                for key, report in sorted(health.items())
                                if key.startswith("amqp.channel.")]},
            "topics": self._topics(metrics),
            "jobs": self._jobs(),
        }

    def _channel(self, name, kind, health):
        report = health.get(f"{kind.split('_', 1)[0]}.channel.{name}")
        if report is not None:
            return {"name": name, "type": kind, "ok": bool(report.get("ok")),
                    "state": "ok" if report.get("ok") else "down",
                    "detail": mask_secrets(str(report.get("last_error") or ""))}
        routed = any(route.name == name or getattr(route.channel, "name", None) == name
                     for route in self._routes())
        return {"name": name, "type": kind, "ok": routed, "state": "serving" if routed else "stopped",
                "detail": ""}

    def _topics(self, metrics):
        if self.hub is None:
            return None
        counters = metrics["pubsub"]() if "pubsub" in metrics else self.hub.metrics()
        return {"published": counters.get("published", 0), "deliveries": counters.get("deliveries", 0),
                "dropped": counters.get("dropped", 0),
                "patterns": [{"pattern": p, "subscribers": n}
                             for p, n in sorted(self.hub.subscribers().items())]}

    def _jobs(self):
        if self.scheduler is None:
            return []
        leader = self.scheduler.lock.held()
        return [describe_job(job, leader) for job in self.scheduler.jobs.values()]


class DashboardProtocol(WebSocketServerProtocol):
    """One dashboard page: snapshots pushed, ``tail`` and ``invoke`` asked for."""

    session = None
    who = None
    paused = False

    def onConnect(self, request):
        factory = self.factory
        if factory.countConnections > MAX_CONNECTIONS:
            factory.counters["refused"] += 1
            raise ConnectionDeny(503, "too many dashboard connections")
        try:
            check_same_origin(request.headers)  # no cross-site socket riding on cached credentials
            self.who = factory.authenticate(request.headers, request.peer)
        except (Unauthorized, BrokerError) as error:
            factory.counters["refused"] += 1
            raise ConnectionDeny(getattr(error, "status", 401), error.message) from None
        return None

    def onOpen(self):
        self.factory.counters["opened"] += 1
        self.transport.registerProducer(self, True)
        self._send(self.factory.snapshots.catalog())
        self.push()
        self._loop = task.LoopingCall(self.push)
        self._loop.clock = self.factory.reactor
        self._loop.start(self.factory.interval, now=False)

    def pauseProducing(self):
        self.paused = True
        if self.session is not None:
            self.session.pause()

    def resumeProducing(self):
        self.paused = False
        if self.session is not None:
            self.session.resume()

    def stopProducing(self):
        if self.session is not None:
            self.session.stop()

    def onClose(self, wasClean, code, reason):
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.running:
            loop.stop()
        if self.session is not None:
            self.session.stop()
            self.session = None

    def push(self):
        """A snapshot, unless the page has not taken the last ones (it gets the next)."""
        if self.transport is None or getattr(self.transport, "disconnected", False):
            return
        if self.paused:
            self.factory.counters["snapshots_skipped"] += 1
            return
        self._send(self.factory.snapshots.snapshot(self.factory.reactor.seconds()))

    def _send(self, frame):
        self.sendMessage(json.dumps(frame, separators=(",", ":"), default=str).encode())

    def onMessage(self, payload, is_binary):
        try:
            frame = json.loads(payload)
            op = frame.get("op") if isinstance(frame, dict) else None
        except ValueError:
            frame, op = {}, None
        if op == "tail":
            self._tail(frame)
        elif op == "invoke":
            self._invoke(frame)
        else:
            self._send({"op": "error", "id": frame.get("id") if isinstance(frame, dict) else None,
                        "code": "bad_frame", "details": 'op must be "tail" or "invoke"'})

    # -- the sink of the tail's pub/sub session -------------------------------------

    def send_message(self, message):
        self.sendMessage(message.frame)

    def send_notice(self, notice):
        self._send(notice)

    def close(self, code, reason):
        self.sendClose(code, reason[:120])

    def _tail(self, frame):
        pattern = frame.get("pattern")
        hub = self.factory.snapshots.hub
        if hub is None:
            self._send({"op": "error", "code": "unavailable", "details": "pub/sub is off on this node"})
            return
        if self.session is not None:
            self.session.stop()
            self.session = None
        if not pattern:
            self._send({"op": "tailing", "pattern": None})
            return
        try:
            check_pattern(pattern)
        except (TopicError, TypeError) as error:
            self._send({"op": "error", "code": "bad_pattern", "details": str(error), "field": "pattern"})
            return
        session = Session(hub, self, TAIL_QUEUE, 1)
        session.subscribe(pattern)
        self.session = session
        log.info("dashboard of {who} tails {pattern}", who=self.who, pattern=pattern)
        self._send({"op": "tailing", "pattern": pattern})

    def _invoke(self, frame):
        request_id, service = frame.get("id"), frame.get("service")
        if not isinstance(service, str) or service not in self.factory.snapshots.store:
            self._send({"op": "error", "id": request_id, "code": "not_found",
                        "details": f"No such service: {service!r}", "field": "service"})
            return
        log.info("dashboard of {who} invokes {service}", who=self.who, service=service)
        d = self.factory.invoker.invoke_internal(service, frame.get("data"))

        def ok(payload):
            self._send({"op": "ok", "id": request_id, "service": service, "data": payload})

        def failed(failure):
            error = failure.value if isinstance(failure.value, BrokerError) else BrokerError()
            self._send({"op": "error", "id": request_id, "service": service, "code": error.code,
                        "details": error.message, "errors": error.errors})

        d.addCallbacks(ok, failed)


class DashboardFactory(WebSocketServerFactory):
    protocol = DashboardProtocol

    def __init__(self, snapshots, invoker, authenticate, reactor, interval):
        super().__init__(reactor=reactor)
        self.snapshots, self.invoker, self.authenticate = snapshots, invoker, authenticate
        self.interval = interval
        self.counters = {"opened": 0, "refused": 0, "snapshots_skipped": 0}
        self.setProtocolOptions(maxFramePayloadSize=65536, maxMessagePayloadSize=65536,
                                autoPingInterval=30, autoPingTimeout=10, allowedOrigins=["*"])

    def upgrade(self, http_request):
        if "websocket" not in http_request.headers.get("upgrade", "").lower():
            return None
        return self.buildProtocol(None)

    def metrics(self):
        return {**self.counters, "connections": self.countConnections}


def _page_routes(guard):
    page = _read("dashboard.html")

    def serve_page(request, cid, params, who):
        return HTTPResponse(200, [("Content-Type", "text/html; charset=utf-8"), ("X-Broker-CID", cid),
                                  ("Content-Security-Policy", _CSP), ("Cache-Control", "no-store")], page)

    cache = {}

    def serve_static(request, cid, params, who):
        name = params["name"]
        if name not in _STATIC:
            raise NotFound(f"No such file: {name}")
        body = cache.get(name) or cache.setdefault(name, _read(name))
        return HTTPResponse(200, [("Content-Type", _STATIC[name]), ("X-Broker-CID", cid),
                                  ("Cache-Control", "no-cache")], body)

    html = {"text/html": {"type": "string"}}
    return [
        Route("broker.admin.ui", PAGE_PATH, ("GET",), guard(serve_page), kind="builtin",
              doc=RouteDoc("The dashboard (live over /broker/admin/ws)", {200: ("The page", html)},
                           errors=(403,), tag="admin")),
        Route("broker.admin.ui.static", f"{PAGE_PATH}/static/{{name}}", ("GET",), guard(serve_static),
              kind="builtin", doc=RouteDoc("The dashboard's script and styles", {200: ("The file", {
                  "text/javascript": {"type": "string"}, "text/css": {"type": "string"}})},
                  errors=(403, 404), tag="admin", parameters=[{
                      "name": "name", "in": "path", "required": True,
                      "schema": {"enum": sorted(_STATIC)}}])),
    ]


def build_dashboard(section, ctx):
    """The page, its files and its WebSocket, on the scheduler and (when on) pub/sub."""
    guard = admin_guard(ctx)
    for route in _page_routes(guard):
        ctx.add_route(route)
    name, definitions = ctx.config.admin.security, ctx.definitions

    def authenticate_caller(headers, peer):
        if name is None:
            raise BrokerError("The admin API is disabled: name a security definition in admin.security")
        definition = authenticate(definitions[name], Credentials(headers, peer=peer))
        return f"{name}:{definition.caller}"

    pubsub = ctx.feature("pubsub")
    snapshots = Snapshots(ctx, ctx.feature("scheduler"), pubsub.hub if pubsub is not None else None)
    factory = DashboardFactory(snapshots, ctx.invoker, authenticate_caller, ctx.reactor,
                               section.dashboard_interval)
    ctx.add_upgrade(WS_PATH, factory.upgrade)
    ctx.metrics("dashboard", factory.metrics)
    return factory


#: ``/broker/admin/ui`` and ``/broker/admin/ws``, built from the ``admin:`` section.
DASHBOARD = ComponentType(None, build_dashboard, section="admin", takes_work=True,
                          needs=[Needs.feature("scheduler")])
