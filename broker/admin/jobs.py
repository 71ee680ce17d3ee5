"""Scheduler operations under ``/broker/admin/jobs``, guarded by ``admin.security``.

* ``GET /broker/admin/jobs`` → ``{"jobs": [{"name", "service", "schedule", "enabled",
  "last_run", "next_run", "running", "is_leader", "runs", "failures", ...}]}``;
* ``POST /broker/admin/jobs/{name}/run`` → 202 and the job: it runs now on this node
  (409 while a run is going and its overlap policy forbids another);
* ``POST /broker/admin/jobs/{name}/enable`` and ``.../disable`` → the job, on every
  node sharing the job state.

An unknown job is a 404 JSON error.  Every change is logged with who made it.
"""

from twisted.internet import defer
from twisted.logger import Logger

from broker.admin.guard import admin_guard
from broker.components import ComponentType, Needs
from broker.errors import BrokerError, NotFound, error_body
from broker.http.app import json_response
from broker.http.protocol import HTTPResponse
from broker.http.router import Route, RouteDoc
from broker.scheduler.scheduler import JobBusy, UnknownJob

__all__ = ["JOBS", "build_jobs", "describe_job", "job_routes"]

log = Logger()

PREFIX = "/broker/admin/jobs"


class JobRunning(BrokerError):
    code = "job_running"
    status = 409
    default_message = "The job is running and its overlap policy allows no other run"


def describe_job(job, leader):
    """One job as the admin API shows it (``enabled`` rather than the service's ``is_enabled``)."""
    described = job.describe(leader)
    described["enabled"] = described.pop("is_enabled")
    return described


def _error(error, cid):
    return HTTPResponse(error.status, [("Content-Type", "application/json"), ("X-Broker-CID", cid),
                                       *error.headers.items()], error_body(error, cid))


class JobOperations:
    """The targets of the job routes, bound to one :class:`~broker.scheduler.Scheduler`."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def _job(self, params):
        try:
            return self.scheduler.job(params["name"])
        except UnknownJob:
            raise NotFound(f"No such job: {params['name']}") from None

    def list(self, request, cid, params, who):
        leader = self.scheduler.lock.held()
        return json_response(200, {"jobs": [describe_job(job, leader)
                                            for job in self.scheduler.jobs.values()]}, cid)

    def run(self, request, cid, params, who):
        job = self._job(params)
        try:
            self.scheduler.run_now(job.name)
        except JobBusy:
            raise JobRunning(f"Job {job.name} is running; its overlap policy "
                             f"({job.overlap}) allows no other run now") from None
        log.info("job {job} run now by {who}", job=job.name, who=who)
        return json_response(202, {"job": describe_job(job, self.scheduler.lock.held())}, cid)

    def enable(self, request, cid, params, who):
        return self._set_enabled(cid, params, who, True)

    def disable(self, request, cid, params, who):
        return self._set_enabled(cid, params, who, False)

    def _set_enabled(self, cid, params, who, enabled):
        job = self._job(params)
        log.info("job {job} {what} by {who}", job=job.name, who=who,
                 what="enabled" if enabled else "disabled")
        d = defer.maybeDeferred(self.scheduler.set_enabled, job.name, enabled)
        d.addCallback(lambda job: json_response(
            200, {"job": describe_job(job, self.scheduler.lock.held())}, cid))

        def failed(failure):
            error = failure.value if isinstance(failure.value, BrokerError) else BrokerError()
            if not isinstance(failure.value, BrokerError):
                log.failure("job {job}: changing its state failed", failure, job=job.name)
            return _error(error, cid)

        return d.addErrback(failed)


_TIME = {"type": ["string", "null"], "format": "date-time"}
_JOB = {"type": "object", "required": ["name", "service", "schedule", "enabled", "last_run",
                                       "next_run", "running", "runs"],
        "properties": {"name": {"type": "string"}, "service": {"type": "string"},
                       "schedule": {"type": "string"}, "enabled": {"type": "boolean"},
                       "last_run": _TIME, "next_run": _TIME,
                       "running": {"type": "integer", "description": "runs going now"},
                       "is_leader": {"type": "boolean", "description": "this node runs the jobs"},
                       "runs": {"type": "integer"}, "failures": {"type": "integer"}},
        "additionalProperties": {"type": "integer", "description": "the job's other counters"}}
_ONE = {"application/json": {"type": "object", "required": ["job"], "additionalProperties": False,
                             "properties": {"job": _JOB}}}
_NAME = [{"name": "name", "in": "path", "required": True, "description": "The job's name",
          "schema": {"type": "string"}}]


def _docs(security):
    common = {"security": security, "tag": "admin"}
    return {
        "list": RouteDoc("Every scheduler job: schedule, state, last and next run, counters",
                         {200: ("The jobs", {"application/json": {
                             "type": "object", "required": ["jobs"], "additionalProperties": False,
                             "properties": {"jobs": {"type": "array", "items": _JOB}}}})},
                         errors=(403,), **common),
        "run": RouteDoc("Run a job now on this node", {
            202: ("Started", _ONE),
            409: ("A run is going and the job's overlap policy allows no other (code "
                  "`job_running`)", {"application/json": {"$ref": "#/components/schemas/Error"}})},
            errors=(403, 404), parameters=_NAME, **common),
        "enable": RouteDoc("Enable a job (on every node sharing the job state)", {200: ("The job", _ONE)},
                           errors=(403, 404), parameters=_NAME, **common),
        "disable": RouteDoc("Disable a job (on every node sharing the job state)",
                            {200: ("The job", _ONE)}, errors=(403, 404), parameters=_NAME, **common),
    }


def job_routes(scheduler, guard, security=()):
    """The four routes over ``scheduler``, each target wrapped by ``guard``."""
    ops, docs = JobOperations(scheduler), _docs(tuple(security))
    return [
        Route("broker.admin.jobs", PREFIX, ("GET",), guard(ops.list), kind="builtin", doc=docs["list"]),
        *(Route(f"broker.admin.jobs.{action}", f"{PREFIX}/{{name}}/{action}", ("POST",),
                guard(getattr(ops, action)), kind="builtin", doc=docs[action])
          for action in ("run", "enable", "disable")),
    ]


def build_jobs(section, ctx):
    """The job routes over the node's scheduler."""
    scheduler = ctx.feature("scheduler")
    if scheduler is None:
        return None
    name = ctx.config.admin.security
    security = (ctx.security[name],) if name is not None and name in ctx.security else ()
    for route in job_routes(scheduler, admin_guard(ctx), security):
        ctx.add_route(route)
    return None


#: ``/broker/admin/jobs``: built from the ``scheduler`` section, on the scheduler.
JOBS = ComponentType(None, build_jobs, section="scheduler", needs=[Needs.feature("scheduler")])
