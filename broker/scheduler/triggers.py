"""When a job runs: interval, cron and one-time triggers over POSIX timestamps.

Each trigger answers ``first(now)`` (the first run of a job that has never
run) and ``next_after(t)`` (the first run strictly after ``t``, or None when
there is none).  ``spec`` describes the schedule; the scheduler stores it
with a job's state and forgets that state when the spec changes.
"""

import math
from datetime import datetime, timezone

__all__ = ["CronTrigger", "IntervalTrigger", "OnceTrigger"]


def _seconds(value):
    """``60`` for 60.0, ``0.1`` for 0.1: exact, short."""
    return str(int(value)) if value == int(value) else repr(value)


def _when(ts):
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


class IntervalTrigger:
    """Every ``interval`` seconds, aligned on ``start`` (or on the first run).

    Without ``start`` the first run is one interval after the scheduler starts.
    """

    def __init__(self, interval, start=None):
        if not interval > 0:
            raise ValueError("interval must be more than 0 seconds")
        self.interval = interval
        self.start = start
        self.anchor = start
        self.spec = f"interval={_seconds(interval)}s" + (f",start={_when(start)}" if start is not None
                                                         else "")

    def rebase(self, due):
        """Align runs on ``due``, a run time remembered from before a restart."""
        if self.start is None:
            self.anchor = due

    def first(self, now):
        if self.anchor is None:
            self.anchor = now + self.interval
            return self.anchor
        if self.anchor >= now:
            return self.anchor
        return self.next_after(now)

    def next_after(self, t):
        if self.anchor is None:
            self.anchor = t + self.interval
            return self.anchor
        if t < self.anchor:
            return self.anchor
        steps = math.floor((t - self.anchor) / self.interval) + 1
        return self.anchor + steps * self.interval


class CronTrigger:
    """A cron expression (croniter's syntax) in ``tz``, not before ``start``."""

    def __init__(self, expression, tz, start=None):
        from croniter import croniter  # noqa: PLC0415 -- only when a cron job is configured
        if not croniter.is_valid(expression):
            raise ValueError(f'"{expression}" is not a valid cron expression')
        self._croniter = croniter
        self.expression = expression
        self.tz = tz
        self.start = start
        self.spec = f"cron={expression},tz={tz}" + (f",start={_when(start)}" if start is not None
                                                   else "")

    def rebase(self, due):
        pass

    def first(self, now):
        if self.start is not None and self.start > now:
            return self.next_after(self.start - 0.001)
        return self.next_after(now)

    def next_after(self, t):
        if self.start is not None and t < self.start:
            t = self.start - 0.001
        base = datetime.fromtimestamp(t, self.tz)
        return self._croniter(self.expression, base).get_next(float)


class OnceTrigger:
    """Once, at ``at``."""

    def __init__(self, at):
        self.at = at
        self.spec = f"at={_when(at)}"

    def rebase(self, due):
        pass

    def first(self, now):
        return self.at

    def next_after(self, t):
        return self.at if t < self.at else None
