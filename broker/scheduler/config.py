"""The ``scheduler:`` section and how it becomes a running :class:`Scheduler`.

::

    scheduler:
      redis: main              # optional: one node of the cluster runs each job
      jobs:
        - name: rates.refresh
          service: rates.refresh
          data: {source: scheduler}
          interval: 60s        # or cron: "*/5 * * * *", or at: 2026-12-01T10:00:00Z
          start: 2026-12-01T00:00:00Z
          run_at_start: true   # also run as soon as the scheduler starts
          jitter: 2s
          overlap: skip        # or allow
          misfire: run_once    # or skip
          enabled: true

Without ``redis`` every node runs every job and keeps job state in the
default cache (``resources.cache``); with it, job state lives in Redis and
a leader lock (``<prefix>scheduler:leader``) picks the node that runs them.
"""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.cache.redis import RedisCache
from broker.components import ComponentType, Needs
from broker.config.schema import (Any, Bool, Choice, Duration, Field, Int, ListOf, Name, Schema,
                                  Str, Type, config_error)
from broker.scheduler.lock import LocalLock, RedisLeaderLock, StandbyLock
from broker.scheduler.scheduler import Job, Scheduler
from broker.scheduler.services import scheduler_services
from broker.scheduler.triggers import CronTrigger, IntervalTrigger, OnceTrigger

__all__ = ["FEATURE", "SCHEDULER_SECTION", "build_scheduler"]


class ISODateTime(Type):
    """An ISO 8601 date and time (``2026-12-01T10:00:00Z``); kept as text, checked here."""

    def _check(self, value, where):
        text = value if isinstance(value, str) else where.text
        try:
            datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise where.error(f"expected an ISO 8601 date and time such as "
                              f"2026-12-01T10:00:00Z, got {value!r}") from None
        return text


class TimeZone(Type):
    def _check(self, value, where):
        try:
            ZoneInfo(value)
        except (TypeError, ValueError, ZoneInfoNotFoundError):
            raise where.error(f"unknown time zone {value!r} (e.g. UTC, Europe/Warsaw)") from None
        return value


def _check_cron(expression):
    from croniter import croniter  # noqa: PLC0415
    if not croniter.is_valid(expression):
        raise ValueError(f'"{expression}" is not a valid cron expression '
                         f'(minute hour day month weekday, e.g. "*/5 * * * *")')


def _one_trigger(section):
    given = [key for key in ("interval", "cron", "at") if section[key] is not None]
    if len(given) != 1:
        raise ValueError("a job needs exactly one of interval, cron or at" +
                         (f", got {', '.join(given)}" if given else ""))
    if section.interval is not None and section.interval <= 0:
        raise ValueError("interval: must be more than 0s")
    if section.run_at_start and section.at is not None:
        raise ValueError("run_at_start: a one-time job (at) runs at its time only")


JOB = Schema("job", {
    "name": Field(Name(), required=True),
    "service": Field(Str(min_length=1), required=True),
    "data": Field(Any(), default={}, doc="the service's input"),
    "interval": Field(Duration(), default=None),
    "cron": Field(Str(min_length=1), default=None, check=_check_cron),
    "at": Field(ISODateTime(), default=None, doc="a one-time job"),
    "start": Field(ISODateTime(), default=None, doc="no run before this"),
    "timezone": Field(TimeZone(), default="UTC", doc="for cron and for times without an offset"),
    "jitter": Field(Duration(), default=0.0, doc="up to this much is added to each run"),
    "overlap": Field(Choice("skip", "allow"), default="skip"),
    "max_running": Field(Int(min=1, max=1000), default=10, doc="runs at once (overlap: allow)"),
    "misfire": Field(Choice("run_once", "skip"), default="run_once"),
    "misfire_grace": Field(Duration(), default=1.0, doc="how late a run may start"),
    "run_at_start": Field(Bool(), default=False,
                          doc="a job with no stored state runs when the scheduler starts, "
                              "not one interval (or cron time) later"),
    "enabled": Field(Bool(), default=True),
}, validate=_one_trigger)


def _check_section(section):
    seen = set()
    for job in section.jobs:
        if job.name in seen:
            raise config_error(job, "name", f'job "{job.name}" is defined twice')
        seen.add(job.name)
    if not 0 < section.lock_renew < section.lock_ttl:
        raise ValueError("lock_renew: must be less than lock_ttl")


SCHEDULER_SECTION = Schema("scheduler", {
    "redis": Field(Str(), default=None,
                   doc="a redis connection's name or a redis:// URL: job state and one runner "
                       "per cluster"),
    "prefix": Field(Str(), default="broker:", doc="Redis key prefix"),
    "lock_ttl": Field(Duration(min=0.1), default=30.0, doc="a dead holder's lock expires after"),
    "lock_renew": Field(Duration(min=0.05), default=10.0, doc="how often the lock is renewed"),
    "jobs": Field(ListOf(JOB), default=[]),
}, validate=_check_section)


def _timestamp(text, tz):
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def build_trigger(section):
    tz = ZoneInfo(section.timezone) if section.timezone != "UTC" else timezone.utc
    start = _timestamp(section.start, tz) if section.start else None
    if section.interval is not None:
        return IntervalTrigger(section.interval, start)
    if section.cron is not None:
        return CronTrigger(section.cron, tz, start)
    return OnceTrigger(_timestamp(section.at, tz))


def build_job(section):
    return Job(section.name, section.service, build_trigger(section), data=section.data,
               jitter=section.jitter, overlap=section.overlap, max_running=section.max_running,
               misfire=section.misfire, grace=section.misfire_grace, enabled=section.enabled,
               run_at_start=section.run_at_start)


def build_scheduler(section, ctx):
    """The node's :class:`Scheduler` (an IService), its admin services, health and metrics."""
    scheduler = Scheduler([], ctx.invoker, ctx.reactor)
    for cls in scheduler_services(scheduler):
        ctx.deploy(cls)
    for job in section.jobs:
        ctx.require_service(job)
    scheduler.jobs = {job.name: build_job(job) for job in section.jobs}
    if section.redis:
        connection = ctx.connection(section, "redis", "redis")
        store = RedisCache(connection, name="scheduler", prefix=section.prefix)
        lock = RedisLeaderLock(connection, f"{section.prefix}scheduler:leader", ctx.reactor,
                               owner=f"{ctx.config.name}:{_node_id()}", ttl=section.lock_ttl,
                               renew=section.lock_renew)
    else:
        store = ctx.feature("cache")["default"]
        # in a node of worker processes, the primary alone runs the jobs
        lock = LocalLock() if ctx.worker is None or ctx.worker.primary else StandbyLock()
    scheduler.store, scheduler.lock = store, lock
    ctx.health("scheduler", scheduler.health)
    ctx.metrics("scheduler", scheduler.metrics)
    return scheduler


#: The ``scheduler:`` section: jobs that invoke services on a schedule.
FEATURE = ComponentType(SCHEDULER_SECTION, build_scheduler,
                        needs=[Needs.connection("redis", "redis"), Needs.feature("cache")])


def _node_id():
    import os  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import uuid  # noqa: PLC0415
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
