"""The scheduler: interval, cron and one-time jobs invoking services, one runner per cluster."""

from broker.scheduler.config import FEATURE, SCHEDULER_SECTION, build_scheduler
from broker.scheduler.lock import LocalLock, RedisLeaderLock
from broker.scheduler.scheduler import Job, Scheduler
from broker.scheduler.triggers import CronTrigger, IntervalTrigger, OnceTrigger

__all__ = ["FEATURE", "SCHEDULER_SECTION", "CronTrigger", "IntervalTrigger", "Job", "LocalLock",
           "OnceTrigger", "RedisLeaderLock", "Scheduler", "build_scheduler"]
