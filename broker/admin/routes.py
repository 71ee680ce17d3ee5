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
from broker.http.router import Route
from broker.errors import NotFound
from broker.security.credentials import Credentials, authenticate

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
    def __init__(self, name, openapi, resources=None, version=lambda: None):
        self.name = name
        self._resources = resources
        self._openapi = openapi
        self._version = version
        self._openapi_body = self._openapi_version = None
        self._static = {}
        self._docs = _DOCS_PAGE.format(title=name).encode()

    def ping(self, request, cid, params):
        return json_response(200, {"status": "ok", "name": self.name}, cid)

    def health(self, request, cid, params):
        """200 when every registered check is ok, else 503; each check's report."""
        ok, checks = (True, {}) if self._resources is None else self._resources.health_report()
        return json_response(200 if ok else 503, {"status": "ok" if ok else "degraded",
                                                  "name": self.name, "checks": checks}, cid)

    def metrics(self, request, cid, params):
        """Every component's counters as JSON."""
        report = {} if self._resources is None else self._resources.metrics_report()
        return json_response(200, {"name": self.name, "counters": report}, cid)

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


def builtin_routes(name, openapi, docs=True, resources=None, version=lambda: None):
    """The built-in routes.

    :param name: the node's name, shown by ping and the docs page.
    :param openapi: a callable returning the current OpenAPI document.
    :param resources: the node's :class:`~broker.runtime.Resources` (health, metrics).
    :param version: a callable whose answer changes when the document would.
    """
    b = _Builtins(name, openapi, resources, version)
    routes = [Route("broker.ping", "/broker/ping", ("GET",), b.ping, kind="builtin"),
              Route("broker.health", "/broker/health", ("GET",), b.health, kind="builtin"),
              Route("broker.metrics", "/broker/metrics", ("GET",), b.metrics, kind="builtin")]
    if docs:
        routes += [
            Route("broker.openapi", "/openapi.json", ("GET",), b.openapi, kind="builtin"),
            Route("broker.docs", "/docs", ("GET",), b.docs, kind="builtin"),
            Route("broker.docs.static", "/docs/static/{name}", ("GET",), b.static, kind="builtin"),
        ]
    return routes, b


def build_admin(section, ctx):
    """The built-in routes of the ``http:`` section (docs when ``http.docs``)."""
    from broker import __version__
    from broker.admin.openapi import build_openapi

    routes, store, name = ctx.routes, ctx.store, ctx.config.name
    for route in builtin_routes(name, lambda: build_openapi(routes, store, name, __version__),
                                docs=section.docs, resources=ctx.resources,
                                version=lambda: (tuple(map(id, routes)), store.version))[0]:
        ctx.add_route(route)


#: The node's own pages: ping, health, metrics, the OpenAPI document and its docs page.
ADMIN = ComponentType(None, build_admin, section="http")
