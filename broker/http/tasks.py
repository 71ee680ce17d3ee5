"""``GET /broker/tasks/{task_id}``: a task's status, for the caller that made it.

The caller must pass the security definition the task was made through, and be
the same caller (``403`` otherwise); a task made through an open channel is
answered to anyone holding its id (ids are 128 random bits).  Unknown or
expired ids are ``404``.
"""

import json
import re

from twisted.logger import Logger

from broker.components import ComponentType, Needs
from broker.errors import BrokerError, Forbidden, NotFound, ServiceUnavailable, error_body
from broker.http.protocol import HTTPResponse
from broker.http.router import Route, RouteDoc
from broker.security.credentials import Credentials, authenticate
from broker.simpleio import parse_query
from broker.tasks.runner import ANONYMOUS

__all__ = ["STATUS", "TaskStatus", "build_status"]

log = Logger()

_TASK_ID = re.compile(r"^[0-9a-f]{32}$")
_JSON = "application/json"


def _error(error, cid):
    headers = [("Content-Type", _JSON), ("X-Broker-CID", cid), *error.headers.items()]
    return HTTPResponse(error.status, headers, error_body(error, cid))


class TaskStatus:
    """Answers a task's status to its owner.

    :param tasks: the node's :class:`~broker.tasks.runner.Tasks`.
    :param definitions: the node's live ``{name: security definition}``.
    """

    def __init__(self, tasks, definitions):
        self.tasks = tasks
        self.definitions = definitions
        self.counters = {"asked": 0, "not_found": 0, "refused": 0}

    def __call__(self, http_request, cid, params):
        self.counters["asked"] += 1
        task_id = params["task_id"]
        if not _TASK_ID.match(task_id):
            self.counters["not_found"] += 1
            return _error(NotFound("No such task (a task id is 32 hexadecimal digits)",
                                   errors=[{"field": "task_id", "problem": "is not a task id"}]), cid)
        d = self.tasks.status(task_id)
        return d.addCallbacks(self._answer, self._failed, (http_request, cid, task_id), None, (cid,))

    def _answer(self, found, http_request, cid, task_id):
        if found is None:
            self.counters["not_found"] += 1
            return _error(NotFound(f"No such task: {task_id} (unknown, or its record expired)"), cid)
        owner, view = found
        try:
            self._check_owner(owner, http_request, cid)
        except BrokerError as error:
            return _error(error, cid)
        body = json.dumps(view, separators=(",", ":"), default=str).encode()
        return HTTPResponse(200, [("Content-Type", _JSON), ("X-Broker-CID", cid)], body)

    def _check_owner(self, owner, http_request, cid):
        name, _, caller = owner.partition(":")
        if name == ANONYMOUS:
            return
        definition = self.definitions.get(name)
        if definition is None:
            self.counters["refused"] += 1
            raise Forbidden("This task's security definition is gone")
        query = parse_query(http_request.query) if http_request.query else {}
        credentials = Credentials(http_request.headers, query.get("token"), http_request.peer, cid)
        accepted = authenticate(definition, credentials)
        if (accepted.caller or "") != caller:
            self.counters["refused"] += 1
            raise Forbidden("This task belongs to another caller")

    def _failed(self, failure, cid):
        log.failure("task status failed (cid {cid})", failure, cid=cid)
        return _error(ServiceUnavailable("The task store is unavailable"), cid)


_VIEW = {"type": "object", "required": ["task_id", "status", "service", "created"], "properties": {
    "task_id": {"type": "string"}, "status": {"enum": ["pending", "running", "done", "failed"]},
    "service": {"type": "string"}, "created": {"type": "number"}, "finished": {"type": "number"},
    "data": {"description": "The service's output (done)"},
    "error": {"type": "object", "description": "The typed error (failed): code, status, details",
              "properties": {"code": {"type": "string"}, "status": {"type": "integer"},
                             "details": {"type": "string"}}}}}
_DOC = RouteDoc(
    "A task's status and result", {200: ("The task", {_JSON: _VIEW})},
    description="Answered to the caller that made the task, through the same security "
                "definition (403 for another caller). A task whose node stopped is `failed` "
                "with the code `lost`.",
    errors=(401, 403, 404), tag="tasks",
    parameters=[{"name": "task_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}])


def build_status(section, ctx):
    """The status route of the ``tasks`` section, when tasks are enabled."""
    if not section.enabled:
        return None
    status = TaskStatus(ctx.feature("tasks"), ctx.definitions)
    ctx.add_route(Route("broker.tasks.status", "/broker/tasks/{task_id}", ("GET",), status,
                        kind="builtin", doc=_DOC))
    ctx.metrics("tasks.status", lambda: status.counters)
    return status


#: Built from the ``tasks:`` section once the tasks feature is.
STATUS = ComponentType(None, build_status, section="tasks",
                       needs=[Needs.feature("tasks", when="enabled")])
