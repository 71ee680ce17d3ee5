"""Built-in HTTP routes: ``/broker/ping``, ``/broker/health``, ``/broker/metrics``,
``/openapi.json`` and ``/docs``.

The docs page is Swagger UI served from the copy packaged in
``swagger-ui-bundle-v2`` (no CDN); it reads ``/openapi.json``.
"""

import json
import mimetypes
from pathlib import Path

from broker.components import ComponentType
from broker.http.app import json_response
from broker.http.protocol import HTTPResponse
from broker.http.router import Route, RouteDoc
from broker.errors import BrokerError, NotFound
from broker.security.credentials import Credentials, authenticate
from broker.runtime import summed

__all__ = ["ADMIN", "build_admin", "builtin_routes", "guarded"]

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} — API docs</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body></html>
"""

# Kept in a file of its own so the page needs no inline script (CSP-friendly).
_DOCS_INIT = b"""window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs",
  deepLinking: true, tryItOutEnabled: true});
"""

_STATIC_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")


def _swagger_dir():
    try:
        import swagger_ui_bundle
    except ImportError:  # pragma: no cover - a dependency of the package
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


class _Builtins:
    def __init__(self, name, openapi, resources=None, version=lambda: None, worker=None):
        self.name = name
        self._worker = worker
        self._resources = resources
        self._openapi = openapi
        self._version = version
        self._openapi_body = self._openapi_version = None
        self._static = {}
        self._docs = _DOCS_PAGE.format(title=name).encode()

    def ping(self, request, cid, params):
        return json_response(200, {"status": "ok", "name": self.name}, cid)

    def health(self, request, cid, params):
        """200 when every registered check is ok, else 503; each check's report.  In a node of
        workers: for the whole node, with each worker's part under ``workers``."""
        ok, checks = (True, {}) if self._resources is None else self._resources.health_report()
        if self._worker is not None:
            return self._node(cid, lambda workers: self._node_health(ok, checks, workers, cid))
        return json_response(200 if ok else 503, {"status": "ok" if ok else "degraded",
                                                  "name": self.name, "checks": checks}, cid)

    def _node_health(self, ok, checks, workers, cid):
        ok = ok and len(workers) == self._worker.count and all(w.get("ok") for w in workers)
        parts = [{k: v for k, v in w.items() if k != "counters"} for w in workers]
        return json_response(200 if ok else 503, {
            "status": "ok" if ok else "degraded", "name": self.name, "checks": checks,
            "worker": self._worker.id, "workers": parts}, cid)

    def metrics(self, request, cid, params):
        """Every component's counters as JSON (in a node of workers: summed over the workers,
        each worker's under ``workers``)."""
        report = {} if self._resources is None else self._resources.metrics_report()
        if self._worker is not None:
            return self._node(cid, lambda workers: json_response(200, {
                "name": self.name, "counters": summed([w.get("counters", {}) for w in workers]),
                "worker": self._worker.id,
                "workers": [{"id": w.get("id"), "pid": w.get("pid"), "counters": w.get("counters")}
                            for w in workers]}, cid))
        return json_response(200, {"name": self.name, "counters": report}, cid)

    def _node(self, cid, answer):
        def failed(failure):
            error = failure.value if failure.check(BrokerError) else BrokerError()
            return json_response(error.status, {"result": "Error", "cid": cid, "code": error.code,
                                                "details": error.message}, cid)
        return self._worker.node_report().addCallbacks(answer, failed)

    def openapi(self, request, cid, params):
        version = self._version()
        if self._openapi_body is None or version != self._openapi_version:
            self._openapi_body = json.dumps(self._openapi(), separators=(",", ":")).encode()
            self._openapi_version = version
        return HTTPResponse(200, [("Content-Type", "application/json"), ("X-Broker-CID", cid)],
                            self._openapi_body)

    def docs(self, request, cid, params):
        return HTTPResponse(200, [("Content-Type", "text/html; charset=utf-8"), ("X-Broker-CID", cid),
                                  ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:;"
                                   " style-src 'self' 'unsafe-inline'")], self._docs)

    def static(self, request, cid, params):
        name = params["name"]
        body = self._static.get(name)
        if body is None:
            if name == "docs-init.js":
                body = _DOCS_INIT
            elif name in _STATIC_FILES and _swagger_dir() is not None:
                body = (_swagger_dir() / name).read_bytes()
            else:
                raise NotFound(f"No such file: {name}")
            self._static[name] = body
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return HTTPResponse(200, [("Content-Type", content_type), ("X-Broker-CID", cid),
                                  ("Cache-Control", "public, max-age=86400")], body)


def guarded(definition, target):
    """A built-in route's ``target`` answering only callers ``definition`` accepts (else 401)."""
    def answer(http_request, cid, params):
        authenticate(definition, Credentials(http_request.headers, peer=http_request.peer, cid=cid))
        return target(http_request, cid, params)
    return answer


_NAME = {"type": "string", "description": "The node's name"}
_HTML = {"text/html": {"type": "string"}}
_PING = RouteDoc("Is the node up?", {200: ("It is", {"application/json": {
    "type": "object", "required": ["status", "name"], "additionalProperties": False,
    "properties": {"status": {"const": "ok"}, "name": _NAME}}})})
_HEALTH_REPORT = {"type": "object", "required": ["status", "name", "checks"], "additionalProperties": False,
                  "properties": {"status": {"enum": ["ok", "degraded"]}, "name": _NAME,
                                 "checks": {"type": "object", "description": "Each check's report"}}}
_HEALTH = RouteDoc("Every health check's report", {
    200: ("Every check is ok", {"application/json": _HEALTH_REPORT}),
    503: ("A check is not ok", {"application/json": _HEALTH_REPORT})})
_METRICS = RouteDoc("Every component's counters", {200: ("The counters", {"application/json": {
    "type": "object", "required": ["name", "counters"], "additionalProperties": False,
    "properties": {"name": _NAME, "counters": {"type": "object"}}}})})
_OPENAPI = RouteDoc("This document", {200: ("OpenAPI 3.1", {"application/json": {"type": "object"}})})
_DOCS = RouteDoc("Interactive API docs (Swagger UI, served by the broker)", {200: ("The page", _HTML)})
_STATIC = RouteDoc("The docs page's scripts and styles", {
    200: ("The file", {"text/css": {"type": "string"}, "text/javascript": {"type": "string"}})},
    errors=(404,), parameters=[{"name": "name", "in": "path", "required": True, "schema": {
        "enum": ["docs-init.js", *_STATIC_FILES]}}])


def builtin_routes(name, openapi, docs=True, resources=None, version=lambda: None, worker=None):
    """The built-in routes.

    :param name: the node's name, shown by ping and the docs page.
    :param openapi: a callable returning the current OpenAPI document.
    :param resources: the node's :class:`~broker.runtime.Resources` (health, metrics).
    :param version: a callable whose answer changes when the document would.
    :param worker: in a worker process, its role (health and metrics answer for the node).
    """
    b = _Builtins(name, openapi, resources, version, worker)
    routes = [Route("broker.ping", "/broker/ping", ("GET",), b.ping, kind="builtin", doc=_PING),
              Route("broker.health", "/broker/health", ("GET",), b.health, kind="builtin", doc=_HEALTH),
              Route("broker.metrics", "/broker/metrics", ("GET",), b.metrics, kind="builtin",
                    doc=_METRICS)]
    if docs:
        routes += [
            Route("broker.openapi", "/openapi.json", ("GET",), b.openapi, kind="builtin", doc=_OPENAPI),
            Route("broker.docs", "/docs", ("GET",), b.docs, kind="builtin", doc=_DOCS),
            Route("broker.docs.static", "/docs/static/{name}", ("GET",), b.static, kind="builtin",
                  doc=_STATIC),
        ]
    return routes, b


def build_admin(section, ctx):
    """The built-in routes of the ``http:`` section (docs when ``http.docs``)."""
    from broker import __version__
    from broker.admin.guard import admin_guard
    from broker.admin.openapi import build_openapi

    admin_guard(ctx)  # admin.security must name a definition

    routes, store, name = ctx.routes, ctx.store, ctx.config.name
    for route in builtin_routes(name, lambda: build_openapi(routes, store, name, __version__),
                                docs=section.docs, resources=ctx.resources,
                                version=lambda: (tuple(map(id, routes)), store.version),
                                worker=ctx.worker)[0]:
        ctx.add_route(route)


#: The node's own pages: ping, health, metrics, the OpenAPI document and its docs page.
ADMIN = ComponentType(None, build_admin, section="http")
