"""The admin API of live configuration and hot deploy, under ``/broker/admin/``.

Every route is guarded by :func:`broker.admin.guard.admin_guard` (the
definition ``admin.security`` names; none named: 403)::

    GET    /broker/admin/config                   kinds, counts, the state, stored changes refused
    GET    /broker/admin/config/export            the running configuration as YAML
    POST   /broker/admin/config/import[?dry_run=true]   a YAML (or JSON) config: what changes
    GET    /broker/admin/config/{kind}            the items of a kind
    POST   /broker/admin/config/{kind}            create one (201)
    GET    /broker/admin/config/{kind}/{id}       read one
    PUT    /broker/admin/config/{kind}/{id}       update one
    DELETE /broker/admin/config/{kind}/{id}       delete one
    GET    /broker/admin/deploy                   the pickup directory and each module's last deploy
    POST   /broker/admin/deploy?file=NAME.py      the module's source as the body: hot deploy
    DELETE /broker/admin/deploy/{file}            undeploy (the file is removed)

Kinds: ``channels``, ``outgoing``, ``connections``, ``security``, ``jobs``,
``caches``, ``topics``.  A bad section is a 400 ``invalid_config`` whose
``errors`` name the field; nothing changes.
"""

import json

import yaml
from twisted.internet import defer
from twisted.logger import Logger

from broker.admin.guard import ADMIN_PREFIX, admin_guard
from broker.errors import BadRequest, BrokerError, NotFound, error_body
from broker.http.protocol import HTTPResponse
from broker.http.router import Route
from broker.jsonfast import decode_json
from broker.node.live import InvalidConfig
from broker.simpleio import parse_query

__all__ = ["admin_routes"]

log = Logger()

_TRUE = ("1", "true", "yes")


def _json(status, payload, cid):
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return HTTPResponse(status, [("Content-Type", "application/json"), ("X-Broker-CID", cid)], body)


def _error(error, cid):
    return HTTPResponse(error.status, [("Content-Type", "application/json"), ("X-Broker-CID", cid),
                                       *error.headers.items()], error_body(error, cid))


def _answering(target):
    """``target`` answering a JSON body or a Deferred of one; every BrokerError as its answer."""
    def answer(request, cid, params, who):
        try:
            result = defer.maybeDeferred(target, request, params, who)
        except BrokerError as error:  # pragma: no cover - maybeDeferred catches
            return _error(error, cid)

        def done(outcome):
            if isinstance(outcome, HTTPResponse):
                outcome.headers.append(("X-Broker-CID", cid))
                return outcome
            status, payload = outcome
            return _json(status, payload, cid)

        def failed(failure):
            if failure.check(BrokerError):
                return _error(failure.value, cid)
            log.failure("admin API {method} {path} failed (cid {cid})", failure,
                        method=request.method, path=request.path, cid=cid)
            return _error(BrokerError(), cid)
        return result.addCallbacks(done, failed)
    return answer


def _body(request):
    if not request.body:
        raise BadRequest("A JSON object is expected as the body")
    return decode_json(request.body)


def _query(request):
    return parse_query(request.query) if request.query else {}


class _ConfigAPI:
    def __init__(self, live, deployer):
        self.live = live
        self.deployer = deployer

    def summary(self, request, params, who):
        return 200, self.live.summary()

    def export(self, request, params, who):
        return HTTPResponse(200, [("Content-Type", "application/yaml; charset=utf-8")],
                            self.live.export().encode())

    @defer.inlineCallbacks
    def import_(self, request, params, who):
        dry_run = str(_query(request).get("dry_run", "")).lower() in _TRUE
        try:
            text = request.body.decode("utf-8")
            if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
                raise InvalidConfig("Invalid import: YAML aliases (*name) are not accepted here")
            tree = yaml.safe_load(text) if text.strip() else None
        except (UnicodeDecodeError, yaml.YAMLError) as error:
            raise InvalidConfig(f"Invalid import: not a YAML document: {str(error).splitlines()[0]}")
        changes = yield self.live.import_tree(tree, who, dry_run=dry_run)
        return 200, {"dry_run": dry_run, "changes": changes}

    def list(self, request, params, who):
        return 200, {"kind": params["kind"], "items": self.live.items(params["kind"])}

    def read(self, request, params, who):
        return 200, self.live.item(params["kind"], params["id"])

    @defer.inlineCallbacks
    def create(self, request, params, who):
        change = yield self.live.create(params["kind"], _body(request), who)
        return 201, change

    @defer.inlineCallbacks
    def update(self, request, params, who):
        change = yield self.live.update(params["kind"], params["id"], _body(request), who)
        return 200, change

    @defer.inlineCallbacks
    def delete(self, request, params, who):
        change = yield self.live.delete(params["kind"], params["id"], who)
        return 200, change

    # -- hot deploy ----------------------------------------------------------------------

    def deploys(self, request, params, who):
        deployer = self.deployer
        return 200, {"pickup": str(deployer.directory) if deployer.directory else None,
                     "modules": deployer.modules, "counters": deployer.counters}

    def deploy(self, request, params, who):
        name = _query(request).get("file")
        if not isinstance(name, str) or not name:
            raise BadRequest("file: is required (?file=orders.py)",
                             [{"field": "file", "problem": "is required"}])
        try:
            report = self.deployer.deploy_source(name, request.body, who)
        except ValueError as error:
            field, _, problem = str(error).partition(": ")
            raise BadRequest(str(error), [{"field": field, "problem": problem}]) from None
        if report["error"] is not None:
            raise BadRequest(f"Not deployed, the previous version keeps serving: {report['error']}",
                             [{"field": "file", "problem": report["error"]}])
        return 200, report

    def undeploy(self, request, params, who):
        name = params["file"]
        if self.deployer.directory is None or name not in self.deployer.modules:
            raise NotFound(f"No deployed module {name!r}")
        path = self.deployer.directory / name
        if path.exists():
            path.unlink()
        return 200, self.deployer.undeploy(path, who=who)


def admin_routes(ctx, live, deployer):
    """The guarded routes of live configuration and hot deploy."""
    guard = admin_guard(ctx)
    api = _ConfigAPI(live, deployer)
    config = ADMIN_PREFIX + "config"

    def route(name, path, methods, target):
        return Route(f"broker.admin.{name}", path, methods, guard(_answering(target)), kind="builtin")

    return [
        route("config", config, ("GET",), api.summary),
        route("config.export", config + "/export", ("GET",), api.export),
        route("config.import", config + "/import", ("POST",), api.import_),
        route("config.list", config + "/{kind}", ("GET",), api.list),
        route("config.create", config + "/{kind}", ("POST",), api.create),
        route("config.read", config + "/{kind}/{id}", ("GET",), api.read),
        route("config.update", config + "/{kind}/{id}", ("PUT",), api.update),
        route("config.delete", config + "/{kind}/{id}", ("DELETE",), api.delete),
        route("deploys", ADMIN_PREFIX + "deploy", ("GET",), api.deploys),
        route("deploy", ADMIN_PREFIX + "deploy", ("POST",), api.deploy),
        route("undeploy", ADMIN_PREFIX + "deploy/{file}", ("DELETE",), api.undeploy),
    ]
