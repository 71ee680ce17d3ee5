"""The scheduler: jobs that invoke services on a schedule, like any channel.

Each job has a trigger (:mod:`broker.scheduler.triggers`) and is invoked
through the node's invoker with a ``scheduler`` channel.  On every fire the
scheduler checks, in order: does this node hold the lock (a cluster runs
each job on one node), is the job enabled (a change made on any node is
read from the shared state), did the fire come late (misfire policy), is
the previous run still going (overlap policy).  A job's state (schedule,
next and last run, enabled) is kept in the state store (a cache: Redis when
configured) so a restarted node knows what it missed.
"""

import copy
import random as _random
from datetime import datetime, timezone

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from broker.scheduler.lock import LocalLock
from broker.scheduler.triggers import OnceTrigger
from broker.services.context import ChannelInfo

__all__ = ["Job", "JobBusy", "Scheduler", "UnknownJob"]

log = Logger()


class UnknownJob(LookupError):
    """No job of that name."""


class JobBusy(RuntimeError):
    """A job asked to run now is still running and its overlap policy forbids another run."""


def iso(ts):
    """A POSIX timestamp as ISO 8601 UTC text (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


class Job:
    """One configured job and its run-time state.

    :param trigger: when it runs.
    :param jitter: at most this many seconds are added at random to each run.
    :param overlap: ``skip`` (no run while one is going) or ``allow``.
    :param max_running: runs of this job at once when ``overlap`` is ``allow``.
    :param misfire: ``run_once`` (run once for all runs missed) or ``skip``.
    :param grace: a fire this many seconds late (past jitter) is a misfire.
    :param run_at_start: without stored state, the first run is when the scheduler starts.
    """

    def __init__(self, name, service, trigger, data=None, jitter=0.0, overlap="skip",
                 max_running=10, misfire="run_once", grace=1.0, enabled=True, run_at_start=False):
        self.name, self.service, self.trigger = name, service, trigger
        self.run_at_start = run_at_start
        self.data = data or {}
        self.jitter, self.overlap, self.max_running = jitter, overlap, max_running
        self.misfire, self.grace = misfire, grace
        self.configured_enabled = self.enabled = enabled
        self.fingerprint = f"{service}|{trigger.spec}|enabled={enabled}"
        self.running = 0
        self.next_due = None
        self.last_run = None
        self.timer = None
        self.counters = {"runs": 0, "failures": 0, "skipped_overlap": 0, "misfires": 0,
                         "skipped_misfire": 0, "skipped_disabled": 0, "not_leader": 0}

    def describe(self, leader):
        return {"name": self.name, "service": self.service, "schedule": self.trigger.spec,
                "is_enabled": self.enabled, "next_run": iso(self.next_due),
                "last_run": iso(self.last_run), "running": self.running,
                "is_leader": leader, **self.counters}


class Scheduler(Service):
    """Runs :class:`Job` objects on ``clock`` through ``invoker``.

    :param store: where job state is kept (a cache: ``get``/``set`` Deferreds), or None.
    :param lock: :class:`~broker.scheduler.lock.LocalLock` or a Redis leader lock.
    :param random: a ``random()`` function (jitter); injected in tests.
    """

    def __init__(self, jobs, invoker, clock, store=None, lock=None, random=_random.random):
        self.setName("scheduler")
        self.jobs = {job.name: job for job in jobs}
        self.invoker = invoker
        self.clock = clock
        self.store = store
        self.lock = lock if lock is not None else LocalLock()
        self.random = random
        self._runs = set()
        self.counters = {"fires": 0, "runs": 0, "failures": 0, "state_errors": 0}

    # -- life cycle -----------------------------------------------------------

    def startService(self):
        super().startService()
        self.lock.startService()
        # Wait for the first lock attempt, so a missed run is not lost to a
        # lock that is about to be taken.
        return self.lock.ready().addCallback(lambda _: self._load_all())

    def _load_all(self):
        if not self.running:
            return None
        return defer.gatherResults([self._load(job) for job in self.jobs.values()],
                                   consumeErrors=True)

    def stopService(self):
        super().stopService()
        for job in self.jobs.values():
            if job.timer is not None and job.timer.active():
                job.timer.cancel()
            job.timer = None
        stopped = defer.maybeDeferred(self.lock.stopService)
        running = [d for d in self._runs]
        return defer.DeferredList([stopped, *running], consumeErrors=True)

    # -- state ----------------------------------------------------------------

    def _state_key(self, job):
        return f"scheduler:{job.name}"

    def _read_state(self, job):
        """The job's stored state if it was stored for this same schedule, else None."""
        if self.store is None:
            return defer.succeed(None)
        d = self.store.get(self._state_key(job))

        def check(state):
            if isinstance(state, dict) and state.get("fingerprint") == job.fingerprint:
                return state
            return None

        return d.addCallbacks(check, self._state_error)

    def _save_state(self, job):
        if self.store is None:
            return defer.succeed(None)
        state = {"fingerprint": job.fingerprint, "next_due": job.next_due,
                 "last_run": job.last_run, "enabled": job.enabled}
        return self.store.set(self._state_key(job), state, 0).addErrback(self._state_error)

    def _state_error(self, failure):
        self.counters["state_errors"] += 1
        log.warn("scheduler: job state store failed: {error}", error=failure.getErrorMessage())
        return None

    def _load(self, job):
        """Decide the first fire from the stored state (catching up on misfires)."""
        def loaded(state):
            now = self.clock.seconds()
            if state is not None:
                job.enabled = state.get("enabled", job.enabled)
                job.last_run = state.get("last_run")
                due = state.get("next_due")
                if due is None:
                    log.info("job {job} has run its one time already", job=job.name)
                    return None
                job.trigger.rebase(due)
            elif job.run_at_start:
                due = now
            else:
                due = job.trigger.first(now)
                if isinstance(job.trigger, OnceTrigger) and due < now - job.grace:
                    log.warn("job {job}: its one-time run at {at} is in the past; not run",
                             job=job.name, at=iso(due))
                    return None
            job.next_due = due
            if state is None and self.lock.held():
                self._save_state(job)  # so a one-time run missed while down is known
            if due < now - job.grace:
                # Missed while this node (or the whole cluster) was down.
                return self._fire(job, due)
            self._schedule(job)
            return None

        return self._read_state(job).addCallback(loaded)

    # -- firing ---------------------------------------------------------------

    def _schedule(self, job):
        if not self.running or job.next_due is None:
            return
        delay = max(0.0, job.next_due - self.clock.seconds())
        if job.jitter:
            delay += self.random() * job.jitter
        job.timer = self.clock.callLater(delay, self._fire, job, job.next_due)

    def _fire(self, job, due):
        """A job's time has come (``due`` is when it was meant to run)."""
        job.timer = None
        self.counters["fires"] += 1
        now = self.clock.seconds()
        late = now - due > job.grace + job.jitter
        job.next_due = job.trigger.next_after(max(now, due))
        self._schedule(job)
        if not self.lock.held():
            job.counters["not_leader"] += 1
            return defer.succeed(None)
        return self._read_state(job).addCallback(self._decide, job, late)

    def _decide(self, state, job, late):
        if state is not None:
            job.enabled = state.get("enabled", job.enabled)
        if not job.enabled:
            job.counters["skipped_disabled"] += 1
        elif late and job.misfire == "skip":
            job.counters["skipped_misfire"] += 1
            log.warn("job {job} missed its run; skipped (misfire: skip)", job=job.name)
        elif job.running and (job.overlap == "skip" or job.running >= job.max_running):
            job.counters["skipped_overlap"] += 1
            log.warn("job {job}: previous run still going; this run skipped", job=job.name)
        else:
            if late:
                job.counters["misfires"] += 1
                log.warn("job {job} missed its run; running it once now", job=job.name)
            self._run(job)
        return self._save_state(job)

    def _run(self, job):
        job.running += 1
        job.counters["runs"] += 1
        self.counters["runs"] += 1
        started = job.last_run = self.clock.seconds()
        channel = ChannelInfo(job.name, "scheduler", "json")
        d = self.invoker.invoke_internal(job.service, copy.deepcopy(job.data), channel=channel)
        self._runs.add(d)

        def succeeded(_):
            log.info("job {job} ran {service} in {took:.3f}s", job=job.name, service=job.service,
                     took=self.clock.seconds() - started)

        def failed(failure):
            job.counters["failures"] += 1
            self.counters["failures"] += 1
            log.failure("job {job}: {service} failed", failure, job=job.name, service=job.service)

        def finished(_):
            job.running -= 1
            self._runs.discard(d)

        d.addCallbacks(succeeded, failed).addBoth(finished)
        return d

    # -- operations -----------------------------------------------------------

    def job(self, name):
        try:
            return self.jobs[name]
        except KeyError:
            raise UnknownJob(name) from None

    def run_now(self, name):
        """Run a job now on this node, whatever its schedule and enabled state (an
        operator's request); its overlap policy still holds.  The run's Deferred."""
        job = self.job(name)
        if job.running and (job.overlap == "skip" or job.running >= job.max_running):
            job.counters["skipped_overlap"] += 1
            raise JobBusy(name)
        log.info("job {job} run now on request", job=name)
        return self._run(job)

    def set_enabled(self, name, enabled):
        """Enable or disable a job on every node sharing the state store."""
        job = self.job(name)
        job.enabled = bool(enabled)
        log.info("job {job} {what}", job=name, what="enabled" if enabled else "disabled")

        def merge(state):
            if state is not None:
                job.last_run = job.last_run or state.get("last_run")
            return self._save_state(job)

        return self._read_state(job).addCallback(merge).addCallback(lambda _: job)

    def describe(self):
        leader = self.lock.held()
        return [job.describe(leader) for job in self.jobs.values()]

    def health(self):
        return {"ok": True, "jobs": len(self.jobs), "lock": self.lock.status()}

    def metrics(self):
        totals = dict(self.counters, jobs=len(self.jobs), leader=int(self.lock.held()))
        for job in self.jobs.values():
            for key, value in job.counters.items():
                if key not in self.counters:
                    totals[key] = totals.get(key, 0) + value
        return totals
