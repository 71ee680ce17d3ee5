"""The scheduler driven by task.Clock: triggers, jitter, overlap, misfire, enable/disable."""

import random
from datetime import datetime, timezone

import pytest
from twisted.internet import defer, task

from broker.cache import MemoryCache
from broker.scheduler.config import JOB, build_job
from broker.scheduler.scheduler import Scheduler
from broker.services.base import Service
from broker.services.invoker import Invoker
from broker.services.store import ServiceStore

T0 = datetime(2026, 12, 1, 0, 3, tzinfo=timezone.utc).timestamp()  # 00:03 UTC


class Env:
    """A clock, an invoker with recording services, and schedulers built on them."""

    def __init__(self):
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.calls = []
        self.pending = []
        env = self

        class Tick(Service):
            name = "test.tick"

            def handle(self):
                env.calls.append({"at": env.clock.seconds(), "input": dict(self.request.input or {}),
                                  "channel": (self.channel.type, self.channel.name)})

        class Slow(Service):
            name = "test.slow"

            def handle(self):
                env.calls.append({"at": env.clock.seconds()})
                d = defer.Deferred()
                env.pending.append(d)
                return d

        store = ServiceStore()
        store.add(Tick)
        store.add(Slow)
        self.invoker = Invoker(store, reactor=self.clock, timeout=0)
        self.store = MemoryCache(self.clock)

    def scheduler(self, *jobs, lock=None, rand=random.random, store="default"):
        built = [build_job(JOB.check({"service": "test.tick", **job})) for job in jobs]
        scheduler = Scheduler(built, self.invoker, self.clock,
                              store=self.store if store == "default" else store, lock=lock,
                              random=rand)
        scheduler.startService()
        return scheduler

    def times(self):
        return [call["at"] - T0 for call in self.calls]


@pytest.fixture
def env():
    return Env()


def test_interval_job_runs_every_interval_through_the_invoker(env):
    scheduler = env.scheduler({"name": "tick", "interval": 60, "data": {"who": "sched"}})
    env.clock.advance(59)
    assert env.calls == []
    env.clock.advance(1)
    env.clock.advance(60)
    assert env.times() == [60, 120]
    assert env.calls[0]["input"] == {"who": "sched"}
    assert env.calls[0]["channel"] == ("scheduler", "tick")
    assert scheduler.jobs["tick"].counters["runs"] == 2


def test_run_at_start_runs_at_once_then_every_interval(env):
    scheduler = env.scheduler({"name": "tick", "interval": 60, "run_at_start": True})
    env.clock.advance(0)
    assert env.times() == [0]
    env.clock.pump([59, 1, 60])
    assert env.times() == [0, 60, 120]
    assert scheduler.jobs["tick"].counters["misfires"] == 0


def test_run_at_start_for_cron_and_aligned_intervals(env):
    start = datetime.fromtimestamp(T0 + 100, timezone.utc).isoformat()
    env.scheduler({"name": "aligned", "interval": "1m", "start": start, "run_at_start": True},
                  {"name": "cron", "cron": "*/5 * * * *", "run_at_start": True})   # now 00:03
    env.clock.pump([0, 100, 20])
    assert env.times() == [0, 0, 100, 120]          # both at start; then 00:03+100s, 00:05


def test_run_at_start_keeps_a_stored_schedule(env):
    """A job whose state says when it runs next (a restart within the interval) keeps it."""
    first = env.scheduler({"name": "tick", "interval": 60, "run_at_start": True})
    env.clock.pump([0, 30])
    first.stopService()
    env.scheduler({"name": "tick", "interval": 60, "run_at_start": True})
    env.clock.advance(29)
    assert env.times() == [0]
    env.clock.advance(1)
    assert env.times() == [0, 60]


def test_interval_with_start_aligns_on_start(env):
    start = datetime.fromtimestamp(T0 + 100, timezone.utc).isoformat()
    env.scheduler({"name": "tick", "interval": "1m", "start": start})
    env.clock.pump([50, 49])
    assert env.calls == []
    env.clock.pump([1, 60, 60])
    assert env.times() == [100, 160, 220]


def test_cron_job_runs_on_cron_times(env):
    env.scheduler({"name": "tick", "cron": "*/5 * * * *"})  # now 00:03
    env.clock.pump([60] * 12)                              # to 00:15
    assert env.times() == [120, 420, 720]                  # 00:05, 00:10, 00:15


def test_one_time_job_runs_once(env):
    at = datetime.fromtimestamp(T0 + 30, timezone.utc).isoformat()
    scheduler = env.scheduler({"name": "once", "at": at})
    env.clock.pump([10] * 10)
    assert env.times() == [30]
    assert scheduler.describe()[0]["next_run"] is None


def test_one_time_job_in_the_past_without_state_is_not_run(env):
    at = datetime.fromtimestamp(T0 - 3600, timezone.utc).isoformat()
    env.scheduler({"name": "once", "at": at})
    env.clock.pump([10] * 10)
    assert env.calls == []


@pytest.mark.parametrize("draw, expected", [(0.0, 60), (1.0, 70), (0.5, 65)])
def test_jitter_delays_within_bounds(env, draw, expected):
    env.scheduler({"name": "tick", "interval": 60, "jitter": "10s"}, rand=lambda: draw)
    env.clock.pump([1] * 70)
    assert env.times() == [expected]


def test_jitter_never_leaves_its_bounds_and_does_not_drift(env):
    env.scheduler({"name": "tick", "interval": 60, "jitter": 10}, rand=random.Random(7).random)
    env.clock.pump([0.5] * (2 * 60 * 50))
    times = env.times()
    assert len(times) == 49
    for n, at in enumerate(times, start=1):
        assert 60 * n <= at <= 60 * n + 10
    assert len({round(at - 60 * n, 1) for n, at in enumerate(times, start=1)}) > 5


def test_overlap_skip_skips_while_the_previous_run_is_going(env):
    scheduler = env.scheduler({"name": "slow", "service": "test.slow", "interval": 10})
    env.clock.pump([10, 10, 10])
    assert env.times() == [10]
    assert scheduler.jobs["slow"].counters["skipped_overlap"] == 2
    env.pending[0].callback(None)
    env.clock.advance(10)
    assert env.times() == [10, 40]


def test_overlap_allow_runs_alongside_up_to_max_running(env):
    scheduler = env.scheduler({"name": "slow", "service": "test.slow", "interval": 10,
                               "overlap": "allow", "max_running": 2})
    env.clock.pump([10, 10, 10])
    assert env.times() == [10, 20]
    assert scheduler.jobs["slow"].running == 2
    assert scheduler.jobs["slow"].counters["skipped_overlap"] == 1
    for d in env.pending:
        d.callback(None)
    assert scheduler.jobs["slow"].running == 0


def test_a_late_fire_runs_once_for_all_missed_runs(env):
    scheduler = env.scheduler({"name": "tick", "interval": 60})
    env.clock.advance(300)         # the reactor was blocked: one late fire
    assert env.times() == [300]
    assert scheduler.jobs["tick"].counters["misfires"] == 1
    env.clock.advance(60)
    assert env.times() == [300, 360]


def test_misfire_after_downtime_runs_once_then_keeps_the_schedule(env):
    first = env.scheduler({"name": "tick", "interval": 60})
    env.clock.advance(60)
    first.stopService()
    env.clock.advance(290)                                  # down for almost five runs
    second = env.scheduler({"name": "tick", "interval": 60})
    assert env.times() == [60, 350]                          # caught up once, at start
    assert second.jobs["tick"].counters["misfires"] == 1
    env.clock.advance(10)
    assert env.times() == [60, 350, 360]                     # still aligned on the first run


def test_misfire_skip_drops_missed_runs(env):
    first = env.scheduler({"name": "tick", "interval": 60, "misfire": "skip"})
    env.clock.advance(60)
    first.stopService()
    env.clock.advance(290)
    second = env.scheduler({"name": "tick", "interval": 60, "misfire": "skip"})
    assert env.times() == [60]
    assert second.jobs["tick"].counters["skipped_misfire"] == 1
    env.clock.advance(10)
    assert env.times() == [60, 360]


def test_missed_one_time_job_runs_after_downtime(env):
    at = datetime.fromtimestamp(T0 + 100, timezone.utc).isoformat()
    first = env.scheduler({"name": "once", "at": at})
    env.clock.advance(50)
    first.stopService()
    env.clock.advance(100)
    env.scheduler({"name": "once", "at": at})
    assert env.times() == [150]
    third = env.scheduler({"name": "once", "at": at})      # its one run is remembered
    env.clock.advance(100)
    assert env.times() == [150] and third.jobs["once"].next_due is None


def test_changed_schedule_forgets_the_stored_state(env):
    first = env.scheduler({"name": "tick", "interval": 60})
    env.clock.advance(60)
    first.stopService()
    env.clock.advance(290)
    env.scheduler({"name": "tick", "interval": 30})
    assert env.times() == [60]
    env.clock.advance(30)
    assert env.times() == [60, 380]


def test_disable_and_enable_at_run_time(env):
    scheduler = env.scheduler({"name": "tick", "interval": 10})
    env.clock.advance(10)
    scheduler.set_enabled("tick", False)
    env.clock.pump([10, 10])
    assert env.times() == [10]
    assert scheduler.jobs["tick"].counters["skipped_disabled"] == 2
    scheduler.set_enabled("tick", True)
    env.clock.advance(10)
    assert env.times() == [10, 40]


def test_disabled_in_config_does_not_run_until_enabled(env):
    scheduler = env.scheduler({"name": "tick", "interval": 10, "enabled": False})
    env.clock.pump([10, 10])
    assert env.calls == []
    scheduler.set_enabled("tick", True)
    env.clock.advance(10)
    assert env.times() == [30]


def test_enabled_flag_is_shared_through_the_state_store(env):
    """Two nodes sharing a store: disabling on one stops the runs on the other."""
    runner = env.scheduler({"name": "tick", "interval": 10})
    other = env.scheduler({"name": "tick", "interval": 10}, lock=NeverHeld())
    env.clock.advance(10)
    assert len(env.calls) == 1
    other.set_enabled("tick", False)
    env.clock.pump([10, 10])
    assert len(env.calls) == 1 and runner.jobs["tick"].enabled is False
    assert other.jobs["tick"].counters["not_leader"] == 3


def test_admin_services_list_and_toggle_jobs(env):
    scheduler = env.scheduler({"name": "tick", "interval": 10})
    from broker.scheduler.services import scheduler_services
    for cls in scheduler_services(scheduler):
        env.invoker.store.add(cls)
    results = []
    env.invoker.invoke_internal("broker.scheduler.set-enabled",
                                {"name": "tick", "is_enabled": False}).addBoth(results.append)
    env.invoker.invoke_internal("broker.scheduler.list-jobs").addBoth(results.append)
    env.invoker.invoke_internal("broker.scheduler.set-enabled",
                                {"name": "nope", "is_enabled": True}).addBoth(results.append)
    assert results[0]["is_enabled"] is False
    job = results[1]["jobs"][0]
    assert job["name"] == "tick" and job["is_enabled"] is False and job["schedule"] == "interval=10s"
    assert job["next_run"] == datetime.fromtimestamp(T0 + 10, timezone.utc).isoformat()
    assert "No such job: nope" in str(results[2].value)


def test_service_failure_is_counted_and_the_job_keeps_running(env):
    env.invoker.store.add(type("Boom", (Service,), {"name": "test.boom",
                                                     "handle": lambda self: 1 / 0}))
    scheduler = env.scheduler({"name": "boom", "service": "test.boom", "interval": 10})
    env.clock.pump([10, 10])
    assert scheduler.jobs["boom"].counters["failures"] == 2
    assert scheduler.metrics()["failures"] == 2


class NeverHeld:
    def startService(self):
        pass

    def stopService(self):
        pass

    def ready(self):
        return defer.succeed(None)

    def held(self):
        return False

    def status(self):
        return {"held": False}


def test_schedule_specs_are_exact():
    def spec(**job):
        return build_job(JOB.check({"name": "j", "service": "s", **job})).trigger.spec

    assert spec(interval=0.1) == "interval=0.1s"
    assert spec(interval="1h", start="2026-12-01T10:00:00+01:00") == \
        "interval=3600s,start=2026-12-01T09:00:00+00:00"
    assert spec(at="2030-01-01T00:00:01Z") == "at=2030-01-01T00:00:01+00:00"
    assert spec(cron="0 9 * * 1-5", timezone="Europe/Warsaw") == "cron=0 9 * * 1-5,tz=Europe/Warsaw"
